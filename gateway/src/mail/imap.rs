//! IMAP with `AUTHENTICATE XOAUTH2` (async-imap), over implicit TLS or STARTTLS.
//!
//! async-imap does not do STARTTLS, so the plaintext part (greeting, `STARTTLS`,
//! its tagged `OK`) is done here by hand on the raw stream, and only the TLS stream
//! is handed to `async_imap::Client::new`. Bytes the server sends after its `OK` but
//! before the handshake are refused: accepting them is the classic STARTTLS
//! response-injection hole.
//!
//! The protocol code is generic over the stream ([`ImapIo`]) so tests run it in
//! memory, and every call runs under a timeout.

use std::fmt;

use async_imap::imap_proto::{Response, Status};
use async_imap::{Authenticator, Client, Session};
use futures::TryStreamExt as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::tls::describe_session;
use super::verify::{Recorder, VerifyReport};
use super::{Failure, MailError, MailServer, Timeouts, TlsContext, TlsMode, XOAuth2};
use super::{connect_tcp, printable, within};

pub const STEP_CONNECT: &str = "imap connect";
pub const STEP_TLS: &str = "imap tls";
pub const STEP_AUTH: &str = "imap authenticate xoauth2";
pub const STEP_SELECT: &str = "imap select INBOX";
pub const STEP_FETCH: &str = "imap fetch newest headers";
const STEPS: &[&str] = &[STEP_CONNECT, STEP_TLS, STEP_AUTH, STEP_SELECT, STEP_FETCH];

/// What the IMAP code runs over: a TLS stream in production, an in-memory pipe in
/// tests.
pub trait ImapIo: AsyncRead + AsyncWrite + Unpin + Send + fmt::Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + fmt::Debug> ImapIo for T {}

/// The stream of a real connection.
pub type ImapTls = TlsStream<TcpStream>;

/// The header fields the account check fetches: enough to show the mailbox is
/// readable, nothing of the body.
const HEADER_FIELDS: &str = "BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE MESSAGE-ID)]";

/// The longest plaintext line accepted before TLS (RFC 3501 suggests 8000 octets).
const MAX_PLAIN_LINE: usize = 8192;

/// Connects to `server` and establishes TLS (implicit, or STARTTLS that must
/// succeed); returns a client after the server's greeting, ready to authenticate.
pub async fn connect(
    server: &MailServer,
    tls: &TlsContext,
    timeouts: &Timeouts,
) -> Result<Client<ImapTls>, MailError> {
    let mut tcp = connect_tcp(server, timeouts, STEP_CONNECT).await?;
    match server.tls {
        TlsMode::Implicit => {
            let stream = tls.handshake(tcp, server, timeouts, STEP_TLS).await?;
            let mut client = Client::new(stream);
            read_greeting(&mut client, server, timeouts).await?;
            Ok(client)
        }
        TlsMode::Starttls => {
            plain_greeting(&mut tcp, server, timeouts).await?;
            starttls(&mut tcp, server, timeouts).await?;
            let stream = tls.handshake(tcp, server, timeouts, STEP_TLS).await?;
            Ok(Client::new(stream))
        }
    }
}

/// `AUTHENTICATE XOAUTH2` on `client`. On refusal the error carries the server's
/// tagged answer (`NO [AUTHENTICATIONFAILED] …`) and the JSON error challenge.
pub async fn authenticate_xoauth2<S: ImapIo>(
    client: Client<S>,
    auth: &XOAuth2,
    server: &MailServer,
    timeouts: &Timeouts,
) -> Result<Session<S>, MailError> {
    let mut authenticator = XOAuth2Authenticator::new(auth);
    let result = tokio::time::timeout(
        timeouts.command,
        client.authenticate("XOAUTH2", &mut authenticator),
    )
    .await;
    match result {
        Err(_) => Err(MailError::step(
            STEP_AUTH,
            server,
            Failure::Timeout(timeouts.command),
        )),
        Ok(Ok(session)) => Ok(session),
        Ok(Err((e, _client))) => {
            let failure = match imap_failure(e) {
                Failure::Refused { answer, .. } => Failure::Refused {
                    answer,
                    challenge: authenticator.error_challenge,
                },
                other => other,
            };
            Err(MailError::step(STEP_AUTH, server, failure))
        }
    }
}

