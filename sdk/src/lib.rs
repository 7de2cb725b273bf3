//! # mailgate-sdk: write a provider plugin for mailgate
//!
//! mailgate sends and reads mail through an organisation's mailbox with OAuth 2.0.
//! Everything provider-specific — OAuth endpoints, flows and scopes, how the XOAUTH2
//! user name is formed, the SMTP and IMAP servers — comes from a **provider plugin**:
//! a shared library the admin drops into the plugin folder. This crate is all a plugin
//! needs: the descriptor types, the typed hooks and the `export_provider!` macro.
//! It depends on `std`, `serde` and `serde_json` only.
//!
//! ## A plugin in four steps
//!
//! 1. Create a library crate with `crate-type = ["cdylib"]` and depend on
//!    `mailgate-sdk` (and nothing async: the gateway does all network I/O).
//! 2. Describe the provider as data:
//!
//! ```
//! use std::collections::BTreeMap;
//! use mailgate_sdk::{Endpoints, Flow, FlowSpec, ProviderDescriptor, ServerDefaults, TlsMode};
//!
//! fn descriptor() -> ProviderDescriptor {
//!     ProviderDescriptor {
//!         id: "example-mail".into(),
//!         display_name: "Example Mail".into(),
//!         default_tenant: None,
//!         endpoints: Endpoints {
//!             authorize: Some("https://login.example.net/oauth2/authorize".into()),
//!             token: "https://login.example.net/oauth2/token".into(),
//!             device_authorization: None,
//!             revocation: None,
//!         },
//!         flows: vec![FlowSpec {
//!             flow: Flow::AuthorizationCode,
//!             scopes: vec!["mail.imap".into(), "mail.smtp".into(), "offline".into()],
//!             extra_params: BTreeMap::new(),
//!         }],
//!         xoauth2_username: "{address}".into(),
//!         smtp: ServerDefaults { host: "smtp.example.net".into(), port: 587, tls: TlsMode::Starttls },
//!         imap: ServerDefaults { host: "imap.example.net".into(), port: 993, tls: TlsMode::Implicit },
//!         hooks: vec![], // filled in by export_provider!
//!     }
//! }
//! // Check it in your own unit tests exactly as the gateway will:
//! assert!(descriptor().validate().is_ok());
//! ```
//!
//! 3. Optionally add hooks for what data cannot say. Today there is one,
//!    [`hooks::CLASSIFY_TOKEN_ERROR`]: given a refused token request, decide whether a
//!    human must re-authorise the mailbox, the gateway should retry, or the admin must
//!    fix the configuration. Fall back to [`hooks::default_token_error_class`].
//!
//! ```
//! use mailgate_sdk::hooks::{default_token_error_class, TokenErrorClass, TokenErrorReport};
//!
//! fn classify(report: &TokenErrorReport) -> TokenErrorClass {
//!     // provider-specific codes first, then the RFC 6749 reading
//!     default_token_error_class(report)
//! }
//! ```
//!
//! 4. Export it, once, at the crate root:
//!
//! ```ignore
//! mailgate_sdk::export_provider!(
//!     mailgate_sdk::Provider::new(descriptor).classify_token_error(classify)
//! );
//! ```
//!
//! Build with `cargo build --release`, copy `target/release/lib<name>.so` into the
//! plugin folder (owned by root, not group- or world-writable), run
//! `mailgate plugins list` to see it and its SHA-256, pin the hash in
//! `[plugins.sha256]`, and reload the gateway.
//!
//! ## What the gateway checks before trusting a plugin
//! File owner and mode, the pinned SHA-256, the entry symbol, the ABI version, the
//! build signature (same architecture, OS, endianness), the record size, and the
//! descriptor ([`ProviderDescriptor::validate`]: `https` endpoints except to loopback,
//! a valid unique id, non-empty scopes). A refused plugin is logged with the reason and
//! skipped; the others keep working.
//!
//! ## The ABI, for the curious
//! See [`abi`]: one `extern "C"` entry point, a `#[repr(C)]` record, JSON written into
//! buffers the host owns, and status codes. Every exported function catches panics.
//! Plugins are loaded once and never unloaded.

pub mod abi;
pub mod descriptor;
#[doc(hidden)]
pub mod export;
pub mod hooks;

pub use descriptor::{
    DescriptorProblem, Endpoints, Flow, FlowSpec, ProviderDescriptor, ServerDefaults, TlsMode,
};
pub use export::Provider;
