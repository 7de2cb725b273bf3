//! OAuth 2.0 provider emulator for tests; being built.