/// The IMAP half of the account check: connect, TLS, authenticate, `SELECT INBOX`,
/// the newest message's header fields (with `BODY.PEEK`, so nothing is marked
/// `\Seen`), `LOGOUT`. What was fetched is dropped at once; the report says only
/// how many messages there are and whether the newest has a subject.
pub async fn verify_imap(
    server: &MailServer,
    tls: &TlsContext,
    auth: &XOAuth2,
    timeouts: &Timeouts,
) -> VerifyReport {
    verify_imap_with(server, Ok(tls), auth, timeouts).await
}

/// [`verify_imap`] with the TLS context possibly missing (see `verify_smtp_with`).
pub(crate) async fn verify_imap_with(
    server: &MailServer,
    tls: Result<&TlsContext, &MailError>,
    auth: &XOAuth2,
    timeouts: &Timeouts,
) -> VerifyReport {
    let mut rec = Recorder::new(STEPS);
    let mut tcp = match connect_tcp(server, timeouts, STEP_CONNECT).await {
        Ok(tcp) => tcp,
        Err(e) => return rec.fail(STEP_CONNECT, &e),
    };
    let tls = match server.tls {
        TlsMode::Implicit => {
            rec.ok(
                STEP_CONNECT,
                format!("TCP connection to {}", server.label()),
            );
            match tls {
                Ok(tls) => tls,
                Err(e) => return rec.fail_text(STEP_TLS, e.to_string()),
            }
        }
        TlsMode::Starttls => {
            match plain_greeting(&mut tcp, server, timeouts).await {
                Ok(greeting) => rec.ok(
                    STEP_CONNECT,
                    format!("connected to {}: {greeting}", server.label()),
                ),
                Err(e) => return rec.fail(STEP_CONNECT, &e),
            }
            let tls = match tls {
                Ok(tls) => tls,
                Err(e) => return rec.fail_text(STEP_TLS, e.to_string()),
            };
            if let Err(e) = starttls(&mut tcp, server, timeouts).await {
                return rec.fail(STEP_TLS, &e);
            }
            tls
        }
    };

    let stream = match tls.handshake(tcp, server, timeouts, STEP_TLS).await {
        Ok(stream) => stream,
        Err(e) => return rec.fail(STEP_TLS, &e),
    };
    let session = describe_session(&stream);
    let mut client = Client::new(stream);
    let verified = format!("certificate verified for {}", server.host);
    let detail = match server.tls {
        TlsMode::Implicit => match read_greeting(&mut client, server, timeouts).await {
            Ok(greeting) => format!("implicit TLS ({session}), {verified}; {greeting}"),
            Err(e) => return rec.fail(STEP_TLS, &e),
        },
        TlsMode::Starttls => format!("STARTTLS ({session}), {verified}"),
    };
    rec.ok(STEP_TLS, detail);

    session_steps(client, auth, server, timeouts, rec).await
}

/// Authenticate, select, fetch, logout: the part of the check after TLS, generic so
/// tests can run it against a scripted server in memory.
pub(crate) async fn session_steps<S: ImapIo>(
    client: Client<S>,
    auth: &XOAuth2,
    server: &MailServer,
    timeouts: &Timeouts,
    mut rec: Recorder,
) -> VerifyReport {
    let mut session = match authenticate_xoauth2(client, auth, server, timeouts).await {
        Ok(session) => session,
        Err(e) => return rec.fail(STEP_AUTH, &e),
    };
    rec.ok(STEP_AUTH, format!("authenticated as {}", auth.user));

    let exists = match select_inbox(&mut session, server, timeouts).await {
        Ok((exists, detail)) => {
            rec.ok(STEP_SELECT, detail);
            exists
        }
        Err(e) => {
            logout(&mut session, timeouts).await;
            return rec.fail(STEP_SELECT, &e);
        }
    };

    match fetch_newest_headers(&mut session, exists, server, timeouts).await {
        Ok(detail) => rec.ok(STEP_FETCH, detail),
        Err(e) => {
            logout(&mut session, timeouts).await;
            return rec.fail(STEP_FETCH, &e);
        }
    }
    logout(&mut session, timeouts).await;
    rec.finish()
}

