//! Bad plugin: a sound descriptor that claims the id `google`, already taken.

fn descriptor() -> mailgate_sdk::ProviderDescriptor {
    fixture_common::descriptor("google")
}

mailgate_sdk::export_provider!(mailgate_sdk::Provider::new(descriptor));
