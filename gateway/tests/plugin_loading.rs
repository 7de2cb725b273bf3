//! Loads the real plugins and every deliberately broken fixture plugin through the
//! real loader, as shared libraries built by the harness.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure with a backtrace

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use mailgate::plugin::{LoadPolicy, PluginSet, RefusalReason, load_file, sha256_of};
use mailgate_sdk::hooks::{TokenErrorAction, TokenErrorReport};
use mailgate_sdk::{Flow, TlsMode};
use mailgate_testkit::plugins::{FIXTURES, REAL, built, library_file_name};

fn unpinned() -> LoadPolicy {
    LoadPolicy::new(false, Default::default())
}

fn pinned_all(dir: &Path) -> LoadPolicy {
    let pins = fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            let hash = sha256_of(&mut fs::File::open(&path).unwrap()).unwrap();
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                hash,
            )
        })
        .collect();
    LoadPolicy::new(true, pins)
}

fn report(status: u16, error: &str, description: &str) -> TokenErrorReport {
    TokenErrorReport::new(status, error, description)
}

#[test]
fn real_plugins_load_and_match_the_design() {
    let dir = tempfile::tempdir().unwrap();
    built().install(dir.path(), &REAL);
    let set = PluginSet::load_dir(dir.path(), &pinned_all(dir.path())).unwrap();
    assert!(set.refused().is_empty(), "{:?}", set.refused());
    assert_eq!(set.loaded().len(), 2);

    let o365 = &set.get("office365").expect("office365 loaded").descriptor;
    assert_eq!(
        o365.endpoints.token,
        "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"
    );
    assert_eq!(
        o365.endpoints.authorize.as_deref(),
        Some("https://login.microsoftonline.com/{tenant}/oauth2/v2.0/authorize")
    );
    assert_eq!(
        o365.endpoints.device_authorization.as_deref(),
        Some("https://login.microsoftonline.com/{tenant}/oauth2/v2.0/devicecode")
    );
    let delegated = [
        "https://outlook.office.com/IMAP.AccessAsUser.All",
        "https://outlook.office.com/SMTP.Send",
        "offline_access",
    ];
    assert_eq!(
        o365.flow(Flow::AuthorizationCode).unwrap().scopes,
        delegated
    );
    assert_eq!(o365.flow(Flow::DeviceCode).unwrap().scopes, delegated);
    assert_eq!(
        o365.flow(Flow::ClientCredentials).unwrap().scopes,
        ["https://outlook.office365.com/.default"]
    );
    assert_eq!(
        (o365.smtp.host.as_str(), o365.smtp.port, o365.smtp.tls),
        ("smtp.office365.com", 587, TlsMode::Starttls)
    );
    assert_eq!(
        (o365.imap.host.as_str(), o365.imap.port, o365.imap.tls),
        ("outlook.office365.com", 993, TlsMode::Implicit)
    );

    let google = &set.get("google").expect("google loaded").descriptor;
    assert_eq!(
        google.endpoints.authorize.as_deref(),
        Some("https://accounts.google.com/o/oauth2/auth")
    );
    assert_eq!(
        google.endpoints.token,
        "https://oauth2.googleapis.com/token"
    );
    let code = google.flow(Flow::AuthorizationCode).unwrap();
    assert_eq!(code.scopes, ["https://mail.google.com/"]);
    assert_eq!(code.extra_params["access_type"], "offline");
    assert_eq!(code.extra_params["prompt"], "consent");
    assert_eq!(
        google.flow(Flow::ServiceAccount).unwrap().scopes,
        ["https://mail.google.com/"]
    );
    assert!(
        google.flow(Flow::DeviceCode).is_none(),
        "Google's device flow does not allow the mail scope"
    );
    assert_eq!(
        (google.smtp.host.as_str(), google.smtp.port, google.smtp.tls),
        ("smtp.gmail.com", 465, TlsMode::Implicit)
    );
    assert_eq!(
        (google.imap.host.as_str(), google.imap.port, google.imap.tls),
        ("imap.gmail.com", 993, TlsMode::Implicit)
    );
}

#[test]
fn token_error_hooks_run_across_the_boundary() {
    let dir = tempfile::tempdir().unwrap();
    built().install(dir.path(), &REAL);
    let set = PluginSet::load_dir(dir.path(), &unpinned()).unwrap();
    let o365 = set.get("office365").unwrap();
    let revoked = report(
        400,
        "invalid_grant",
        "AADSTS50173: The provided grant has expired due to it being revoked.",
    );
    let class = o365.classify_token_error(&revoked);
    assert_eq!(class.action, TokenErrorAction::Reauthorize);
    assert!(class.reason.contains("AADSTS50173"), "{}", class.reason);
    let throttled = report(429, "", "");
    assert_eq!(
        o365.classify_token_error(&throttled).action,
        TokenErrorAction::Retry
    );

    let google = set.get("google").unwrap();
    let class = google.classify_token_error(&report(
        400,
        "invalid_grant",
        "Token has been expired or revoked.",
    ));
    assert_eq!(class.action, TokenErrorAction::Reauthorize);
    assert!(
        class.reason.starts_with("Google refused"),
        "{}",
        class.reason
    );
}