async fn select_inbox<S: ImapIo>(
    session: &mut Session<S>,
    server: &MailServer,
    timeouts: &Timeouts,
) -> Result<(u32, String), MailError> {
    let mailbox = within(timeouts.command, STEP_SELECT, server, async {
        session
            .select("INBOX")
            .await
            .map_err(|e| MailError::step(STEP_SELECT, server, imap_failure(e)))
    })
    .await?;
    let validity = mailbox
        .uid_validity
        .map(|v| format!(", UIDVALIDITY {v}"))
        .unwrap_or_default();
    Ok((
        mailbox.exists,
        format!("INBOX has {} message(s){validity}", mailbox.exists),
    ))
}

/// The newest message (sequence number `exists`): its UID, then its header fields
/// with `BODY.PEEK` by UID.
async fn fetch_newest_headers<S: ImapIo>(
    session: &mut Session<S>,
    exists: u32,
    server: &MailServer,
    timeouts: &Timeouts,
) -> Result<String, MailError> {
    if exists == 0 {
        return Ok("INBOX is empty: no message to read".into());
    }
    let fail = |failure| MailError::step(STEP_FETCH, server, failure);

    let uid = within(timeouts.command, STEP_FETCH, server, async {
        let fetches: Vec<_> = session
            .fetch(exists.to_string(), "(UID)")
            .await
            .map_err(|e| fail(imap_failure(e)))?
            .try_collect()
            .await
            .map_err(|e| fail(imap_failure(e)))?;
        fetches
            .iter()
            .find(|f| f.message == exists)
            .and_then(|f| f.uid)
            .ok_or_else(|| {
                fail(Failure::Protocol(format!(
                    "FETCH {exists} (UID) returned no UID"
                )))
            })
    })
    .await?;

    let has_subject = within(timeouts.command, STEP_FETCH, server, async {
        let fetches: Vec<_> = session
            .uid_fetch(uid.to_string(), HEADER_FIELDS)
            .await
            .map_err(|e| fail(imap_failure(e)))?
            .try_collect()
            .await
            .map_err(|e| fail(imap_failure(e)))?;
        let header = fetches
            .iter()
            .find(|f| f.uid == Some(uid))
            .and_then(|f| f.header())
            .ok_or_else(|| {
                fail(Failure::Protocol(format!(
                    "UID FETCH {uid} returned no header fields"
                )))
            })?;
        // Only whether a subject is there leaves this function; the header bytes
        // are dropped with `fetches`.
        Ok(has_header(header, "subject"))
    })
    .await?;

    Ok(format!(
        "newest of {exists} message(s) (UID {uid}): header fields read, subject {}; \
         not marked \\Seen",
        if has_subject { "present" } else { "absent" }
    ))
}

fn has_header(header: &[u8], name: &str) -> bool {
    header.split(|&b| b == b'\n').any(|line| {
        line.len() > name.len()
            && line[..name.len()].eq_ignore_ascii_case(name.as_bytes())
            && line[name.len()] == b':'
    })
}

/// Ends the session; a failure here changes nothing for the caller.
async fn logout<S: ImapIo>(session: &mut Session<S>, timeouts: &Timeouts) {
    match tokio::time::timeout(timeouts.command, session.logout()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!("IMAP LOGOUT failed: {e}"),
        Err(_) => tracing::debug!("IMAP LOGOUT timed out"),
    }
}

