#!/usr/bin/env bash
# Installs what the local mail stack (tests/src/mailstack.rs) runs: Dovecot, Postfix,
# OpenSSL and OpenDKIM from Debian's packages. Idempotent; run as root (CI does).
#
# The test harness starts its own Dovecot and Postfix instances with private config
# folders, so the system services are neither configured nor left running: Postfix is
# preseeded with "No configuration", and every service the packages start is stopped
# and disabled (on a machine without systemd, invoke-rc.d/policy-rc.d keep them down).
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  echo "tests/mailstack/install.sh: must run as root (apt-get)" >&2
  exit 1
fi

packages=(
  dovecot-core dovecot-imapd dovecot-lmtpd dovecot-submissiond
  postfix
  openssl
  opendkim opendkim-tools
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  # Without this, postfix's postinst asks (or guesses) a site type and writes a
  # system main.cf; we only want the binaries.
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  echo "postfix postfix/mailname string mail.mailgate.test" | debconf-set-selections
  # Keep maintainer scripts from starting the system daemons (exit 101 = "not allowed").
  # Only installed for the duration of the apt run, and only if no policy exists.
  policy=/usr/sbin/policy-rc.d
  own_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
    own_policy=1
  fi
  trap '[ "$own_policy" = 1 ] && rm -f "$policy"' EXIT
  if ! apt-get install -y --no-install-recommends "${missing[@]}"; then
    # A stale package list is the usual reason; refresh once and retry.
    apt-get update -qq
    apt-get install -y --no-install-recommends "${missing[@]}"
  fi
fi

# Whatever started anyway (a systemd machine ignores nothing), stop it and keep it off:
# the tests' instances use their own ports, sockets and pid files, but a system
# Postfix on port 25 or a system Dovecot is just noise.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  for s in postfix dovecot opendkim; do
    systemctl disable --now "$s" >/dev/null 2>&1 || true
  done
else
  for s in postfix dovecot opendkim; do
    if [ -x "/etc/init.d/$s" ]; then
      "/etc/init.d/$s" stop >/dev/null 2>&1 || true
    fi
  done
fi

# The binaries the harness calls; fail here, loudly, rather than in a test.
for b in dovecot doveadm postfix postconf openssl opendkim opendkim-genkey; do
  command -v "$b" >/dev/null 2>&1 || {
    echo "tests/mailstack/install.sh: $b missing after install" >&2
    exit 1
  }
done
echo "mail stack installed: $(dovecot --version | head -n1), postfix $(postconf -d -h mail_version 2>/dev/null)"
