//! The SMTP client: lettre speaks the protocol ([`AsyncSmtpConnection`]); this module opens the
//! connections (with `TCP_NODELAY`) and keeps them open for the next mail.
//!
//! Why not lettre's `AsyncSmtpTransport`: in lettre 0.11.23 every mail waited about 40 ms for
//! nothing. lettre writes a mail's body and its closing `.` in two writes and leaves Nagle's
//! algorithm on, so the kernel holds the `.` until the relay acknowledges the body, and the
//! relay delays that acknowledgement (40 ms on Linux) because it has nothing to answer yet. With
//! the consumer's 64 mails in flight that capped it at about 1,350 mails a second with the CPU
//! half idle (`make bench`'s drain; 2,635 a second without the wait). Upstream has merged the fix
//! (lettre pull request 1159) but not released it. lettre's pool also sends a `NOOP` before every
//! reuse of a connection, a round trip per mail; here only a connection idle for
//! [`TEST_IDLE_AFTER`] or longer is tested first.
//!
//! At most `pool_max_size` conversations run at once, each on a connection of its own; a sender
//! beyond that waits for one to finish. The connections stay open between mails (up to that
//! many), and a connection that failed is dropped, never reused.

use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::{SMTP_PORT, SUBMISSION_PORT, SUBMISSIONS_PORT};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

/// A connection unused for this long is tested with `NOOP` before it carries a mail: relays close
/// idle connections (RFC 5321 asks them to wait at least 5 minutes; some wait less).
pub const TEST_IDLE_AFTER: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum SmtpError {
    #[error("{0}")]
    Smtp(#[from] lettre::transport::smtp::Error),
    #[error("connecting to {relay}: {source}")]
    Connect {
        relay: String,
        source: std::io::Error,
    },
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// How the conversation is protected.
enum Security {
    /// Plain text: a relay on the same host or in the same pod network.
    None,
    /// `STARTTLS` after the greeting; `required: false` goes on in plain text when the relay
    /// does not offer it.
    StartTls { tls: TlsParameters, required: bool },
    /// TLS from the first byte (`smtps://`, port 465). lettre can only start TLS on a socket it
    /// opened itself, so this one is tokio-rustls's, with the same roots (webpki-roots) and
    /// cryptography (ring) as lettre's.
    Implicit {
        tls: tokio_rustls::TlsConnector,
        name: rustls::pki_types::ServerName<'static>,
    },
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
            Security::Implicit { .. } => "tls",
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
                    tls: TlsParameters::new(host.clone()).map_err(|e| e.to_string())?,
                    required: mode == "required",
                },
                SUBMISSION_PORT,
            ),
            // lettre ignores `tls=` here too: the connection is TLS from the start anyway.
            ("smtps", _) => (implicit_tls(&host)?, SUBMISSIONS_PORT),
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

    async fn connect(&self) -> Result<AsyncSmtpConnection, SmtpError> {
        let failed = |source| SmtpError::Connect {
            relay: format!("{}:{}", self.host, self.port),
            source,
        };
        let stream = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(failed)?;
        // The point of this module: see its documentation.
        stream.set_nodelay(true).map_err(failed)?;
        let mut conn = match &self.security {
            Security::Implicit { tls, name } => {
                let stream = tls.connect(name.clone(), stream).await.map_err(failed)?;
                AsyncSmtpConnection::connect_with_transport(Box::new(Tls(stream)), &self.hello)
                    .await?
            }
            _ => AsyncSmtpConnection::connect_with_transport(Box::new(stream), &self.hello).await?,
        };
        match &self.security {
            Security::StartTls { tls, required } if *required || conn.can_starttls() => {
                conn.starttls(tls.clone(), &self.hello).await?;
            }
            _ => {}
        }
        if let Some(credentials) = &self.credentials {
            conn.auth(DEFAULT_MECHANISMS, credentials).await?;
        }
        Ok(conn)
    }
}

fn implicit_tls(host: &str) -> Result<Security, String> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let config = rustls::ClientConfig::builder_with_provider(
        rustls::crypto::ring::default_provider().into(),
    )
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| format!("{host:?}: {e}"))?;
    Ok(Security::Implicit {
        tls: tokio_rustls::TlsConnector::from(std::sync::Arc::new(config)),
        name,
    })
}

/// A TLS stream lettre can speak SMTP over.
#[derive(Debug)]
struct Tls(tokio_rustls::client::TlsStream<TcpStream>);

impl lettre::transport::smtp::client::AsyncTokioStream for Tls {
    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

impl tokio::io::AsyncRead for Tls {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Tls {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
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
    idle: Mutex<Vec<(AsyncSmtpConnection, Instant)>>,
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
            let mut conn = match self.take_idle().await {
                Some(conn) => conn,
                None => self.relay.connect().await?,
            };
            // On an error lettre has closed the connection already: it is dropped here.
            conn.send(envelope, message).await?;
            self.idle
                .lock()
                .expect("not poisoned")
                .push((conn, Instant::now()));
            Ok(())
        })
        .await
        .map_err(|_| SmtpError::Timeout(self.timeout))?
    }

    /// The most recently used idle connection, tested first if it was idle for long.
    async fn take_idle(&self) -> Option<AsyncSmtpConnection> {
        loop {
            let (mut conn, since) = self.idle.lock().expect("not poisoned").pop()?;
            if since.elapsed() < TEST_IDLE_AFTER || conn.test_connected().await {
                return Some(conn);
            }
            tracing::debug!("dropping an SMTP connection the relay closed");
            conn.abort().await;
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
    use service_kit::testing::smtp::SmtpSink;

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
