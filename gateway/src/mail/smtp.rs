//! SMTP submission with SASL XOAUTH2.
//!
//! [`smtp_transport`] builds the lettre transport the sending code uses:
//! `Tls::Wrapper` for implicit TLS, `Tls::Required` for STARTTLS (never
//! `Tls::Opportunistic`, which falls back to plaintext when a man in the middle
//! strips the STARTTLS capability), XOAUTH2 only.
//!
//! [`connect_authenticated`] and [`verify_smtp`] drive an `AsyncSmtpConnection`
//! step by step instead, because lettre's own `auth()` cannot finish a failed
//! XOAUTH2 exchange: the server answers the initial response with a `334` carrying a
//! base64 JSON error, lettre's XOAUTH2 mechanism refuses to answer any challenge
//! ("This mechanism does not expect a challenge"), and the server's real verdict
//! (`535 5.7.8 …`) is never read. Here the client sends the empty line the mechanism
//! requires and reports the server's final answer.

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use base64::Engine as _;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream, Tls};
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::response::Response;
use lettre::{AsyncSmtpTransport, Tokio1Executor};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::tls::{describe_session, tls_failure};
use super::verify::{Recorder, VerifyReport};
use super::{Failure, MailError, MailServer, Timeouts, TlsContext, TlsMode, XOAuth2};
use super::{connect_tcp, printable, within};

/// The lettre transport the sending code uses.
pub type SmtpTransport = AsyncSmtpTransport<Tokio1Executor>;

pub const STEP_CONNECT: &str = "smtp connect";
pub const STEP_TLS: &str = "smtp tls";
pub const STEP_AUTH: &str = "smtp auth xoauth2";
const STEPS: &[&str] = &[STEP_CONNECT, STEP_TLS, STEP_AUTH];

/// A lettre transport for `server` that authenticates with XOAUTH2 as `auth`.
///
/// The credentials are fixed for the transport's lifetime (lettre keeps them for
/// every pooled connection it opens), so build a new transport when the access token
/// is refreshed. lettre applies `timeouts.connect` to the TCP connect only: wrap each
/// send in `tokio::time::timeout`. A refused token surfaces from lettre as "internal
/// client error: This mechanism does not expect a challenge" (see the module docs);
/// [`connect_authenticated`] shows the server's real answer.
///
/// Must be called inside a tokio runtime: lettre's pool spawns a task when the
/// transport is built (outside one it panics, then panics again in `Drop`, which
/// aborts the process); this returns [`MailError::NoRuntime`] instead.
pub fn smtp_transport(
    server: &MailServer,
    tls: &TlsContext,
    auth: &XOAuth2,
    timeouts: &Timeouts,
) -> Result<SmtpTransport, MailError> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(MailError::NoRuntime);
    }
    let parameters = tls.smtp_parameters(server)?;
    let tls = match server.tls {
        TlsMode::Implicit => Tls::Wrapper(parameters),
        TlsMode::Starttls => Tls::Required(parameters),
    };
    Ok(SmtpTransport::builder_dangerous(server.host.clone())
        .port(server.port)
        .tls(tls)
        .authentication(vec![Mechanism::Xoauth2])
        .credentials(Credentials::new(
            auth.user.clone(),
            auth.access_token.clone(),
        ))
        .timeout(Some(timeouts.connect))
        .build())
}

/// Connects to `server`, establishes TLS and authenticates with XOAUTH2: a
/// connection ready for `MAIL FROM`, or the first step that failed with the
/// server's answer.
pub async fn connect_authenticated(
    server: &MailServer,
    tls: &TlsContext,
    auth: &XOAuth2,
    timeouts: &Timeouts,
) -> Result<AsyncSmtpConnection, MailError> {
    let mut conn = connect_and_secure(server, tls, timeouts).await?;
    match auth_xoauth2(&mut conn, auth, server, timeouts).await {
        Ok(_) => Ok(conn),
        Err(e) => {
            quit(&mut conn, timeouts).await;
            Err(e)
        }
    }
}

/// The SMTP half of the account check: `smtp connect`, `smtp tls`,
/// `smtp auth xoauth2`, each with the server's answer; then `QUIT`. No mail is sent.
pub async fn verify_smtp(
    server: &MailServer,
    tls: &TlsContext,
    auth: &XOAuth2,
    timeouts: &Timeouts,
) -> VerifyReport {
    verify_smtp_with(server, Ok(tls), auth, timeouts).await
}

