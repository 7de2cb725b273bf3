//! The one TLS client configuration of the mail module, used by IMAP (through
//! tokio-rustls) and SMTP (through lettre): the platform's root certificates
//! (rustls-native-certs) plus an optional extra CA file, on rustls' ring provider.
//!
//! The provider is passed explicitly instead of installing a process-wide default:
//! `CryptoProvider::install_default` fails (and `.unwrap()` on it panics) when anything
//! else in the process installed one first.
//!
//! lettre 0.11 cannot take a ready `rustls::ClientConfig`; it builds its own from a
//! `TlsParametersBuilder`. [`TlsContext::smtp_parameters`] therefore hands it exactly
//! the root certificates this context accepted, with lettre's own store switched off,
//! so both protocols trust the same set.

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use lettre::transport::smtp::client::{Certificate, CertificateStore, TlsParameters};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::{Failure, MailError, MailServer, Timeouts};

/// Where trust comes from besides the platform's store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// A PEM file of CA certificates to trust as well: a private CA, or the local
    /// test stack's throwaway CA.
    pub extra_ca: Option<PathBuf>,
}

impl TlsSettings {
    /// Trust only the platform's roots.
    pub fn platform() -> Self {
        Self::default()
    }

    /// Trust the platform's roots and the CA certificates in `path`.
    pub fn with_extra_ca(path: impl Into<PathBuf>) -> Self {
        Self {
            extra_ca: Some(path.into()),
        }
    }
}

/// A built TLS client configuration. Cheap to clone; build it once per settings.
#[derive(Clone)]
pub struct TlsContext {
    config: Arc<ClientConfig>,
    /// Every root the config trusts, in DER, for lettre (see the module docs).
    roots: Arc<[CertificateDer<'static>]>,
    platform_roots: usize,
    extra_ca: Option<PathBuf>,
}

impl fmt::Debug for TlsContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsContext")
            .field("platform_roots", &self.platform_roots)
            .field("extra_roots", &(self.roots.len() - self.platform_roots))
            .field("extra_ca", &self.extra_ca)
            .finish()
    }
}

impl TlsContext {
    /// Loads the platform roots and the extra CA file. An unreadable or unusable
    /// CA file is an error naming the file; so is ending up with no root at all
    /// (no TLS connection could ever be verified).
    pub fn new(settings: &TlsSettings) -> Result<TlsContext, MailError> {
        let mut store = RootCertStore::empty();
        let mut roots = Vec::new();

        let native = rustls_native_certs::load_native_certs();
        for e in &native.errors {
            // One unreadable file in /etc/ssl must not stop the gateway; the
            // remaining roots still work.
            tracing::warn!("skipping a platform CA certificate source: {e}");
        }
        for cert in native.certs {
            // Platform stores hold the odd certificate webpki cannot use; skip those
            // as browsers do rather than refusing the whole store.
            if store.add(cert.clone()).is_ok() {
                roots.push(cert);
            }
        }
        let platform_roots = roots.len();

        if let Some(path) = &settings.extra_ca {
            for cert in read_ca_file(path)? {
                store
                    .add(cert.clone())
                    .map_err(|e| MailError::CaFileInvalid {
                        path: path.clone(),
                        reason: format!("a certificate cannot serve as a trust anchor: {e}"),
                    })?;
                roots.push(cert);
            }
        }

        if store.is_empty() {
            return Err(MailError::TlsSetup(
                "no trusted root certificate: the platform store is empty (install \
                 ca-certificates) and no extra CA file is configured"
                    .into(),
            ));
        }

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| MailError::TlsSetup(e.to_string()))?
            .with_root_certificates(store)
            .with_no_client_auth();