/// Reads the greeting of an implicit-TLS connection through async-imap.
async fn read_greeting<S: ImapIo>(
    client: &mut Client<S>,
    server: &MailServer,
    timeouts: &Timeouts,
) -> Result<String, MailError> {
    let fail = |failure| MailError::step(STEP_TLS, server, failure);
    let response = within(timeouts.command, STEP_TLS, server, async {
        client
            .read_response()
            .await
            .map_err(|e| fail(Failure::Protocol(format!("reading the greeting: {e}"))))
    })
    .await?
    .ok_or_else(|| fail(Failure::Protocol("the server closed the connection".into())))?;
    match response.parsed() {
        Response::Data { status, outcome } => {
            let text = printable(outcome.information.as_deref().unwrap_or(""));
            match status {
                Status::Ok => Ok(format!("greeting: {text}")),
                Status::Bye => Err(fail(Failure::Refused {
                    answer: format!("* BYE {text}"),
                    challenge: None,
                })),
                Status::PreAuth => Err(fail(Failure::Protocol(
                    "the server greeted with PREAUTH; mailgate must authenticate as the \
                     account's user"
                        .into(),
                ))),
                other => Err(fail(Failure::Protocol(format!(
                    "unexpected greeting status {other:?}: {text}"
                )))),
            }
        }
        other => Err(fail(Failure::Protocol(format!(
            "unexpected greeting: {}",
            printable(&format!("{other:?}"))
        )))),
    }
}

/// Reads the plaintext greeting before STARTTLS. Step `imap connect`.
pub(crate) async fn plain_greeting<S>(
    stream: &mut S,
    server: &MailServer,
    timeouts: &Timeouts,
) -> Result<String, MailError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = Vec::new();
    let line = within(timeouts.command, STEP_CONNECT, server, async {
        read_plain_line(stream, &mut buf, server, STEP_CONNECT).await
    })
    .await?;
    if !buf.is_empty() {
        // The server must wait for our STARTTLS; anything more is not a real server.
        return Err(MailError::step(
            STEP_CONNECT,
            server,
            Failure::Protocol("the server sent more than its greeting".into()),
        ));
    }
    let upper = line.to_ascii_uppercase();
    if upper.starts_with("* OK") {
        // The capability list in the greeting's response code is noise in a report.
        let text = line[4..].trim_start();
        let text = match text.strip_prefix('[').and_then(|t| t.split_once(']')) {
            Some((_, rest)) => rest,
            None => text,
        };
        Ok(format!("greeting: {}", printable(text)))
    } else if upper.starts_with("* BYE") {
        Err(MailError::step(
            STEP_CONNECT,
            server,
            Failure::Refused {
                answer: printable(&line),
                challenge: None,
            },
        ))
    } else {
        Err(MailError::step(
            STEP_CONNECT,
            server,
            Failure::Protocol(format!(
                "unexpected greeting (STARTTLS needs `* OK`): {}",
                printable(&line)
            )),
        ))
    }
}

/// `STARTTLS` on the plaintext stream; afterwards the caller does the handshake.
/// Step `imap tls`.
pub(crate) async fn starttls<S>(
    stream: &mut S,
    server: &MailServer,
    timeouts: &Timeouts,
) -> Result<(), MailError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    const TAG: &str = "m1";
    let fail = |failure| MailError::step(STEP_TLS, server, failure);
    within(timeouts.command, STEP_TLS, server, async {
        stream
            .write_all(format!("{TAG} STARTTLS\r\n").as_bytes())
            .await
            .map_err(|e| fail(Failure::Protocol(format!("sending STARTTLS: {e}"))))?;
        stream
            .flush()
            .await
            .map_err(|e| fail(Failure::Protocol(format!("sending STARTTLS: {e}"))))?;
        let mut buf = Vec::new();
        loop {
            let line = read_plain_line(stream, &mut buf, server, STEP_TLS).await?;
            let Some(rest) = line.strip_prefix(TAG).and_then(|r| r.strip_prefix(' ')) else {
                if line.to_ascii_uppercase().starts_with("* BYE") {
                    return Err(fail(Failure::Refused {
                        answer: printable(&line),
                        challenge: None,
                    }));
                }
                // Untagged data (a CAPABILITY) may precede the answer.
                continue;
            };
            if !rest.to_ascii_uppercase().starts_with("OK") {
                return Err(fail(Failure::Refused {
                    answer: printable(rest),
                    challenge: None,
                }));
            }
            if !buf.is_empty() {
                return Err(fail(Failure::Tls(
                    "the server sent data between its STARTTLS answer and the handshake; \
                     refusing (STARTTLS injection)"
                        .into(),
                )));
            }
            return Ok(());
        }
    })
    .await
}

