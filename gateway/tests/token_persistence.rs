//! Rotated refresh tokens survive a restart: the accounts registry over the real SQLite
//! file and key file, the real Office 365 plugin, and the OAuth emulator rotating
//! refresh tokens (the old one dies the moment a new one is issued).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure with a backtrace

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use mailgate::accounts::{Registry, register};
use mailgate::config::{AccountConfig, Config};
use mailgate::oauth::{AccountHealth, AuthorizationRequest, OAuthError, refresh};
use mailgate::plugin::{LoadPolicy, PluginSet};
use mailgate::secrets::{AccountSecrets, MasterKey, Secret};
use mailgate::store::{AccountState, SqliteStore, Store};
use mailgate_testkit::oauth_emulator::{Emulator, Grant};
use mailgate_testkit::plugins::{REAL, built};

const MAILBOX: &str = "approvals@mailgate.test";
const CLIENT: &str = "ac-client";
const SECRET: &str = "ac-secret-Pw3nR8tY1qZ6";
const REDIRECT: &str = "http://127.0.0.1/oauth/callback";
const ID: &str = "people";

/// Loaded once per process: plugins are never unloaded, and a "restart" here is about
/// the store, the key and the token managers, not about the plugin files.
fn plugins() -> &'static PluginSet {
    static PLUGINS: OnceLock<PluginSet> = OnceLock::new();
    PLUGINS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        built().install(&dir, &REAL);
        PluginSet::load_dir(&dir, &LoadPolicy::new(false, Default::default())).unwrap()
    })
}

/// An authorization-code account at the emulator, as `account add` would store it.
fn account(idp: &Emulator) -> AccountConfig {
    let text = format!(
        "[[accounts]]\nid = {ID:?}\nprovider = \"office365\"\naddress = {MAILBOX:?}\n\
         flow = \"authorization_code\"\nclient_id = {CLIENT:?}\n\
         auth_results = {{ policy = \"off\" }}\n\
         overrides = {{ authorize_url = {:?}, token_url = {:?} }}\n",
        idp.authorize_url(),
        idp.token_url()
    );
    let mut config = Config::parse_unchecked(&text, Path::new("test.toml")).unwrap();
    config.accounts.remove(0)
}

/// One "run" of the gateway: the store file and the key file opened, every account
/// resolved and given a token manager starting from what is stored.
fn boot(root: &Path) -> (Arc<dyn Store>, Registry) {
    let key = Arc::new(MasterKey::load(&root.join("mailgate.key")).unwrap());
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&root.join("state.db")).unwrap());
    let registry = Registry::load(Arc::clone(&store), key, plugins()).unwrap();
    assert!(registry.broken().is_empty(), "{:?}", registry.broken());
    (store, registry)
}

fn stored_secrets(root: &Path) -> AccountSecrets {
    let key = MasterKey::load(&root.join("mailgate.key")).unwrap();
    let store = SqliteStore::open(&root.join("state.db")).unwrap();
    let row = store.get_account(ID).unwrap().expect("row");
    AccountSecrets::open(&key, ID, row.secrets.as_deref().unwrap()).unwrap()
}

fn refresh_token(secrets: &AccountSecrets) -> String {
    secrets
        .refresh_token
        .as_ref()
        .expect("a refresh token is stored")
        .expose()
        .to_owned()
}

#[tokio::test]
async fn a_rotated_refresh_token_is_persisted_and_works_after_a_restart() {
    let idp = Emulator::start_blocking();
    idp.add_user(MAILBOX);
    idp.register_client(CLIENT, Some(SECRET), &[REDIRECT]);
    // The default, said out loud: this test is about rotation.
    idp.set_refresh_token_rotation(true);
    let dir = tempfile::tempdir().unwrap();
    let root: PathBuf = dir.path().to_owned();
    MasterKey::generate(&root.join("mailgate.key")).unwrap();

    // First run: register, authorize, then a refresh that rotates the refresh token.
    let first_refresh = {
        let key = MasterKey::load(&root.join("mailgate.key")).unwrap();
        let store = SqliteStore::open(&root.join("state.db")).unwrap();
        register(
            &store,
            &key,
            &Config::default(),
            &account(&idp),
            Some(Secret::new(SECRET.into())),
        )
        .unwrap();
        drop(store);

        let (_store, registry) = boot(&root);
        let account = registry.get(ID).expect("the account resolves");
        let request = AuthorizationRequest::new(&account.oauth, REDIRECT).unwrap();
        let location = idp.authorize_redirect(&request.url).unwrap();
        let tokens = request.complete(&account.oauth, &location).await.unwrap();
        let first = tokens.refresh_token.clone().expect("a refresh token");
        account.tokens.install(tokens).unwrap();
        assert_eq!(refresh_token(&stored_secrets(&root)), first.expose());

        idp.reset_counters();
        account.tokens.force_refresh().await.unwrap();
        assert_eq!(idp.token_requests(Grant::RefreshToken), 1);
        first
        // Store, registry and managers are dropped here: the "restart".
    };

    let after_first = stored_secrets(&root);
    let rotated = refresh_token(&after_first);
    assert_ne!(
        rotated,
        first_refresh.expose(),
        "the rotated token is stored"
    );
    assert!(
        after_first.access_token_issued_at.is_some(),
        "the issue time is stored with the access token"
    );

    // Second run, from the files alone.
    let (store, registry) = boot(&root);
    let account = registry.get(ID).expect("the account resolves");

    // The refresh token of the first run is dead since the rotation: a gateway that
    // had kept it (instead of persisting the new one) could never refresh again.
    let err = refresh(&account.oauth, &first_refresh).await.unwrap_err();
    let OAuthError::Refused(report) = &err else {
        panic!("{err}")
    };
    assert_eq!(report.error.as_deref(), Some("invalid_grant"), "{err}");

    // The stored access token is still fresh: served without a request.
    idp.reset_counters();
    let cached = account.tokens.access_token().await.unwrap();
    assert_eq!(
        Some(cached.expose()),
        after_first.access_token.as_ref().map(Secret::expose)
    );
    assert_eq!(idp.token_requests(Grant::RefreshToken), 0);

    // And a refresh after the restart works, with the persisted rotated token.
    let renewed = account
        .tokens
        .force_refresh()
        .await
        .expect("the persisted rotated refresh token works after a restart");
    assert_ne!(renewed.expose(), cached.expose());
    assert!(idp.is_access_token_active(renewed.expose()));
    assert_eq!(idp.token_requests(Grant::RefreshToken), 1);
    assert_eq!(*account.tokens.health().borrow(), AccountHealth::Active);
    let row = store.get_account(ID).unwrap().unwrap();
    assert_eq!(row.state, AccountState::Active);
    assert_eq!(row.last_error, None);
    drop((store, registry));

    // Rotated again, and that one persisted too.
    let after_second = refresh_token(&stored_secrets(&root));
    assert_ne!(after_second, rotated);
    assert_ne!(after_second, first_refresh.expose());
}