        Ok(TlsContext {
            config: Arc::new(config),
            roots: roots.into(),
            platform_roots,
            extra_ca: settings.extra_ca.clone(),
        })
    }

    /// The rustls configuration (ring provider, TLS 1.2 and 1.3, our roots).
    pub fn client_config(&self) -> Arc<ClientConfig> {
        self.config.clone()
    }

    /// How many roots came from the platform, and how many from the extra CA file.
    pub fn root_counts(&self) -> (usize, usize) {
        (self.platform_roots, self.roots.len() - self.platform_roots)
    }

    /// lettre's TLS parameters for `server`, trusting the same roots as
    /// [`TlsContext::client_config`] and nothing else.
    pub fn smtp_parameters(&self, server: &MailServer) -> Result<TlsParameters, MailError> {
        // Checked here so a bad host fails while building, not at the first send.
        server_name(server, "smtp tls")?;
        let mut builder =
            TlsParameters::builder(server.host.clone()).certificate_store(CertificateStore::None);
        for root in self.roots.iter() {
            let cert = Certificate::from_der(root.to_vec())
                .map_err(|e| MailError::TlsSetup(format!("lettre refused a root: {e}")))?;
            builder = builder.add_root_certificate(cert);
        }
        builder
            .build_rustls()
            .map_err(|e| MailError::TlsSetup(format!("lettre TLS parameters: {e}")))
    }

    /// The TLS handshake over `stream` (a fresh connection for implicit TLS, or
    /// one right after the server accepted STARTTLS), verifying the certificate
    /// against `server.host`. Runs under `timeouts.command`.
    pub async fn handshake<S>(
        &self,
        stream: S,
        server: &MailServer,
        timeouts: &Timeouts,
        step: &'static str,
    ) -> Result<TlsStream<S>, MailError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let name = server_name(server, step)?;
        let connector = TlsConnector::from(self.config.clone());
        match tokio::time::timeout(timeouts.command, connector.connect(name, stream)).await {
            Err(_) => Err(MailError::step(
                step,
                server,
                Failure::Timeout(timeouts.command),
            )),
            Ok(Err(e)) => Err(MailError::step(step, server, tls_failure(&e))),
            Ok(Ok(tls)) => Ok(tls),
        }
    }
}

/// What a report says about an established TLS session: `TLSv1_3 / TLS13_AES_…`.
pub(crate) fn describe_session<S>(tls: &TlsStream<S>) -> String {
    let (_, conn) = tls.get_ref();
    let version = conn
        .protocol_version()
        .map(|v| format!("{v:?}"))
        .unwrap_or_else(|| "TLS".into());
    match conn.negotiated_cipher_suite() {
        Some(suite) => format!("{version}, {:?}", suite.suite()),
        None => version,
    }
}

