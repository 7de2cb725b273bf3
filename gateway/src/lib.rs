//! mailgate: the gateway library. `main.rs` only parses the command line and calls in.

pub mod accounts;
pub mod cli;
pub mod config;
pub mod mail;
pub mod oauth;
pub mod outbox;
pub mod plugin;
pub mod preflight;
pub mod render;
pub mod secrets;
pub mod server;
pub mod store;
