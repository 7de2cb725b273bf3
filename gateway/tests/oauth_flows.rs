//! Every OAuth flow and the token manager against the OAuth provider emulator on
//! loopback: tokens obtained, refreshed ahead of expiry, rotated and persisted,
//! refused and classified by the real provider plugins.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure with a backtrace

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailgate::oauth::{
    AccountHealth, AuthorizationRequest, OAuthError, OAuthSettings, RedirectListener,
    ResolvedEndpoints, ServiceAccountKey, TokenManager, TokenSet, TokenSink, client_credentials,
    poll_device, service_account_token, start_device,
};
use mailgate::plugin::{LoadPolicy, PluginSet};
use mailgate::secrets::Secret;
use mailgate_sdk::Flow;
use mailgate_testkit::oauth_emulator::{Emulator, FailureKind, Grant};
use mailgate_testkit::plugins::{REAL, built};

const MAILBOX: &str = "approvals@mailgate.test";
const CLIENT: &str = "mailgate-test-client";
const SECRET: &str = "client-secret-for-tests";

fn emulator() -> Emulator {
    let emulator = Emulator::start_blocking();
    emulator.add_user(MAILBOX);
    emulator.register_client(CLIENT, Some(SECRET), &["http://127.0.0.1/oauth/callback"]);
    emulator
        .set_client_credentials_user(CLIENT, MAILBOX)
        .unwrap();
    emulator
}

fn settings(emulator: &Emulator, flow: Flow) -> OAuthSettings {
    OAuthSettings {
        account_id: "corp".into(),
        address: MAILBOX.into(),
        flow,
        client_id: Some(CLIENT.into()),
        client_secret: Some(Secret::new(SECRET.into())),
        endpoints: ResolvedEndpoints {
            authorize: Some(emulator.authorize_url()),
            token: emulator.token_url(),
            device_authorization: Some(emulator.device_authorization_url()),
        },
        scopes: vec![
            "https://outlook.office.com/SMTP.Send".into(),
            "offline_access".into(),
        ],
        extra_params: BTreeMap::new(),
        service_account_key: None,
        extra_ca: None,
    }
}

/// The token sink of the tests: remembers what a store would have persisted.
#[derive(Default)]
struct RecordingSink {
    saved: Mutex<Vec<TokenSet>>,
    health: Mutex<Vec<AccountHealth>>,
}

impl TokenSink for RecordingSink {
    fn save_tokens(&self, _: &str, tokens: &TokenSet) -> Result<(), String> {
        self.saved.lock().unwrap().push(tokens.clone());
        Ok(())
    }
    fn save_health(&self, _: &str, health: &AccountHealth) -> Result<(), String> {
        self.health.lock().unwrap().push(health.clone());
        Ok(())
    }
}

/// A manager classifying with the real Office 365 plugin, loaded through the loader.
fn manager(
    settings: OAuthSettings,
    initial: Option<TokenSet>,
    sink: Arc<RecordingSink>,
) -> TokenManager {
    static PLUGINS: std::sync::OnceLock<PluginSet> = std::sync::OnceLock::new();
    let plugins = PLUGINS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        built().install(&dir, &REAL);
        PluginSet::load_dir(&dir, &LoadPolicy::new(false, Default::default())).unwrap()
    });
    let office365 = plugins.get("office365").unwrap().clone();
    TokenManager::new(
        settings,
        initial,
        AccountHealth::Active,
        Arc::new(move |report| office365.classify_token_error(report)),
        sink,
    )
}

#[tokio::test]
async fn client_credentials_yields_a_token_for_the_mailbox() {
    let emulator = emulator();
    let tokens = client_credentials(&settings(&emulator, Flow::ClientCredentials))
        .await
        .unwrap();
    assert!(emulator.is_access_token_active(tokens.access_token.expose()));
    assert!(
        tokens.access_token.expose().len() > 1000,
        "realistic token length"
    );
    assert!(tokens.expires_at > tokens.issued_at);
    assert_eq!(emulator.token_requests(Grant::ClientCredentials), 1);
}

#[tokio::test]
async fn a_wrong_client_secret_is_a_failure_for_the_admin_not_a_retry() {
    let emulator = emulator();
    let mut s = settings(&emulator, Flow::ClientCredentials);
    s.client_secret = Some(Secret::new("wrong".into()));
    let err = client_credentials(&s).await.unwrap_err();
    let OAuthError::Refused(report) = &err else {
        panic!("{err}")
    };
    assert_eq!(report.http_status, 401);
    assert_eq!(report.error.as_deref(), Some("invalid_client"));
    assert!(
        !err.to_string().contains("wrong"),
        "no secret in errors: {err}"
    );
}

