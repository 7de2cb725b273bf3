//! A third provider, written only against `mailgate-sdk`: proves the gateway needs no
//! change to accept a new provider.

fn descriptor() -> mailgate_sdk::ProviderDescriptor {
    fixture_common::descriptor("imap-oauth")
}

mailgate_sdk::export_provider!(mailgate_sdk::Provider::new(descriptor));
