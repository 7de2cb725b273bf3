//! Bad plugin: its token endpoint is plain http to a non-loopback host.

fn descriptor() -> mailgate_sdk::ProviderDescriptor {
    let mut d = fixture_common::descriptor("http-url");
    d.endpoints.token = "http://idp.example.net/oauth2/token".into();
    d
}

mailgate_sdk::export_provider!(mailgate_sdk::Provider::new(descriptor));