#[tokio::test]
async fn authorization_code_with_pkce_and_state() {
    let emulator = emulator();
    let s = settings(&emulator, Flow::AuthorizationCode);
    let listener = RedirectListener::bind(0).await.unwrap();
    let request = AuthorizationRequest::new(&s, &listener.redirect_uri()).unwrap();
    assert!(
        request.url.contains("code_challenge_method=S256"),
        "{}",
        request.url
    );
    assert!(
        request.url.contains("login_hint=approvals%40mailgate.test"),
        "{}",
        request.url
    );

    // The browser: the emulator consents and redirects; follow it to our listener.
    let location = emulator.authorize_redirect(&request.url).unwrap();
    let browser = tokio::task::spawn_blocking(move || {
        let target = location.strip_prefix("http://").unwrap();
        let (host, path) = target.split_once('/').unwrap();
        let mut stream = std::net::TcpStream::connect(host).unwrap();
        use std::io::{Read, Write};
        write!(stream, "GET /{path} HTTP/1.1\r\nHost: {host}\r\n\r\n").unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    });
    let target = listener.accept().await.unwrap();
    assert!(browser.await.unwrap().contains("authorization received"));
    let tokens = request.complete(&s, &target).await.unwrap();
    assert!(tokens.refresh_token.is_some());
    assert!(emulator.is_access_token_active(tokens.access_token.expose()));
}

#[tokio::test]
async fn a_redirect_with_another_state_is_refused_before_the_code_is_used() {
    let emulator = emulator();
    let s = settings(&emulator, Flow::AuthorizationCode);
    let request = AuthorizationRequest::new(&s, "http://127.0.0.1:9/oauth/callback").unwrap();
    let location = emulator.authorize_redirect(&request.url).unwrap();
    let forged = location.replace("state=", "state=x");
    let err = request.complete(&s, &forged).await.unwrap_err();
    assert!(matches!(err, OAuthError::StateMismatch), "{err}");
    assert_eq!(emulator.token_requests(Grant::AuthorizationCode), 0);
}

#[tokio::test]
async fn device_code_polls_until_approved_honouring_slow_down() {
    let emulator = Arc::new(emulator());
    emulator.set_device_poll_interval(Duration::from_secs(1));
    let s = settings(&emulator, Flow::DeviceCode);
    let authorization = start_device(&s).await.unwrap();
    assert_eq!(
        authorization.verification_uri,
        emulator.device_verification_url()
    );
    let code = authorization.user_code.clone();
    let approver = emulator.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(2500)).await;
        approver.approve_device(&code, MAILBOX).unwrap();
    });
    let tokens = poll_device(&s, &authorization).await.unwrap();
    assert!(emulator.is_access_token_active(tokens.access_token.expose()));
    assert!(emulator.token_requests(Grant::DeviceCode) >= 2, "it polled");
}

#[tokio::test]
async fn google_service_account_assertion_names_the_mailbox() {
    let emulator = emulator();
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("sa.json");
    emulator
        .create_service_account("gateway@project.iam.gserviceaccount.com", &key_file)
        .unwrap();
    let mut s = settings(&emulator, Flow::ServiceAccount);
    s.client_id = None;
    s.client_secret = None;
    s.scopes = vec!["https://mail.google.com/".into()];
    s.service_account_key = Some(ServiceAccountKey::from_file(&key_file).unwrap());
    let tokens = service_account_token(&s).await.unwrap();
    assert!(emulator.is_access_token_active(tokens.access_token.expose()));

    // The assertion is for a mailbox the service account may not impersonate.
    s.address = "nobody@elsewhere.test".into();
    let err = service_account_token(&s).await.unwrap_err();
    assert!(matches!(err, OAuthError::Refused(_)), "{err}");
}

/// Tokens for `manager` tests: an authorization-code grant done in-process.
async fn authorized(emulator: &Emulator, s: &OAuthSettings) -> TokenSet {
    let request = AuthorizationRequest::new(s, "http://127.0.0.1:9/oauth/callback").unwrap();
    let location = emulator.authorize_redirect(&request.url).unwrap();
    request.complete(s, &location).await.unwrap()
}