/// [`verify_smtp`] with the TLS context possibly missing (its construction failed):
/// the connect step still runs, the TLS step reports why there is no context.
pub(crate) async fn verify_smtp_with(
    server: &MailServer,
    tls: Result<&TlsContext, &MailError>,
    auth: &XOAuth2,
    timeouts: &Timeouts,
) -> VerifyReport {
    let mut rec = Recorder::new(STEPS);
    let tcp = match connect_tcp(server, timeouts, STEP_CONNECT).await {
        Ok(tcp) => tcp,
        Err(e) => return rec.fail(STEP_CONNECT, &e),
    };

    let mut conn = match server.tls {
        TlsMode::Implicit => {
            rec.ok(
                STEP_CONNECT,
                format!("TCP connection to {}", server.label()),
            );
            let tls = match tls {
                Ok(tls) => tls,
                Err(e) => return rec.fail_text(STEP_TLS, e.to_string()),
            };
            match implicit_tls(tcp, server, tls, timeouts).await {
                Ok((conn, session)) => {
                    rec.ok(
                        STEP_TLS,
                        format!(
                            "implicit TLS ({session}), certificate verified for {}; server {}",
                            server.host,
                            printable(conn.server_info().name())
                        ),
                    );
                    conn
                }
                Err(e) => return rec.fail(STEP_TLS, &e),
            }
        }
        TlsMode::Starttls => {
            let mut conn = match greet(Box::new(tcp), server, timeouts, STEP_CONNECT).await {
                Ok(conn) => conn,
                Err(e) => return rec.fail(STEP_CONNECT, &e),
            };
            rec.ok(
                STEP_CONNECT,
                format!(
                    "connected to {}; server {}",
                    server.label(),
                    printable(conn.server_info().name())
                ),
            );
            let tls = match tls {
                Ok(tls) => tls,
                Err(e) => {
                    quit(&mut conn, timeouts).await;
                    return rec.fail_text(STEP_TLS, e.to_string());
                }
            };
            match starttls(&mut conn, server, tls, timeouts).await {
                Ok(()) => rec.ok(
                    STEP_TLS,
                    format!("STARTTLS, certificate verified for {}", server.host),
                ),
                // The connection is unusable mid-handshake; don't try to QUIT on it.
                Err(e) => return rec.fail(STEP_TLS, &e),
            }
            conn
        }
    };

    match auth_xoauth2(&mut conn, auth, server, timeouts).await {
        Ok(answer) => rec.ok(STEP_AUTH, answer),
        Err(e) => {
            quit(&mut conn, timeouts).await;
            return rec.fail(STEP_AUTH, &e);
        }
    }
    quit(&mut conn, timeouts).await;
    rec.finish()
}

/// TCP, TLS (either way) and EHLO.
async fn connect_and_secure(
    server: &MailServer,
    tls: &TlsContext,
    timeouts: &Timeouts,
) -> Result<AsyncSmtpConnection, MailError> {
    let tcp = connect_tcp(server, timeouts, STEP_CONNECT).await?;
    match server.tls {
        TlsMode::Implicit => Ok(implicit_tls(tcp, server, tls, timeouts).await?.0),
        TlsMode::Starttls => {
            let mut conn = greet(Box::new(tcp), server, timeouts, STEP_CONNECT).await?;
            starttls(&mut conn, server, tls, timeouts).await?;
            Ok(conn)
        }
    }
}

/// Handshake with our own rustls config, then greeting and EHLO over TLS.
async fn implicit_tls(
    tcp: TcpStream,
    server: &MailServer,
    tls: &TlsContext,
    timeouts: &Timeouts,
) -> Result<(AsyncSmtpConnection, String), MailError> {
    let stream = tls.handshake(tcp, server, timeouts, STEP_TLS).await?;
    let session = describe_session(&stream);
    let conn = greet(Box::new(TlsTcp(stream)), server, timeouts, STEP_TLS).await?;
    Ok((conn, session))
}

/// Reads the greeting and sends EHLO (lettre does both in `connect_with_transport`).
pub(crate) async fn greet(
    stream: Box<dyn AsyncTokioStream>,
    server: &MailServer,
    timeouts: &Timeouts,
    step: &'static str,
) -> Result<AsyncSmtpConnection, MailError> {
    within(timeouts.command, step, server, async {
        AsyncSmtpConnection::connect_with_transport(stream, &ClientId::default())
            .await
            .map_err(|e| MailError::step(step, server, smtp_failure(&e)))
    })
    .await
}

