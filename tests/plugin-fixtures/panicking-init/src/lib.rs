//! Bad plugin: building its descriptor panics; the export must catch it.

fn descriptor() -> mailgate_sdk::ProviderDescriptor {
    panic!("fixture: this plugin panics while describing itself")
}

mailgate_sdk::export_provider!(mailgate_sdk::Provider::new(descriptor));