#[tokio::test]
async fn fifty_concurrent_requests_for_a_stale_token_cause_one_refresh() {
    let emulator = emulator();
    let s = settings(&emulator, Flow::AuthorizationCode);
    let mut tokens = authorized(&emulator, &s).await;
    tokens.expires_at = tokens.issued_at; // stale: every caller needs a new one
    let sink = Arc::new(RecordingSink::default());
    let manager = manager(s, Some(tokens), sink.clone());
    emulator.reset_counters();
    let calls: Vec<_> = (0..50)
        .map(|_| {
            let m = manager.clone();
            tokio::spawn(async move { m.access_token().await.map(|t| t.expose().to_owned()) })
        })
        .collect();
    let mut seen = std::collections::HashSet::new();
    for call in calls {
        seen.insert(call.await.unwrap().unwrap());
    }
    assert_eq!(emulator.token_requests(Grant::RefreshToken), 1);
    assert_eq!(seen.len(), 1, "all callers got the one new token");
    assert_eq!(sink.saved.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn refresh_happens_in_the_background_before_expiry_and_rotation_is_persisted() {
    let emulator = emulator();
    emulator.set_access_token_lifetime(Duration::from_secs(6));
    let s = settings(&emulator, Flow::AuthorizationCode);
    let first = authorized(&emulator, &s).await;
    let sink = Arc::new(RecordingSink::default());
    let manager = manager(s, Some(first.clone()), sink.clone());
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(manager.clone().run(shutdown));
    emulator.reset_counters();

    // Refresh at a fifth of the lifetime left: ~4.8 s in, before the 6 s expiry.
    tokio::time::sleep(Duration::from_millis(5500)).await;
    assert_eq!(
        emulator.token_requests(Grant::RefreshToken),
        1,
        "refreshed ahead of expiry"
    );
    let saved = sink
        .saved
        .lock()
        .unwrap()
        .last()
        .cloned()
        .expect("new tokens persisted");
    let rotated = saved.refresh_token.as_ref().unwrap().expose().to_owned();
    assert_ne!(
        rotated,
        first.refresh_token.as_ref().unwrap().expose(),
        "rotated"
    );
    // A request now is served from the cache: no request waited on the refresh.
    let token = manager.access_token().await.unwrap();
    assert_eq!(token.expose(), saved.access_token.expose());
    assert_eq!(emulator.token_requests(Grant::RefreshToken), 1);

    // A "restart": a new manager from what was persisted refreshes with the rotated
    // token (the first one is dead since rotation).
    stop.send(true).unwrap();
    task.await.unwrap();
    let mut restored = saved.clone();
    restored.expires_at = restored.issued_at;
    let again = self::manager(
        settings(&emulator, Flow::AuthorizationCode),
        Some(restored),
        sink.clone(),
    );
    again
        .access_token()
        .await
        .expect("the persisted rotated refresh token works");
}

#[tokio::test]
async fn revocation_moves_only_that_account_to_reauth_required() {
    let emulator = emulator();
    emulator.add_user("other@mailgate.test");
    let s = settings(&emulator, Flow::AuthorizationCode);
    let tokens = authorized(&emulator, &s).await;
    let sink = Arc::new(RecordingSink::default());
    let revoked = manager(s, Some(tokens), sink.clone());
    let mut other_settings = settings(&emulator, Flow::ClientCredentials);
    other_settings.account_id = "other".into();
    let other = manager(other_settings, None, Arc::new(RecordingSink::default()));

    emulator.revoke_user(MAILBOX);
    emulator.fail_next(1, FailureKind::MicrosoftInvalidGrant);
    let err = revoked.force_refresh().await.unwrap_err();
    assert!(err.to_string().contains("re-authorisation"), "{err}");
    assert!(
        err.to_string().contains("AADSTS50173"),
        "classified by the plugin: {err}"
    );
    assert!(matches!(
        *revoked.health().borrow(),
        AccountHealth::ReauthRequired { .. }
    ));
    assert!(matches!(
        sink.health.lock().unwrap().last(),
        Some(AccountHealth::ReauthRequired { .. })
    ));
    // It stays parked: no more requests to the provider until re-authorised.
    emulator.reset_counters();
    assert!(revoked.access_token().await.is_err());
    assert_eq!(emulator.token_requests(Grant::RefreshToken), 0);

    other
        .access_token()
        .await
        .expect("the other account is unaffected");
}

#[tokio::test]
async fn provider_outage_keeps_the_token_and_the_account() {
    let emulator = emulator();
    let s = settings(&emulator, Flow::AuthorizationCode);
    let tokens = authorized(&emulator, &s).await;
    let sink = Arc::new(RecordingSink::default());
    let manager = manager(s, Some(tokens.clone()), sink);
    emulator.fail_next(3, FailureKind::HttpStatus(503));
    for _ in 0..3 {
        let err = manager.force_refresh().await.unwrap_err();
        assert!(err.to_string().contains("temporarily"), "{err}");
    }
    assert!(matches!(
        *manager.health().borrow(),
        AccountHealth::Degraded { .. }
    ));
    // The still-valid token keeps being served during the outage.
    assert_eq!(
        manager.access_token().await.unwrap().expose(),
        tokens.access_token.expose()
    );
    manager
        .force_refresh()
        .await
        .expect("recovers after the outage");
    assert_eq!(*manager.health().borrow(), AccountHealth::Active);
}
