//! Bad plugin: one of its flows has no scopes.

fn descriptor() -> mailgate_sdk::ProviderDescriptor {
    let mut d = fixture_common::descriptor("empty-scopes");
    d.flows[0].scopes.clear();
    d
}

mailgate_sdk::export_provider!(mailgate_sdk::Provider::new(descriptor));
