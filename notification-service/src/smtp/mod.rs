//! The SMTP client: connections to one relay, opened on demand (with `TCP_NODELAY`) and kept
//! for the next mail; [`session`] speaks the protocol on each, pipelining each mail's commands
//! when the relay offers it.
//!
//! Why not lettre's `AsyncSmtpTransport`: in lettre 0.11.23 every mail waited about 40 ms for
//! nothing. lettre writes a mail's body and its closing `.` in two writes and leaves Nagle's
//! algorithm on, so the kernel holds the `.` until the relay acknowledges the body, and the
//! relay delays that acknowledgement (40 ms on Linux) because it has nothing to answer yet. With
//! the consumer's 64 mails in flight that capped it at about 1,350 mails a second with the CPU
//! half idle (`make bench`'s drain; 2,635 a second without the wait). Upstream has merged the fix
//! (lettre pull request 1159) but not released it. lettre's pool also sends a `NOOP` before every
//! reuse of a connection, a round trip per mail; here only a connection idle for
//! [`TEST_IDLE_AFTER`] or longer is tested first. And lettre's connection does not pipeline
//! (see [`session`]).
//!
//! At most `pool_max_size` conversations run at once, each on a connection of its own; a sender
//! beyond that waits for one to finish. The connections stay open between mails (up to that
//! many), and a connection that failed is dropped, never reused.

mod session;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::{SMTP_PORT, SUBMISSION_PORT, SUBMISSIONS_PORT};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_util::either::Either;

pub use session::Reply;
use session::Session;

/// A connection unused for this long is tested with `NOOP` before it carries a mail: relays close
/// idle connections (RFC 5321 asks them to wait at least 5 minutes; some wait less).
pub const TEST_IDLE_AFTER: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum SmtpError {
    #[error("connecting to {relay}: {source}")]
    Connect {
        relay: String,
        source: std::io::Error,
    },
    #[error("the relay answered {command} with {reply}")]
    Refused { command: &'static str, reply: Reply },
    #[error("the relay does not offer {0}")]
    Unsupported(&'static str),
    #[error("the TLS handshake after STARTTLS: {0}")]
    Tls(std::io::Error),
    #[error("talking to the relay: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Protocol(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// How the conversation is protected.
enum Security {
    /// Plain text: a relay on the same host or in the same pod network.
    None,
    /// `STARTTLS` after the greeting; `required: false` goes on in plain text when the relay
    /// does not offer it.
    StartTls { tls: Tls, required: bool },
    /// TLS from the first byte (`smtps://`, port 465).
    Implicit(Tls),
}

/// TLS with the relay: rustls (ring), the Mozilla roots (webpki-roots), the relay's host name.
struct Tls {
    connector: tokio_rustls::TlsConnector,
    name: rustls::pki_types::ServerName<'static>,
}

/// Where and how to connect, from the URL.
struct Relay {
    host: String,
    port: u16,
    security: Security,
    hello: ClientId,
    credentials: Option<Credentials>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the credentials.
        let security = match &self.security {
            Security::None => "none",
            Security::StartTls { required: true, .. } => "starttls (required)",
            Security::StartTls { .. } => "starttls (opportunistic)",
            Security::Implicit(_) => "tls",
        };
        f.debug_struct("Relay")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &security)
            .field("authenticates", &self.credentials.is_some())
            .finish()
    }
}

impl Relay {
    /// lettre's connection URL forms: `smtp://host[:25]`, `smtp://user:pass@host[:587]?tls=required`
    /// (or `opportunistic`), `smtps://user:pass@host[:465]`; a path names the `EHLO` domain.
    fn parse(url: &str) -> Result<Self, String> {
        let url = url::Url::parse(url).map_err(|e| e.to_string())?;
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or("no host")?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let tls = url.query_pairs().find(|(k, _)| k == "tls").map(|(_, v)| v);
        let (security, default_port) = match (url.scheme(), tls.as_deref()) {
            ("smtp", None) => (Security::None, SMTP_PORT),
            ("smtp", Some(mode @ ("required" | "opportunistic"))) => (
                Security::StartTls {
                    tls: tls_with(&host)?,
                    required: mode == "required",
                },
                SUBMISSION_PORT,
            ),
            // lettre ignores `tls=` here too: the connection is TLS from the start anyway.
            ("smtps", _) => (Security::Implicit(tls_with(&host)?), SUBMISSIONS_PORT),
            (scheme, tls) => {
                return Err(format!(
                    "unknown scheme {scheme:?} or tls parameter {tls:?} (smtp://, \
                     smtp://…?tls=required, smtp://…?tls=opportunistic or smtps://)"
                ));
            }
        };
        let hello = match url.path().trim_matches('/') {
            "" => ClientId::default(),
            name => ClientId::Domain(name.to_owned()),
        };
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(|s| s.into_owned())
                .map_err(|e| format!("credentials: {e}"))
        };
        let credentials = match url.password() {
            Some(password) => Some(Credentials::new(decode(url.username())?, decode(password)?)),
            None => None,
        };
        Ok(Self {
            port: url.port().unwrap_or(default_port),
            host,
            security,
            hello,
            credentials,
        })
    }

    async fn connect(&self) -> Result<Session, SmtpError> {
        let failed = |source| SmtpError::Connect {
            relay: format!("{}:{}", self.host, self.port),
            source,
        };
        let stream = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(failed)?;
        // Each write is a whole command group or message: nothing is gained by Nagle's
        // algorithm holding it back (see this module's documentation).
        stream.set_nodelay(true).map_err(failed)?;
        let mut session = match &self.security {
            Security::Implicit(tls) => {
                let stream = tls
                    .connector
                    .connect(tls.name.clone(), stream)
                    .await
                    .map_err(failed)?;
                Session::start(Either::Right(stream), &self.hello).await?
            }
            _ => Session::start(Either::Left(stream), &self.hello).await?,
        };
        if let Security::StartTls { tls, required } = &self.security {
            if session.extensions().starttls {
                session = session.starttls(tls, &self.hello).await?;
            } else if *required {
                return Err(SmtpError::Unsupported(
                    "STARTTLS, which tls=required asks for",
                ));
            }
        }
        if let Some(credentials) = &self.credentials {
            session.authenticate(credentials).await?;
        }
        Ok(session)
    }
}