/// One CRLF-terminated line from a plaintext stream. Reads in chunks into `buf`,
/// which keeps whatever came after the line, so the caller can tell whether the
/// server sent more than it should have.
async fn read_plain_line<S>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    server: &MailServer,
    step: &'static str,
) -> Result<String, MailError>
where
    S: AsyncRead + Unpin,
{
    let fail = |failure| MailError::step(step, server, failure);
    loop {
        if let Some(end) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            let text = String::from_utf8_lossy(&line);
            return Ok(text.trim_end_matches(['\r', '\n']).to_owned());
        }
        if buf.len() > MAX_PLAIN_LINE {
            return Err(fail(Failure::Protocol(
                "the server sent an overlong line".into(),
            )));
        }
        let mut chunk = [0u8; 1024];
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| fail(Failure::Protocol(format!("reading from the server: {e}"))))?;
        if n == 0 {
            return Err(fail(Failure::Protocol(
                "the server closed the connection".into(),
            )));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Answers the XOAUTH2 challenges: the credentials to the first (empty) one; an
/// empty response to a second, which only comes as the JSON error of a refused
/// token, kept to report it.
struct XOAuth2Authenticator<'a> {
    auth: &'a XOAuth2,
    sent: bool,
    error_challenge: Option<String>,
}

impl<'a> XOAuth2Authenticator<'a> {
    fn new(auth: &'a XOAuth2) -> Self {
        Self {
            auth,
            sent: false,
            error_challenge: None,
        }
    }
}

impl Authenticator for &mut XOAuth2Authenticator<'_> {
    type Response = Vec<u8>;

    fn process(&mut self, challenge: &[u8]) -> Vec<u8> {
        if !self.sent {
            self.sent = true;
            return self.auth.sasl_message().into_bytes();
        }
        self.error_challenge = Some(printable(&String::from_utf8_lossy(challenge)));
        Vec::new()
    }
}

/// An async-imap error as a report shows it. async-imap formats a tagged `NO`/`BAD`
/// as `code: <Debug>, info: <Debug>`; this turns that back into the server's words
/// (codes imap-proto does not know, like `[AUTHENTICATIONFAILED]`, stay in the text).
fn imap_failure(e: async_imap::error::Error) -> Failure {
    use async_imap::error::Error;
    match e {
        Error::No(s) => Failure::Refused {
            answer: format!("NO {}", tidy_status(&s)),
            challenge: None,
        },
        Error::Bad(s) => Failure::Refused {
            answer: format!("BAD {}", tidy_status(&s)),
            challenge: None,
        },
        Error::ConnectionLost => Failure::Protocol("the server closed the connection".into()),
        Error::Io(e) => Failure::Protocol(printable(&format!("I/O error: {e}"))),
        other => Failure::Protocol(printable(&other.to_string())),
    }
}

