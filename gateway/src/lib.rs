//! mailgate: the gateway library. `main.rs` only parses the command line and calls in.

pub mod cli;
pub mod config;
pub mod plugin;
pub mod preflight;
pub mod store;