fn server_name(server: &MailServer, step: &'static str) -> Result<ServerName<'static>, MailError> {
    ServerName::try_from(server.host.clone()).map_err(|_| {
        MailError::step(
            step,
            server,
            Failure::InvalidServerName(server.host.clone()),
        )
    })
}

pub(crate) fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, MailError> {
    let pem = std::fs::read(path).map_err(|source| MailError::CaFileUnreadable {
        path: path.to_path_buf(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| MailError::CaFileInvalid {
            path: path.to_path_buf(),
            reason: format!("not valid PEM: {e}"),
        })?;
    if certs.is_empty() {
        return Err(MailError::CaFileInvalid {
            path: path.to_path_buf(),
            reason: "no `-----BEGIN CERTIFICATE-----` block found (PEM expected)".into(),
        });
    }
    Ok(certs)
}

/// Classifies a TLS failure, wherever in the error chain rustls' own error sits
/// (tokio-rustls wraps it in an `io::Error`, lettre wraps that again). Certificate
/// problems say so plainly; they are the ones an admin can fix.
pub(crate) fn tls_failure(err: &(dyn StdError + 'static)) -> Failure {
    let mut current: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return classify(tls);
        }
        // `io::Error::source()` skips the wrapped error itself; look at it directly.
        if let Some(inner) = e.downcast_ref::<io::Error>().and_then(|io| io.get_ref())
            && let Some(tls) = inner.downcast_ref::<rustls::Error>()
        {
            return classify(tls);
        }
        current = e.source();
    }
    Failure::Tls(format!(
        "handshake failed: {}",
        super::printable(&err.to_string())
    ))
}

fn classify(err: &rustls::Error) -> Failure {
    use rustls::CertificateError;
    match err {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => Failure::Certificate(
            "unknown issuer: the server's certificate does not chain to a trusted root \
             (for a private CA, configure its PEM file as the extra CA)"
                .into(),
        ),
        rustls::Error::InvalidCertificate(cert) => Failure::Certificate(cert.to_string()),
        other => Failure::Tls(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    // A self-signed CA certificate made with `openssl req -x509` (EC P-256, valid
    // until 2126) for these tests only; its key was thrown away.
    const TEST_CA: &str = "-----BEGIN CERTIFICATE-----
MIIBpzCCAU2gAwIBAgIUbCR/1J4dhmkA6aPplcs2+F9MmygwCgYIKoZIzj0EAwIw
IDEeMBwGA1UEAwwVbWFpbGdhdGUgdW5pdC10ZXN0IENBMCAXDTI2MTEyMjA0MzE1
NVoYDzIxMjYxMDI5MDQzMTU1WjAgMR4wHAYDVQQDDBVtYWlsZ2F0ZSB1bml0LXRl
c3QgQ0EwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAQLlLxgX2QT1UOwZAklVzt5
XAdfie93uKT+IZV/FaF0vuJfvmm1CCIS6DKfWyxJ3c6FmmAcYb30Ej/zIX/rW7Zr
o2MwYTAdBgNVHQ4EFgQU1Hc9+cI8Zet0JgZGBGFaM5NOLHkwHwYDVR0jBBgwFoAU
1Hc9+cI8Zet0JgZGBGFaM5NOLHkwDwYDVR0TAQH/BAUwAwEB/zAOBgNVHQ8BAf8E
BAMCAgQwCgYIKoZIzj0EAwIDSAAwRQIhAPCis13pKbXOdKM9oZvsEkOaqS64Noeu
lg2Dm3AdltOCAiAUiIbxqgoXfdmtsuzTwPPQhW2VRwC2aY8rWcFFoKGYsA==
-----END CERTIFICATE-----
";

    #[test]
    fn missing_ca_file_is_named() {
        let path = PathBuf::from("/nonexistent/mailgate-ca.pem");
        let err = TlsContext::new(&TlsSettings::with_extra_ca(&path)).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, MailError::CaFileUnreadable { .. }), "{err:?}");
        assert!(text.contains("/nonexistent/mailgate-ca.pem"), "{text}");
    }

    #[test]
    fn ca_file_without_certificates_is_named() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(b"this is not a certificate\n").unwrap();
        let err = TlsContext::new(&TlsSettings::with_extra_ca(file.path())).unwrap_err();
        assert!(matches!(err, MailError::CaFileInvalid { .. }), "{err:?}");
        assert!(
            err.to_string().contains(&file.path().display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn garbled_pem_is_refused_with_the_file_name() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n")
            .unwrap();
        let err = TlsContext::new(&TlsSettings::with_extra_ca(file.path())).unwrap_err();
        assert!(matches!(err, MailError::CaFileInvalid { .. }), "{err:?}");
        assert!(
            err.to_string().contains(&file.path().display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn certificate_errors_are_found_inside_io_errors() {
        let io = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        match tls_failure(&io) {
            Failure::Certificate(text) => assert!(text.contains("unknown issuer"), "{text}"),
            other => panic!("{other:?}"),
        }
        let plain = io::Error::new(io::ErrorKind::UnexpectedEof, "eof");
        assert!(matches!(tls_failure(&plain), Failure::Tls(_)));
    }

    #[test]
    fn invalid_host_is_refused_before_connecting() {
        let ctx = match TlsContext::new(&TlsSettings::platform()) {
            Ok(ctx) => ctx,
            // A build host without ca-certificates: nothing to check here.
            Err(MailError::TlsSetup(_)) => return,
            Err(e) => panic!("{e}"),
        };
        let server = MailServer::new("bad host name", 465, crate::mail::TlsMode::Implicit);
        let Err(err) = ctx.smtp_parameters(&server) else {
            panic!("a host with spaces must be refused");
        };
        assert!(err.to_string().contains("not a valid DNS name"), "{err}");
        assert!(
            ctx.smtp_parameters(&MailServer::new(
                "127.0.0.1",
                465,
                crate::mail::TlsMode::Implicit
            ))
            .is_ok()
        );
    }

    #[test]
    fn extra_ca_is_added_to_the_platform_roots() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        // A key or other block next to the certificate is skipped, as in many
        // bundle files.
        file.write_all(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
            .unwrap();
        file.write_all(TEST_CA.as_bytes()).unwrap();
        let ctx = TlsContext::new(&TlsSettings::with_extra_ca(file.path())).unwrap();
        assert_eq!(ctx.root_counts().1, 1);
        assert!(format!("{ctx:?}").contains("extra_roots: 1"));
        let server = MailServer::new("localhost", 587, crate::mail::TlsMode::Starttls);
        assert!(ctx.smtp_parameters(&server).is_ok());
    }
}