#[test]
fn a_third_provider_written_against_the_sdk_loads_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    built().install(dir.path(), &["fixture-imap-oauth"]);
    let set = PluginSet::load_dir(dir.path(), &pinned_all(dir.path())).unwrap();
    assert!(set.refused().is_empty(), "{:?}", set.refused());
    let plugin = set.get("imap-oauth").expect("imap-oauth loaded");
    assert_eq!(plugin.abi_version, mailgate_sdk::abi::ABI_VERSION);
    assert_eq!(plugin.descriptor.flows.len(), 3);
    // No hook: the default RFC 6749 reading applies.
    assert_eq!(
        plugin
            .classify_token_error(&report(400, "invalid_grant", ""))
            .action,
        TokenErrorAction::Reauthorize
    );
}

/// Recognises one kind of refusal.
type IsReason = fn(&RefusalReason) -> bool;

/// Expected refusal for each broken fixture, and a word the message must contain.
fn expected(package: &str) -> Option<(IsReason, &'static str)> {
    Some(match package {
        "fixture-wrong-abi" => (|r| matches!(r, RefusalReason::AbiVersion { .. }), "ABI v2"),
        "fixture-no-entry" => (
            |r| matches!(r, RefusalReason::MissingEntry { .. }),
            "mailgate_plugin_entry",
        ),
        "fixture-panicking-init" => (
            |r| matches!(r, RefusalReason::DescriptorCall(_)),
            "panicked",
        ),
        "fixture-malformed-json" => (
            |r| matches!(r, RefusalReason::DescriptorJson(_)),
            "not valid JSON",
        ),
        "fixture-http-url" => (
            |r| matches!(r, RefusalReason::DescriptorInvalid(_)),
            "endpoints.token",
        ),
        "fixture-empty-scopes" => (
            |r| matches!(r, RefusalReason::DescriptorInvalid(_)),
            "flows[0].scopes",
        ),
        "fixture-duplicate-id" => (
            |r| matches!(r, RefusalReason::DuplicateId { .. }),
            "libmailgate_plugin_google.so",
        ),
        _ => return None,
    })
}

const DUPLICATE_AS: &str = "libzz_another_google.so";

#[test]
fn every_bad_plugin_is_refused_with_its_reason_and_the_good_ones_stay() {
    let dir = tempfile::tempdir().unwrap();
    built().install(dir.path(), &REAL);
    built().install(dir.path(), &FIXTURES);
    // Files load in name order and the first claimant of an id keeps it: name the
    // impostor so that it comes after the real Google plugin.
    fs::rename(
        dir.path().join(library_file_name("fixture-duplicate-id")),
        dir.path().join(DUPLICATE_AS),
    )
    .unwrap();
    let set = PluginSet::load_dir(dir.path(), &pinned_all(dir.path())).unwrap();

    let mut ids: Vec<_> = set.loaded().iter().map(|p| p.id().to_owned()).collect();
    ids.sort();
    assert_eq!(ids, ["google", "imap-oauth", "office365"]);

    let bad: Vec<_> = FIXTURES.iter().filter(|p| expected(p).is_some()).collect();
    assert_eq!(set.refused().len(), bad.len(), "{:#?}", set.refused());
    for package in bad {
        let file = match *package {
            "fixture-duplicate-id" => dir.path().join(DUPLICATE_AS),
            _ => dir.path().join(library_file_name(package)),
        };
        let refusal = set
            .refused()
            .iter()
            .find(|r| r.file == file)
            .unwrap_or_else(|| panic!("{package} was not refused"));
        let (is_right_reason, word) = expected(package).unwrap();
        let line = refusal.to_string();
        assert!(is_right_reason(&refusal.reason), "{package}: {line}");
        assert!(line.contains(word), "{package}: {line:?} lacks {word:?}");
        assert!(line.contains(&file.display().to_string()), "{line}");
        assert!(!line.contains('\n'), "one line per refusal: {line:?}");
    }
}

#[test]
fn a_world_writable_plugin_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let files = built().install(dir.path(), &REAL);
    fs::set_permissions(&files[0], fs::Permissions::from_mode(0o666)).unwrap();
    let set = PluginSet::load_dir(dir.path(), &unpinned()).unwrap();
    assert_eq!(set.loaded().len(), 1);
    let refusal = &set.refused()[0];
    assert_eq!(refusal.file, files[0]);
    assert!(matches!(
        refusal.reason,
        RefusalReason::Writable { mode: 0o666 }
    ));
    assert!(refusal.to_string().contains("chmod go-w"), "{refusal}");
}

#[test]
fn an_unpinned_or_changed_plugin_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let files = built().install(dir.path(), &REAL);
    let mut policy = pinned_all(dir.path());
    let google_name = files[0].file_name().unwrap().to_string_lossy().into_owned();
    let google_hash = policy.pins.remove(&google_name).unwrap();

    let set = PluginSet::load_dir(dir.path(), &policy).unwrap();
    assert_eq!(set.loaded().len(), 1);
    let line = set.refused()[0].to_string();
    assert!(matches!(
        set.refused()[0].reason,
        RefusalReason::NotPinned { .. }
    ));
    // The refusal tells the admin exactly what to pin.
    assert!(
        line.contains(&format!("\"{google_name}\" = \"{google_hash}\"")),
        "{line}"
    );

    policy.pins.insert(google_name, "0".repeat(64));
    let err = load_file(&files[0], &policy).unwrap_err();
    assert!(matches!(err, RefusalReason::HashMismatch { .. }), "{err}");
}

#[test]
fn a_group_writable_plugin_folder_is_refused_as_a_whole() {
    let dir = tempfile::tempdir().unwrap();
    built().install(dir.path(), &REAL);
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let err = PluginSet::load_dir(dir.path(), &unpinned()).unwrap_err();
    assert!(err.to_string().contains("world-writable"), "{err}");
}