/// STARTTLS, which must be offered and must succeed: there is no fallback.
async fn starttls(
    conn: &mut AsyncSmtpConnection,
    server: &MailServer,
    tls: &TlsContext,
    timeouts: &Timeouts,
) -> Result<(), MailError> {
    if !conn.can_starttls() {
        return Err(MailError::step(
            STEP_TLS,
            server,
            Failure::Tls(
                "the server does not offer STARTTLS; mailgate never sends credentials \
                 without TLS"
                    .into(),
            ),
        ));
    }
    let parameters = tls.smtp_parameters(server)?;
    within(timeouts.command, STEP_TLS, server, async {
        conn.starttls(parameters, &ClientId::default())
            .await
            .map_err(|e| MailError::step(STEP_TLS, server, starttls_failure(&e)))
    })
    .await
}

/// `AUTH XOAUTH2 <initial response>`; on a `334` error challenge, the empty line
/// that ends the exchange, then the server's verdict. Returns the success answer.
pub(crate) async fn auth_xoauth2(
    conn: &mut AsyncSmtpConnection,
    auth: &XOAuth2,
    server: &MailServer,
    timeouts: &Timeouts,
) -> Result<String, MailError> {
    let fail = |failure| MailError::step(STEP_AUTH, server, failure);
    if !conn
        .server_info()
        .supports_auth_mechanism(Mechanism::Xoauth2)
    {
        return Err(fail(Failure::Protocol(
            "the server does not offer AUTH XOAUTH2 on this connection".into(),
        )));
    }
    let initial = base64::engine::general_purpose::STANDARD.encode(auth.sasl_message());
    let first = within(timeouts.command, STEP_AUTH, server, async {
        Ok(conn
            .command(RawLine(format!("AUTH XOAUTH2 {initial}\r\n")))
            .await)
    })
    .await?;
    let response = match first {
        Ok(response) => response,
        Err(e) => return Err(fail(smtp_failure(&e))),
    };
    if response.has_code(235) {
        return Ok(response_text(&response));
    }
    if !response.has_code(334) {
        return Err(fail(Failure::Protocol(format!(
            "unexpected answer to AUTH: {}",
            response_text(&response)
        ))));
    }

    // XOAUTH2's error path: the challenge is a JSON error, the client must answer
    // with an empty line, and only then does the server give its verdict.
    let challenge = response.first_word().map(decode_challenge);
    let verdict = within(timeouts.command, STEP_AUTH, server, async {
        Ok(conn.command(RawLine("\r\n".into())).await)
    })
    .await?;
    match verdict {
        Ok(response) if response.has_code(235) => Ok(response_text(&response)),
        Ok(response) => Err(fail(Failure::Protocol(format!(
            "unexpected answer after the XOAUTH2 challenge: {}",
            response_text(&response)
        )))),
        Err(e) => Err(fail(match smtp_failure(&e) {
            Failure::Refused { answer, .. } => Failure::Refused { answer, challenge },
            other => other,
        })),
    }
}

/// Ends the session politely; a failure here changes nothing for the caller.
async fn quit(conn: &mut AsyncSmtpConnection, timeouts: &Timeouts) {
    if tokio::time::timeout(timeouts.command, conn.quit())
        .await
        .is_err()
    {
        tracing::debug!("SMTP QUIT timed out");
    }
}

/// One raw command line for `AsyncSmtpConnection::command`, which sends whatever
/// `Display` writes. No `Debug`: the AUTH line holds the token.
struct RawLine(String);

impl fmt::Display for RawLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn decode_challenge(word: &str) -> String {
    match base64::engine::general_purpose::STANDARD.decode(word) {
        Ok(bytes) => printable(&String::from_utf8_lossy(&bytes)),
        Err(_) => printable(word),
    }
}

fn response_text(response: &Response) -> String {
    let lines: Vec<&str> = response.message().collect();
    printable(&format!("{} {}", response.code(), lines.join(" ")))
}

/// A lettre error as the report shows it: a refusal as `<code> <text>`, the way
/// the server sent it (lettre's own text, `permanent error (535): …`, reorders it).
fn smtp_failure(e: &lettre::transport::smtp::Error) -> Failure {
    match e.status() {
        Some(code) => {
            let text = e.source().map(|s| s.to_string()).unwrap_or_default();
            Failure::Refused {
                answer: printable(&format!("{code} {text}")),
                challenge: None,
            }
        }
        None => Failure::Protocol(printable(&e.to_string())),
    }
}

fn starttls_failure(e: &lettre::transport::smtp::Error) -> Failure {
    if e.status().is_some() {
        // The server refused the STARTTLS command itself (e.g. 454).
        return smtp_failure(e);
    }
    tls_failure(e)
}

/// The implicit-TLS stream, handed to lettre, which wants its own stream trait.
#[derive(Debug)]
struct TlsTcp(TlsStream<TcpStream>);

impl AsyncTokioStream for TlsTcp {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

impl AsyncRead for TlsTcp {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsTcp {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream};