fn tls_with(host: &str) -> Result<Tls, String> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    Tls::trusting(roots, host)
}

impl Tls {
    /// TLS with `host`, whose certificate one of `roots` signed.
    fn trusting(roots: rustls::RootCertStore, host: &str) -> Result<Self, String> {
        let config = rustls::ClientConfig::builder_with_provider(
            rustls::crypto::ring::default_provider().into(),
        )
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from(host.to_owned())
            .map_err(|e| format!("{host:?}: {e}"))?;
        Ok(Self {
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
            name,
        })
    }
}

/// SMTP connections to one relay, opened on demand and kept for the next mail.
pub struct SmtpClient {
    relay: Relay,
    /// One whole send: waiting for a free connection, connecting (when needed) and the
    /// conversation.
    timeout: Duration,
    /// One permit per connection that may be open at once.
    permits: Semaphore,
    /// Connections between mails, with when they were last used.
    idle: Mutex<Vec<(Session, Instant)>>,
}

impl SmtpClient {
    /// Checks the URL; connects only when the first mail goes out.
    pub fn new(url: &str, timeout: Duration, max_connections: usize) -> Result<Self, String> {
        Ok(Self {
            relay: Relay::parse(url)?,
            timeout,
            permits: Semaphore::new(max_connections.max(1)),
            idle: Mutex::default(),
        })
    }

    /// Sends one mail (`message`: formatted, headers and body), on a kept connection when one is
    /// free and fresh enough, else on a new one. Fails on any error or after the timeout; the
    /// caller decides about retrying.
    pub async fn send(&self, envelope: &Envelope, message: &[u8]) -> Result<(), SmtpError> {
        // The timeout covers the wait for a connection too: the caller's claim on the mail
        // (its lease) must outlast the whole send.
        tokio::time::timeout(self.timeout, async {
            let _permit = self
                .permits
                .acquire()
                .await
                .expect("the semaphore is never closed");
            let mut session = match self.take_idle().await {
                Some(session) => session,
                None => self.relay.connect().await?,
            };
            // On an error the session is dropped here, closing its connection.
            session.send(envelope, message).await?;
            self.idle
                .lock()
                .expect("not poisoned")
                .push((session, Instant::now()));
            Ok(())
        })
        .await
        .map_err(|_| SmtpError::Timeout(self.timeout))?
    }

