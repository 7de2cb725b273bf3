#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine with Rust: installs what the tests
# need (Dovecot, Postfix, OpenSSL from Debian; needs root for apt and for Postfix),
# then checks formatting and lints and runs every test of the workspace.
# This is the README's test command; .ci/run runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -x tests/mailstack/install.sh ]; then
  tests/mailstack/install.sh
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy (deny warnings)"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
# A hung test must fail the run, not eat CI's whole budget (the suite takes ~2 min).
timeout --kill-after=30s 30m cargo test --workspace --locked