fn tidy_status(s: &str) -> String {
    let parsed = s
        .strip_prefix("code: ")
        .and_then(|rest| rest.split_once(", info: "));
    let Some((code, info)) = parsed else {
        return printable(s);
    };
    let mut out = String::new();
    if let Some(code) = code.strip_prefix("Some(").and_then(|c| c.strip_suffix(')')) {
        out.push('[');
        out.push_str(&code.to_ascii_uppercase());
        out.push_str("] ");
    }
    if let Some(info) = info
        .strip_prefix("Some(\"")
        .and_then(|i| i.strip_suffix("\")"))
    {
        out.push_str(&info.replace("\\\"", "\"").replace("\\\\", "\\"));
    }
    printable(&out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use tokio::io::{AsyncBufReadExt, BufReader, DuplexStream};

    const TOKEN: &str = "ya29.imap-in-memory-token";

    fn server() -> MailServer {
        MailServer::new("127.0.0.1", 993, TlsMode::Implicit)
    }

    fn auth() -> XOAuth2 {
        XOAuth2::new("approvals@mailgate.test", TOKEN)
    }

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    /// A line-oriented scripted IMAP server on one end of a duplex pipe.
    struct Script {
        lines: tokio::io::Lines<BufReader<tokio::io::ReadHalf<DuplexStream>>>,
        write: tokio::io::WriteHalf<DuplexStream>,
        seen: Vec<String>,
    }

    impl Script {
        fn new(stream: DuplexStream) -> Self {
            let (read, write) = tokio::io::split(stream);
            Script {
                lines: BufReader::new(read).lines(),
                write,
                seen: Vec::new(),
            }
        }
        async fn send(&mut self, text: &str) {
            self.write.write_all(text.as_bytes()).await.unwrap();
        }
        /// Next client line; returns its tag and the rest.
        async fn recv(&mut self) -> (String, String) {
            let line = self.lines.next_line().await.unwrap().unwrap_or_default();
            self.seen.push(line.clone());
            match line.split_once(' ') {
                Some((tag, rest)) => (tag.to_owned(), rest.to_owned()),
                None => (String::new(), line),
            }
        }
        async fn raw(&mut self) -> String {
            let line = self.lines.next_line().await.unwrap().unwrap_or_default();
            self.seen.push(line.clone());
            line
        }
    }

    #[tokio::test]
    async fn xoauth2_success() {
        let (client, srv) = tokio::io::duplex(16 * 1024);
        let server_task = tokio::spawn(async move {
            let mut s = Script::new(srv);
            let (tag, cmd) = s.recv().await;
            assert_eq!(cmd, "AUTHENTICATE XOAUTH2");
            s.send("+ \r\n").await;
            let response = s.raw().await;
            s.send(&format!("{tag} OK Logged in\r\n")).await;
            response
        });
        let session = authenticate_xoauth2(
            Client::new(client),
            &auth(),
            &server(),
            &Timeouts::default(),
        )
        .await
        .unwrap();
        drop(session);
        let response = server_task.await.unwrap();
        assert_eq!(
            response,
            b64(&format!(
                "user=approvals@mailgate.test\x01auth=Bearer {TOKEN}\x01\x01"
            ))
        );
    }

    #[tokio::test]
    async fn xoauth2_two_step_failure_carries_the_no_text() {
        let (client, srv) = tokio::io::duplex(16 * 1024);
        let server_task = tokio::spawn(async move {
            let mut s = Script::new(srv);
            let (tag, _) = s.recv().await;
            s.send("+ \r\n").await;
            let _credentials = s.raw().await;
            s.send("+ eyJzdGF0dXMiOiI0MDEifQ==\r\n").await;
            let empty = s.raw().await;
            s.send(&format!(
                "{tag} NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
            ))
            .await;
            empty
        });
        let err = authenticate_xoauth2(
            Client::new(client),
            &auth(),
            &server(),
            &Timeouts::default(),
        )
        .await
        .unwrap_err();
        let empty = server_task.await.unwrap();
        assert_eq!(
            empty, "",
            "the error challenge must be answered with an empty line"
        );
        assert_eq!(err.step_name(), Some(STEP_AUTH));
        assert_eq!(
            err.server_answer(),
            Some("NO [AUTHENTICATIONFAILED] Authentication failed.")
        );
        let text = err.to_string();
        assert!(
            text.contains(r#"XOAUTH2 error: {"status":"401"}"#),
            "{text}"
        );
        assert!(!text.contains(TOKEN), "{text}");
    }

    #[tokio::test]
    async fn silent_server_times_out_during_authenticate() {
        let (client, _srv) = tokio::io::duplex(1024);
        let timeouts = Timeouts {
            connect: std::time::Duration::from_millis(100),
            command: std::time::Duration::from_millis(100),
        };
        let err = authenticate_xoauth2(Client::new(client), &auth(), &server(), &timeouts)
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            MailError::Step {
                failure: Failure::Timeout(_),
                ..
            }
        ));
    }

    /// The whole session part of the check against a scripted server: greeting,
    /// authenticate, SELECT, FETCH (UID), UID FETCH with BODY.PEEK, LOGOUT.
    #[tokio::test]
    async fn session_steps_peek_at_the_newest_message() {
        let (client, srv) = tokio::io::duplex(16 * 1024);
        let server_task = tokio::spawn(async move {
            let mut s = Script::new(srv);
            s.send("* OK [CAPABILITY IMAP4rev1 AUTH=XOAUTH2] ready\r\n")
                .await;
            let (tag, _) = s.recv().await;
            s.send("+ \r\n").await;
            let _ = s.raw().await;
            s.send(&format!("{tag} OK Logged in\r\n")).await;
            let (tag, cmd) = s.recv().await;
            assert_eq!(cmd, "SELECT \"INBOX\"");
            s.send("* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n* 3 EXISTS\r\n* 0 RECENT\r\n* OK [UIDVALIDITY 1700000000] UIDs valid\r\n* OK [UIDNEXT 8] Predicted next UID\r\n").await;
            s.send(&format!("{tag} OK [READ-WRITE] Select completed.\r\n"))
                .await;
            let (tag, cmd) = s.recv().await;
            assert_eq!(cmd, "FETCH 3 (UID)");
            s.send(&format!(
                "* 3 FETCH (UID 7)\r\n{tag} OK Fetch completed.\r\n"
            ))
            .await;
            let (tag, cmd) = s.recv().await;
            assert_eq!(
                cmd,
                "UID FETCH 7 BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE MESSAGE-ID)]"
            );
            let header = "From: alice@corp.test\r\nSubject: secret plans\r\n\r\n";
            s.send(&format!(
                "* 3 FETCH (UID 7 BODY[HEADER.FIELDS (FROM SUBJECT DATE MESSAGE-ID)] {{{}}}\r\n{header})\r\n{tag} OK Fetch completed.\r\n",
                header.len()
            ))
            .await;
            let (tag, cmd) = s.recv().await;
            assert_eq!(cmd, "LOGOUT");
            s.send(&format!(
                "* BYE Logging out\r\n{tag} OK Logout completed.\r\n"
            ))
            .await;
            s.seen
        });
        let mut client = Client::new(client);
        read_greeting(&mut client, &server(), &Timeouts::default())
            .await
            .unwrap();
        let report = session_steps(
            client,
            &auth(),
            &server(),
            &Timeouts::default(),
            Recorder::new(&[STEP_AUTH, STEP_SELECT, STEP_FETCH]),
        )
        .await;
        let seen = server_task.await.unwrap();
        assert!(report.is_ok(), "{report}");
        let text = report.to_string();
        assert!(
            text.contains("INBOX has 3 message(s), UIDVALIDITY 1700000000"),
            "{text}"
        );
        assert!(text.contains("UID 7"), "{text}");
        assert!(text.contains("subject present"), "{text}");
        assert!(
            !text.contains("secret plans"),
            "the subject itself is never reported: {text}"
        );
        assert!(!seen.iter().any(|l| l.contains("STORE")), "{seen:?}");
    }

    #[tokio::test]
    async fn empty_inbox_fetches_nothing() {
        let (client, srv) = tokio::io::duplex(16 * 1024);
        let server_task = tokio::spawn(async move {
            let mut s = Script::new(srv);
            let (tag, _) = s.recv().await;
            s.send("+ \r\n").await;
            let _ = s.raw().await;
            s.send(&format!("{tag} OK Logged in\r\n")).await;
            let (tag, _) = s.recv().await;
            s.send(&format!(
                "* 0 EXISTS\r\n* 0 RECENT\r\n{tag} OK [READ-WRITE] Select completed.\r\n"
            ))
            .await;
            let (tag, cmd) = s.recv().await;
            s.send(&format!("{tag} OK Logout completed.\r\n")).await;
            cmd
        });
        let report = session_steps(
            Client::new(client),
            &auth(),
            &server(),
            &Timeouts::default(),
            Recorder::new(&[STEP_AUTH, STEP_SELECT, STEP_FETCH]),
        )
        .await;
        assert_eq!(server_task.await.unwrap(), "LOGOUT");
        assert!(report.is_ok(), "{report}");
        assert!(report.to_string().contains("INBOX is empty"), "{report}");
    }

    #[tokio::test]
    async fn starttls_prelude_accepts_ok_and_leaves_nothing_buffered() {
        let (mut client, srv) = tokio::io::duplex(4096);
        let server_task = tokio::spawn(async move {
            let mut s = Script::new(srv);
            s.send("* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] Dovecot ready.\r\n")
                .await;
            let (tag, cmd) = s.recv().await;
            assert_eq!(cmd, "STARTTLS");
            s.send(&format!("{tag} OK Begin TLS negotiation now.\r\n"))
                .await;
            s
        });
        let greeting = plain_greeting(&mut client, &server(), &Timeouts::default())
            .await
            .unwrap();
        assert!(greeting.contains("Dovecot ready."), "{greeting}");
        starttls(&mut client, &server(), &Timeouts::default())
            .await
            .unwrap();
        drop(server_task.await.unwrap());
    }

    #[tokio::test]
    async fn starttls_injection_is_refused() {
        let (mut client, srv) = tokio::io::duplex(4096);
        let server_task = tokio::spawn(async move {
            let mut s = Script::new(srv);
            s.send("* OK ready\r\n").await;
            let (tag, _) = s.recv().await;
            // A man in the middle appends a plaintext response that would be read as
            // if it came over TLS.
            s.send(&format!("{tag} OK Begin TLS\r\n* OK injected\r\n"))
                .await;
            s
        });
        plain_greeting(&mut client, &server(), &Timeouts::default())
            .await
            .unwrap();
        let err = starttls(&mut client, &server(), &Timeouts::default())
            .await
            .unwrap_err();
        assert_eq!(err.step_name(), Some(STEP_TLS));
        assert!(err.to_string().contains("STARTTLS injection"), "{err}");
        drop(server_task.await.unwrap());
    }

    #[tokio::test]
    async fn starttls_refusal_carries_the_answer() {
        let (mut client, srv) = tokio::io::duplex(4096);
        let server_task = tokio::spawn(async move {
            let mut s = Script::new(srv);
            s.send("* OK ready\r\n").await;
            let (tag, _) = s.recv().await;
            s.send(&format!("{tag} BAD TLS support isn't enabled.\r\n"))
                .await;
            s
        });
        plain_greeting(&mut client, &server(), &Timeouts::default())
            .await
            .unwrap();
        let err = starttls(&mut client, &server(), &Timeouts::default())
            .await
            .unwrap_err();
        assert_eq!(err.server_answer(), Some("BAD TLS support isn't enabled."));
        drop(server_task.await.unwrap());
    }

    #[tokio::test]
    async fn bye_greeting_is_a_refusal() {
        let (mut client, srv) = tokio::io::duplex(4096);
        let mut s = Script::new(srv);
        s.send("* BYE Too many connections\r\n").await;
        let err = plain_greeting(&mut client, &server(), &Timeouts::default())
            .await
            .unwrap_err();
        assert_eq!(err.step_name(), Some(STEP_CONNECT));
        assert_eq!(err.server_answer(), Some("* BYE Too many connections"));
    }

    #[test]
    fn tidy_status_restores_the_server_text() {
        assert_eq!(
            tidy_status(
                r#"code: None, info: Some("[AUTHENTICATIONFAILED] Authentication failed.")"#
            ),
            "[AUTHENTICATIONFAILED] Authentication failed."
        );
        assert_eq!(
            tidy_status(r#"code: Some(Alert), info: Some("say \"hi\"")"#),
            r#"[ALERT] say "hi""#
        );
        assert_eq!(tidy_status("something else"), "something else");
    }

    #[test]
    fn header_presence_is_case_insensitive() {
        assert!(has_header(b"From: a\r\nsubject: x\r\n", "subject"));
        assert!(!has_header(b"From: a\r\nX-Subject: x\r\n", "subject"));
        assert!(!has_header(b"", "subject"));
    }
}