    /// The most recently used idle connection, tested first if it was idle for long.
    async fn take_idle(&self) -> Option<Session> {
        loop {
            let (mut session, since) = self.idle.lock().expect("not poisoned").pop()?;
            if since.elapsed() < TEST_IDLE_AFTER || session.is_alive().await {
                return Some(session);
            }
            tracing::debug!("dropping an SMTP connection the relay closed");
        }
    }
}

impl std::fmt::Debug for SmtpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpClient")
            .field("relay", &self.relay)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use lettre::message::Mailbox;
    use lettre::{Address, Message};
    use service_kit::testing::smtp::{Offers, SmtpSink};

    use super::*;

    fn mail(n: usize) -> (Envelope, Vec<u8>) {
        let to: Address = format!("user{n}@example.com").parse().unwrap();
        let message = Message::builder()
            .from("sender@example.com".parse::<Mailbox>().unwrap())
            .to(Mailbox::new(None, to))
            .subject(format!("mail {n}"))
            .body(format!("body {n}"))
            .unwrap();
        (message.envelope().clone(), message.formatted())
    }

    async fn send(client: &SmtpClient, n: usize) -> Result<(), SmtpError> {
        let (envelope, bytes) = mail(n);
        client.send(&envelope, &bytes).await
    }

    #[test]
    fn urls_name_the_relay_its_security_and_credentials() {
        let relay = Relay::parse("smtp://127.0.0.1").unwrap();
        assert_eq!((relay.host.as_str(), relay.port), ("127.0.0.1", 25));
        assert!(matches!(relay.security, Security::None));
        assert!(relay.credentials.is_none());

        let relay = Relay::parse("smtp://me%40x.org:p%2Fss@mail.example.com?tls=required").unwrap();
        assert_eq!(relay.port, 587);
        assert!(matches!(
            relay.security,
            Security::StartTls { required: true, .. }
        ));
        assert_eq!(
            relay.credentials,
            Some(Credentials::new("me@x.org".into(), "p/ss".into()))
        );

        let relay =
            Relay::parse("smtp://mail.example.com:2525/client.example?tls=opportunistic").unwrap();
        assert_eq!(relay.port, 2525);
        assert!(matches!(
            relay.security,
            Security::StartTls {
                required: false,
                ..
            }
        ));
        assert_eq!(relay.hello, ClientId::Domain("client.example".into()));

        let relay = Relay::parse("smtps://u:p@mail.example.com").unwrap();
        assert_eq!(relay.port, 465);
        assert!(matches!(relay.security, Security::Implicit { .. }));

        for bad in [
            "http://mail.example.com",
            "smtp://mail.example.com?tls=sometimes",
            "smtp:///nohost",
            "not a url",
        ] {
            assert!(Relay::parse(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn debug_output_never_shows_the_password() {
        let client = SmtpClient::new(
            "smtp://ada:s3cr3t-pw@mail.example.com",
            Duration::from_secs(1),
            1,
        )
        .unwrap();
        let shown = format!("{client:?}");
        assert!(shown.contains("mail.example.com"), "{shown}");
        assert!(!shown.contains("s3cr3t-pw"), "{shown}");
    }

    #[tokio::test]
    async fn mails_reuse_connections_and_never_open_more_than_the_limit() {
        let sink = SmtpSink::start().await;
        let client = SmtpClient::new(&sink.url(), Duration::from_secs(5), 2).unwrap();
        let burst = (0..20).map(|n| send(&client, n));
        for outcome in futures_util::future::join_all(burst).await {
            outcome.unwrap();
        }
        assert!(
            sink.connections() <= 2,
            "{} connections",
            sink.connections()
        );
        let opened = sink.connections();
        for n in 20..25 {
            send(&client, n).await.unwrap();
        }
        assert_eq!(
            sink.connections(),
            opened,
            "an idle connection was not reused"
        );
        let mut to: Vec<String> = sink.mails().into_iter().flat_map(|m| m.to).collect();
        to.sort();
        let mut expected: Vec<String> = (0..25).map(|n| format!("user{n}@example.com")).collect();
        expected.sort();
        assert_eq!(to, expected);
    }

    #[tokio::test]
    async fn a_relay_that_offers_pipelining_gets_each_envelope_with_data_in_one_write() {
        let sink = SmtpSink::start().await;
        let client = SmtpClient::new(&sink.url(), Duration::from_secs(5), 1).unwrap();
        for n in 0..3 {
            send(&client, n).await.unwrap();
        }
        let mails = sink.mails();
        assert_eq!(mails.len(), 3);
        assert!(mails.iter().all(|m| m.pipelined), "{mails:?}");
    }

    #[tokio::test]
    async fn a_relay_without_pipelining_gets_one_command_at_a_time() {
        let sink = SmtpSink::start_offering(Offers {
            pipelining: false,
            ..Offers::default()
        })
        .await;
        let client = SmtpClient::new(&sink.url(), Duration::from_secs(5), 1).unwrap();
        for n in 0..3 {
            send(&client, n).await.unwrap();
        }
        let mails = sink.mails();
        assert_eq!(mails.len(), 3);
        assert!(mails.iter().all(|m| !m.pipelined), "{mails:?}");
        assert_eq!(sink.connections(), 1);
    }

    #[tokio::test]
    async fn a_refused_recipient_fails_its_mail_alone() {
        for pipelining in [true, false] {
            let sink = SmtpSink::start_offering(Offers {
                pipelining,
                ..Offers::default()
            })
            .await;
            sink.refuse("user1@example.com");
            let client = SmtpClient::new(&sink.url(), Duration::from_secs(5), 1).unwrap();
            send(&client, 0).await.unwrap();
            let refused = send(&client, 1).await.unwrap_err();
            assert!(
                matches!(
                    &refused,
                    SmtpError::Refused { command: "RCPT TO", reply } if reply.code == 550
                ),
                "{refused:?}"
            );
            assert_eq!(
                refused.to_string(),
                "the relay answered RCPT TO with 550 5.1.1 No such user here"
            );
            // The refused mail's session is dropped; the next mail opens another.
            send(&client, 2).await.unwrap();
            let to: Vec<String> = sink.mails().into_iter().flat_map(|m| m.to).collect();
            assert_eq!(to, ["user0@example.com", "user2@example.com"]);
            assert_eq!(sink.connections(), 2, "pipelining: {pipelining}");
        }
    }

    #[tokio::test]
    async fn a_message_arrives_as_written_whatever_its_dots_and_last_line() {
        let sink = SmtpSink::start().await;
        let client = SmtpClient::new(&sink.url(), Duration::from_secs(5), 1).unwrap();
        let (envelope, _) = mail(0);
        let dotted = "Subject: dots\r\n\r\n.hidden\r\n..two\r\n.\r\nend\r\n";
        client.send(&envelope, dotted.as_bytes()).await.unwrap();
        // Without a line end at the end, the message gets one (RFC 5321 4.1.1.4).
        let unterminated = "Subject: open\r\n\r\nlast line";
        client
            .send(&envelope, unterminated.as_bytes())
            .await
            .unwrap();
        let data: Vec<String> = sink.mails().into_iter().map(|m| m.data).collect();
        assert_eq!(data, [dotted.to_owned(), format!("{unterminated}\r\n")]);
    }

    #[tokio::test]
    async fn auth_login_serves_a_relay_that_offers_nothing_else() {
        let sink = SmtpSink::start_offering(Offers {
            auth_plain: false,
            ..Offers::default()
        })
        .await;
        let url = format!("smtp://ada%40ops:pw@127.0.0.1:{}", sink.port());
        let client = SmtpClient::new(&url, Duration::from_secs(5), 1).unwrap();
        send(&client, 1).await.unwrap();
        assert_eq!(sink.logins(), ["ada@ops"]);
        assert_eq!(sink.mails().len(), 1);
    }

    #[tokio::test]
    async fn credentials_fail_clearly_when_the_relay_offers_no_mechanism_we_speak() {
        let sink = SmtpSink::start_offering(Offers {
            auth_plain: false,
            auth_login: false,
            ..Offers::default()
        })
        .await;
        let url = format!("smtp://ada:pw@127.0.0.1:{}", sink.port());
        let client = SmtpClient::new(&url, Duration::from_secs(5), 1).unwrap();
        let outcome = send(&client, 1).await;
        assert!(
            matches!(outcome, Err(SmtpError::Unsupported(_))),
            "{outcome:?}"
        );
        assert!(sink.mails().is_empty());
    }

    #[tokio::test]
    async fn required_tls_never_falls_back_to_plain_text_and_opportunistic_tls_does() {
        // The sink offers no STARTTLS.
        let sink = SmtpSink::start().await;
        let url = format!("smtp://ada:pw@127.0.0.1:{}?tls=required", sink.port());
        let client = SmtpClient::new(&url, Duration::from_secs(5), 1).unwrap();
        let outcome = send(&client, 1).await;
        let Err(error @ SmtpError::Unsupported(_)) = outcome else {
            panic!("{outcome:?}");
        };
        assert_eq!(
            error.to_string(),
            "the relay does not offer STARTTLS, which tls=required asks for"
        );
        assert!(sink.logins().is_empty(), "credentials went in plain text");
        assert!(sink.mails().is_empty());

        let url = format!("smtp://ada:pw@127.0.0.1:{}?tls=opportunistic", sink.port());
        let client = SmtpClient::new(&url, Duration::from_secs(5), 1).unwrap();
        send(&client, 2).await.unwrap();
        assert_eq!(sink.mails().len(), 1);
    }

    #[tokio::test]
    async fn credentials_in_the_url_authenticate_each_connection() {
        let sink = SmtpSink::start().await;
        let url = format!("smtp://ada%40ops:pw@127.0.0.1:{}", sink.port());
        let client = SmtpClient::new(&url, Duration::from_secs(5), 1).unwrap();
        send(&client, 1).await.unwrap();
        send(&client, 2).await.unwrap();
        assert_eq!(sink.logins(), ["ada@ops"]);
        assert_eq!(sink.mails().len(), 2);
    }

    #[tokio::test]
    async fn a_relay_that_restarted_costs_the_next_mail_one_attempt() {
        let sink = SmtpSink::start().await;
        let client = SmtpClient::new(&sink.url(), Duration::from_secs(5), 1).unwrap();
        send(&client, 1).await.unwrap();
        sink.restart().await;
        // The kept connection is dead: this attempt fails, and the connection is dropped.
        assert!(send(&client, 2).await.is_err());
        send(&client, 3).await.unwrap();
        assert_eq!(sink.mails().len(), 2);
        assert_eq!(sink.connections(), 2);
    }

    #[tokio::test]
    async fn a_relay_that_stays_silent_fails_the_send_after_the_timeout() {
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("smtp://{}", silent.local_addr().unwrap());
        let held = tokio::spawn(async move {
            let (stream, _) = silent.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(stream);
        });
        let client = SmtpClient::new(&url, Duration::from_millis(300), 1).unwrap();
        let started = Instant::now();
        let outcome = send(&client, 1).await;
        assert!(matches!(outcome, Err(SmtpError::Timeout(_))), "{outcome:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
        held.abort();
    }

    #[tokio::test]
    async fn a_mail_left_unanswered_fails_after_the_timeout_and_is_not_kept() {
        let sink = SmtpSink::start().await;
        let client = SmtpClient::new(&sink.url(), Duration::from_millis(300), 1).unwrap();
        send(&client, 1).await.unwrap();
        sink.hold_from(1);
        let outcome = send(&client, 2).await;
        assert!(matches!(outcome, Err(SmtpError::Timeout(_))), "{outcome:?}");
        // The client gave up and closed its connection: the relay drops the mail unanswered.
        sink.wait_held(|n| n == 0, Duration::from_secs(5)).await;
        sink.release();
        send(&client, 3).await.unwrap();
        let subjects: Vec<_> = sink.mails().iter().filter_map(|m| m.subject()).collect();
        assert_eq!(subjects, ["mail 1", "mail 3"]);
    }

    #[tokio::test]
    async fn a_held_mail_is_accepted_once_released() {
        let sink = SmtpSink::start().await;
        let client = SmtpClient::new(&sink.url(), Duration::from_secs(5), 1).unwrap();
        sink.hold_from(0);
        let sending = tokio::spawn(async move { send(&client, 1).await });
        sink.wait_held(|n| n > 0, Duration::from_secs(5)).await;
        assert!(sink.mails().is_empty());
        sink.release();
        sending.await.unwrap().unwrap();
        assert_eq!(sink.mails().len(), 1);
        assert_eq!(sink.held(), 0);
    }

    #[tokio::test]
    async fn smtps_speaks_tls_from_the_first_byte() {
        // The sink speaks plain SMTP: a TLS client must fail its handshake, not send in clear.
        let sink = SmtpSink::start().await;
        let url = format!("smtps://localhost:{}", sink.port());
        let client = SmtpClient::new(&url, Duration::from_secs(5), 1).unwrap();
        let outcome = send(&client, 1).await;
        assert!(
            matches!(outcome, Err(SmtpError::Connect { .. })),
            "{outcome:?}"
        );
        assert!(sink.mails().is_empty());
    }

    const TEST_PEM: &[u8] = include_bytes!("testdata/self-signed-localhost.pem");

    /// What a relay heard: in plain text, how the TLS handshake went, and under TLS.
    type Heard = (Vec<String>, String, Vec<String>);

    /// Writes `reply`, then reads the client's next line into `heard`.
    async fn answer(
        stream: &mut (impl tokio::io::AsyncBufRead + tokio::io::AsyncWrite + Unpin),
        reply: &str,
        heard: &mut Vec<String>,
    ) {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
        stream.write_all(reply.as_bytes()).await.unwrap();
        stream.flush().await.unwrap();
        let mut line = String::new();
        stream.read_line(&mut line).await.unwrap();
        heard.push(line.trim_end().to_owned());
    }

    /// A relay that offers `STARTTLS` (and `AUTH PLAIN`), answers it with `ready` in one write,
    /// then starts TLS with a certificate no public root signed. Returns its URL (with
    /// credentials) and, when the conversation ends, what it heard. If the handshake
    /// completes, it takes one mail under TLS, offering `AUTH PLAIN` and `PIPELINING`.
    async fn starttls_relay(ready: &'static str) -> (String, tokio::task::JoinHandle<Heard>) {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

        let certificate = CertificateDer::from_pem_slice(TEST_PEM).unwrap();
        let key = PrivateKeyDer::from_pem_slice(TEST_PEM).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(
            rustls::crypto::ring::default_provider().into(),
        )
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certificate], key)
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "smtp://ada:pw@localhost:{}?tls=required",
            listener.local_addr().unwrap().port()
        );
        let relay = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut stream = BufReader::new(stream);
            let mut heard = Vec::new();
            answer(&mut stream, "220 relay.test\r\n", &mut heard).await;
            let offers = "250-relay.test\r\n250-AUTH PLAIN\r\n250 STARTTLS\r\n";
            answer(&mut stream, offers, &mut heard).await;
            stream.get_mut().write_all(ready.as_bytes()).await.unwrap();
            let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
            let encrypted = match acceptor.accept(stream.into_inner()).await {
                Ok(encrypted) => encrypted,
                Err(e) => return (heard, e.to_string(), Vec::new()),
            };
            let mut stream = BufReader::new(encrypted);
            let mut under_tls = Vec::new();
            let mut line = String::new();
            stream.read_line(&mut line).await.unwrap();
            under_tls.push(line.trim_end().to_owned());
            let offers = "250-relay.test\r\n250-AUTH PLAIN\r\n250 PIPELINING\r\n";
            answer(&mut stream, offers, &mut under_tls).await;
            answer(&mut stream, "235 2.7.0 Accepted\r\n", &mut under_tls).await;
            // MAIL FROM is in hand; RCPT TO and DATA came with it.
            for _ in 0..2 {
                line.clear();
                stream.read_line(&mut line).await.unwrap();
                under_tls.push(line.trim_end().to_owned());
            }
            let go_ahead = "250 OK\r\n250 OK\r\n354 Go ahead\r\n";
            answer(&mut stream, go_ahead, &mut under_tls).await;
            while under_tls.last().is_some_and(|line| line != ".") {
                line.clear();
                if stream.read_line(&mut line).await.unwrap() == 0 {
                    break;
                }
                under_tls.push(line.trim_end().to_owned());
            }
            stream.write_all(b"250 OK queued\r\n").await.unwrap();
            stream.flush().await.unwrap();
            (heard, "completed".to_owned(), under_tls)
        });
        (url, relay)
    }

    #[tokio::test]
    async fn starttls_checks_the_relays_certificate_before_any_credential_goes() {
        let (url, relay) = starttls_relay("220 2.0.0 Ready to start TLS\r\n").await;
        let client = SmtpClient::new(&url, Duration::from_secs(5), 1).unwrap();
        let outcome = send(&client, 1).await;
        let Err(error @ SmtpError::Tls(_)) = outcome else {
            panic!("{outcome:?}");
        };
        assert!(error.to_string().contains("UnknownIssuer"), "{error}");
        let (heard, handshake, _) = relay.await.unwrap();
        assert!(heard[0].starts_with("EHLO "), "{heard:?}");
        assert_eq!(heard[1], "STARTTLS");
        assert_eq!(heard.len(), 2);
        // The client hello arrived and the client refused the certificate.
        assert!(handshake.contains("UnknownCA"), "{handshake}");
    }

    #[tokio::test]
    async fn bytes_after_the_starttls_reply_end_the_conversation() {
        // An answer to the first encrypted command, sent before encryption (injected).
        let (url, relay) = starttls_relay("220 2.0.0 Ready\r\n235 2.7.0 Accepted\r\n").await;
        let client = SmtpClient::new(&url, Duration::from_secs(5), 1).unwrap();
        let outcome = send(&client, 1).await;
        let Err(error @ SmtpError::Protocol(_)) = outcome else {
            panic!("{outcome:?}");
        };
        assert_eq!(
            error.to_string(),
            "the relay sent more after its STARTTLS reply"
        );
        let (_, handshake, _) = relay.await.unwrap();
        assert_ne!(handshake, "completed");
    }

    #[tokio::test]
    async fn after_starttls_the_client_says_ehlo_again_and_mails_under_tls() {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;

        let (url, relay) = starttls_relay("220 2.0.0 Ready to start TLS\r\n").await;
        let mut client = SmtpClient::new(&url, Duration::from_secs(5), 1).unwrap();
        // Trust the relay's certificate, as if a public root had signed it.
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(TEST_PEM).unwrap())
            .unwrap();
        client.relay.security = Security::StartTls {
            tls: Tls::trusting(roots, "localhost").unwrap(),
            required: true,
        };
        send(&client, 7).await.unwrap();
        let (plain, handshake, under_tls) = relay.await.unwrap();
        assert_eq!(handshake, "completed");
        assert_eq!(plain.len(), 2, "{plain:?}");
        assert_eq!(plain[1], "STARTTLS");
        // What the relay offered before TLS is forgotten: the client asks again.
        assert!(under_tls[0].starts_with("EHLO "), "{under_tls:?}");
        assert!(under_tls[1].starts_with("AUTH PLAIN "), "{under_tls:?}");
        assert_eq!(under_tls[2], "MAIL FROM:<sender@example.com>");
        assert_eq!(under_tls[3], "RCPT TO:<user7@example.com>");
        assert_eq!(under_tls[4], "DATA");
        assert!(
            under_tls.contains(&"Subject: mail 7".to_owned()),
            "{under_tls:?}"
        );
    }

    #[tokio::test]
    async fn a_relay_that_is_down_fails_the_send() {
        let sink = SmtpSink::start().await;
        sink.stop();
        let client = SmtpClient::new(&sink.url(), Duration::from_secs(5), 1).unwrap();
        let outcome = send(&client, 1).await;
        assert!(
            matches!(outcome, Err(SmtpError::Connect { .. })),
            "{outcome:?}"
        );
    }
}