    /// An in-memory stream lettre accepts.
    #[derive(Debug)]
    struct Mem(DuplexStream);

    impl AsyncTokioStream for Mem {
        fn peer_addr(&self) -> io::Result<SocketAddr> {
            Ok(SocketAddr::from(([127, 0, 0, 1], 587)))
        }
    }
    impl AsyncRead for Mem {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Pin::new(&mut self.0).poll_read(cx, buf)
        }
    }
    impl AsyncWrite for Mem {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            Pin::new(&mut self.0).poll_write(cx, buf)
        }
        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.0).poll_flush(cx)
        }
        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.0).poll_shutdown(cx)
        }
    }

    const TOKEN: &str = "ya29.in-memory-token";

    fn server() -> MailServer {
        MailServer::new("127.0.0.1", 587, TlsMode::Starttls)
    }

    fn auth() -> XOAuth2 {
        XOAuth2::new("approvals@mailgate.test", TOKEN)
    }

    /// A scripted SMTP server: greeting, EHLO (with `ehlo_auth` as the AUTH line),
    /// then `on_auth` decides the answers to the AUTH exchange. Returns every line
    /// the client sent.
    async fn scripted(
        stream: DuplexStream,
        ehlo_auth: &'static str,
        auth_answers: Vec<(&'static str, Option<&'static str>)>,
    ) -> Vec<String> {
        let (read, mut write) = tokio::io::split(stream);
        let mut lines = BufReader::new(read).lines();
        let mut seen = Vec::new();
        write.write_all(b"220 mx.test ESMTP\r\n").await.unwrap();
        let ehlo = lines.next_line().await.unwrap().unwrap();
        assert!(ehlo.starts_with("EHLO "), "{ehlo}");
        seen.push(ehlo);
        write
            .write_all(format!("250-mx.test\r\n250-PIPELINING\r\n250 {ehlo_auth}\r\n").as_bytes())
            .await
            .unwrap();
        // Each scripted answer follows one client line; `None` expects no more.
        for (answer, expect_prefix) in auth_answers {
            let line = lines.next_line().await.unwrap().unwrap_or_default();
            if let Some(prefix) = expect_prefix {
                assert!(
                    line.starts_with(prefix),
                    "expected {prefix:?}, got {line:?}"
                );
            }
            seen.push(line);
            write.write_all(answer.as_bytes()).await.unwrap();
        }
        // Whatever comes next (QUIT) gets a goodbye.
        if let Ok(Some(line)) = lines.next_line().await {
            seen.push(line);
            let _ = write.write_all(b"221 2.0.0 Bye\r\n").await;
        }
        seen
    }

    async fn connect(client: DuplexStream) -> AsyncSmtpConnection {
        greet(
            Box::new(Mem(client)),
            &server(),
            &Timeouts::default(),
            STEP_CONNECT,
        )
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn xoauth2_success_sends_the_initial_response() {
        let (client, srv) = tokio::io::duplex(8192);
        let script = tokio::spawn(scripted(
            srv,
            "AUTH PLAIN XOAUTH2",
            vec![(
                "235 2.7.0 Authentication successful\r\n",
                Some("AUTH XOAUTH2 "),
            )],
        ));
        let mut conn = connect(client).await;
        let answer = auth_xoauth2(&mut conn, &auth(), &server(), &Timeouts::default())
            .await
            .unwrap();
        assert_eq!(answer, "235 2.7.0 Authentication successful");
        quit(&mut conn, &Timeouts::default()).await;
        let seen = script.await.unwrap();
        let b64 = seen[1].strip_prefix("AUTH XOAUTH2 ").unwrap();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        assert_eq!(
            decoded,
            format!("user=approvals@mailgate.test\x01auth=Bearer {TOKEN}\x01\x01").as_bytes()
        );
    }

    #[tokio::test]
    async fn xoauth2_failure_answers_the_challenge_and_reports_the_verdict() {
        let (client, srv) = tokio::io::duplex(8192);
        let script = tokio::spawn(scripted(
            srv,
            "AUTH PLAIN LOGIN XOAUTH2 OAUTHBEARER",
            vec![
                ("334 eyJzdGF0dXMiOiI0MDEifQ==\r\n", Some("AUTH XOAUTH2 ")),
                (
                    "535 5.7.8 Error: authentication failed: bad token\r\n",
                    None,
                ),
            ],
        ));
        let mut conn = connect(client).await;
        let err = auth_xoauth2(&mut conn, &auth(), &server(), &Timeouts::default())
            .await
            .unwrap_err();
        quit(&mut conn, &Timeouts::default()).await;
        let seen = script.await.unwrap();
        assert_eq!(
            seen[2], "",
            "the client must answer the challenge with an empty line"
        );
        assert_eq!(
            err.server_answer(),
            Some("535 5.7.8 Error: authentication failed: bad token")
        );
        let text = err.to_string();
        assert!(
            text.contains(r#"XOAUTH2 error: {"status":"401"}"#),
            "{text}"
        );
        assert!(
            text.starts_with("smtp auth xoauth2 127.0.0.1:587: "),
            "{text}"
        );
        assert!(!text.contains(TOKEN));
    }

    #[tokio::test]
    async fn immediate_refusal_is_reported_verbatim() {
        let (client, srv) = tokio::io::duplex(8192);
        let script = tokio::spawn(scripted(
            srv,
            "AUTH XOAUTH2",
            vec![(
                "454 4.7.0 Temporary authentication failure\r\n",
                Some("AUTH XOAUTH2 "),
            )],
        ));
        let mut conn = connect(client).await;
        let err = auth_xoauth2(&mut conn, &auth(), &server(), &Timeouts::default())
            .await
            .unwrap_err();
        drop(conn);
        script.await.unwrap();
        assert_eq!(
            err.server_answer(),
            Some("454 4.7.0 Temporary authentication failure")
        );
    }

    #[tokio::test]
    async fn missing_xoauth2_is_reported_without_sending_the_token() {
        let (client, srv) = tokio::io::duplex(8192);
        let script = tokio::spawn(scripted(srv, "AUTH PLAIN LOGIN", vec![]));
        let mut conn = connect(client).await;
        let err = auth_xoauth2(&mut conn, &auth(), &server(), &Timeouts::default())
            .await
            .unwrap_err();
        quit(&mut conn, &Timeouts::default()).await;
        let seen = script.await.unwrap();
        assert!(
            err.to_string().contains("does not offer AUTH XOAUTH2"),
            "{err}"
        );
        assert!(seen.iter().all(|l| !l.starts_with("AUTH")), "{seen:?}");
    }

    #[tokio::test]
    async fn starttls_not_offered_fails_without_fallback() {
        let (client, srv) = tokio::io::duplex(8192);
        let script = tokio::spawn(scripted(srv, "AUTH XOAUTH2", vec![]));
        let mut conn = connect(client).await;
        let ctx = match TlsContext::new(&crate::mail::TlsSettings::platform()) {
            Ok(ctx) => ctx,
            Err(MailError::TlsSetup(_)) => return,
            Err(e) => panic!("{e}"),
        };
        let err = starttls(&mut conn, &server(), &ctx, &Timeouts::default())
            .await
            .unwrap_err();
        quit(&mut conn, &Timeouts::default()).await;
        script.await.unwrap();
        assert_eq!(err.step_name(), Some(STEP_TLS));
        assert!(err.to_string().contains("does not offer STARTTLS"), "{err}");
    }

    #[tokio::test]
    async fn silent_server_times_out_at_the_greeting() {
        let (client, _srv) = tokio::io::duplex(8192);
        let timeouts = Timeouts {
            connect: std::time::Duration::from_millis(100),
            command: std::time::Duration::from_millis(100),
        };
        let Err(err) = greet(Box::new(Mem(client)), &server(), &timeouts, STEP_CONNECT).await
        else {
            panic!("a silent server must time out");
        };
        assert!(matches!(
            err,
            MailError::Step {
                failure: Failure::Timeout(_),
                ..
            }
        ));
    }

    #[test]
    fn transport_outside_a_runtime_is_an_error_not_a_panic() {
        let ctx = match TlsContext::new(&crate::mail::TlsSettings::platform()) {
            Ok(ctx) => ctx,
            Err(MailError::TlsSetup(_)) => return,
            Err(e) => panic!("{e}"),
        };
        let result = smtp_transport(&server(), &ctx, &auth(), &Timeouts::default());
        assert!(matches!(result, Err(MailError::NoRuntime)));
    }

    #[tokio::test]
    async fn transport_builds_for_both_tls_modes() {
        let ctx = match TlsContext::new(&crate::mail::TlsSettings::platform()) {
            Ok(ctx) => ctx,
            Err(MailError::TlsSetup(_)) => return,
            Err(e) => panic!("{e}"),
        };
        for mode in [TlsMode::Implicit, TlsMode::Starttls] {
            let server = MailServer::new("smtp.example.test", 587, mode);
            let transport = smtp_transport(&server, &ctx, &auth(), &Timeouts::default()).unwrap();
            let debug = format!("{transport:?}");
            assert!(!debug.contains(TOKEN), "{debug}");
        }
    }
}
