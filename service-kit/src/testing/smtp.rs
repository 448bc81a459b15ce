//! An SMTP server for tests: speaks enough of RFC 5321 for a client (EHLO/HELO, AUTH PLAIN and
//! LOGIN, MAIL, RCPT, DATA with dot-unstuffing, RSET, NOOP, QUIT, and PIPELINING: commands sent
//! together are read and answered in order), keeps every mail it accepts, counts the
//! connections it was given, and can be stopped and started again on the same port to play a
//! relay that goes away and comes back. It can also hold mails past a count unanswered (see
//! [`SmtpSink::hold_from`]), to keep a client's sends in flight for as long as a test needs,
//! refuse recipients ([`SmtpSink::refuse`]), and offer less ([`Offers`]).
//!
//! ```ignore
//! let sink = SmtpSink::start().await;
//! // point the service at sink.url() …
//! let mail = sink.wait_for(1, Duration::from_secs(5)).await.remove(0);
//! assert_eq!(mail.to, ["ada@example.com"]);
//! assert!(mail.text().contains("Hello Ada"));
//! ```

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// One mail as the sink received it.
#[derive(Debug, Clone)]
pub struct ReceivedMail {
    /// The envelope sender (`MAIL FROM`).
    pub from: String,
    /// The envelope recipients (`RCPT TO`).
    pub to: Vec<String>,
    /// The message as sent after `DATA` (headers and body), dot-unstuffed.
    pub data: String,
    /// Whether the client sent `MAIL FROM`, `RCPT TO` and `DATA` together, before the first
    /// reply (RFC 2920's pipelining): the sink had `DATA` in hand when it read `MAIL FROM`.
    pub pipelined: bool,
}

impl ReceivedMail {
    /// The first header `name` of the message (unfolded), if any.
    pub fn header(&self, name: &str) -> Option<String> {
        header_in(headers_of(&self.data), name)
    }

    pub fn subject(&self) -> Option<String> {
        self.header("Subject")
    }

    /// The decoded `text/plain` part (or the body of a single-part mail).
    pub fn text(&self) -> String {
        self.part("text/plain").unwrap_or_default()
    }

    /// The decoded `text/html` part, if the mail has one.
    pub fn html(&self) -> Option<String> {
        self.part("text/html")
    }

    fn part(&self, content_type: &str) -> Option<String> {
        let (headers, body) = split_head(&self.data);
        let top_type = header_in(headers, "Content-Type").unwrap_or_default();
        let Some(boundary) = boundary(&top_type) else {
            return top_type
                .to_ascii_lowercase()
                .starts_with(content_type)
                .then(|| decode(headers, body))
                .or_else(|| (content_type == "text/plain").then(|| decode(headers, body)));
        };
        body.split(&format!("--{boundary}"))
            .skip(1)
            .filter(|part| !part.starts_with("--"))
            .find_map(|part| {
                let part = part.trim_start_matches(['\r', '\n']);
                let (headers, body) = split_head(part);
                let kind = header_in(headers, "Content-Type").unwrap_or_default();
                kind.to_ascii_lowercase()
                    .starts_with(content_type)
                    .then(|| decode(headers, body))
            })
    }
}

fn split_head(data: &str) -> (&str, &str) {
    data.split_once("\r\n\r\n").unwrap_or((data, ""))
}

fn headers_of(data: &str) -> &str {
    split_head(data).0
}

fn header_in(headers: &str, name: &str) -> Option<String> {
    let unfolded = headers.replace("\r\n ", " ").replace("\r\n\t", " ");
    unfolded.split("\r\n").find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().to_owned())
    })
}

fn boundary(content_type: &str) -> Option<String> {
    let at = content_type.to_ascii_lowercase().find("boundary=")?;
    let value = &content_type[at + "boundary=".len()..];
    let value = value.split(';').next()?.trim().trim_matches('"');
    Some(value.to_owned())
}

fn decode(headers: &str, body: &str) -> String {
    let encoding = header_in(headers, "Content-Transfer-Encoding")
        .unwrap_or_default()
        .to_ascii_lowercase();
    match encoding.as_str() {
        "base64" => {
            let compact: String = body.split_whitespace().collect();
            base64::engine::general_purpose::STANDARD
                .decode(compact)
                .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
                .unwrap_or_else(|_| body.to_owned())
        }
        "quoted-printable" => decode_quoted_printable(body),
        _ => body.to_owned(),
    }
    .trim_end_matches(['\r', '\n'])
    .to_owned()
}

fn decode_quoted_printable(body: &str) -> String {
    let mut bytes = Vec::with_capacity(body.len());
    let raw = body.replace("=\r\n", "");
    let mut input = raw.bytes();
    while let Some(b) = input.next() {
        if b == b'=' {
            let hex: Vec<u8> = input.by_ref().take(2).collect();
            match std::str::from_utf8(&hex)
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                Some(byte) => bytes.push(byte),
                None => bytes.extend(std::iter::once(b'=').chain(hex)),
            }
        } else {
            bytes.push(b);
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// What the sink offers in its reply to `EHLO`: everything by default.
#[derive(Debug, Clone, Copy)]
pub struct Offers {
    pub pipelining: bool,
    pub auth_plain: bool,
    pub auth_login: bool,
}

impl Default for Offers {
    fn default() -> Self {
        Self {
            pipelining: true,
            auth_plain: true,
            auth_login: true,
        }
    }
}

impl Offers {
    fn ehlo_reply(self) -> String {
        let mut reply = String::from("250-sink.test\r\n250-8BITMIME\r\n");
        let auth: Vec<&str> = [(self.auth_plain, "PLAIN"), (self.auth_login, "LOGIN")]
            .into_iter()
            .filter_map(|(offered, name)| offered.then_some(name))
            .collect();
        if !auth.is_empty() {
            reply.push_str(&format!("250-AUTH {}\r\n", auth.join(" ")));
        }
        if self.pipelining {
            reply.push_str("250-PIPELINING\r\n");
        }
        reply.push_str("250 SMTPUTF8\r\n");
        reply
    }
}

/// A running (or stopped) sink; stops when dropped.
pub struct SmtpSink {
    addr: SocketAddr,
    seen: Arc<Seen>,
    running: Mutex<CancellationToken>,
}

/// What the sink's sessions record, and what they are told.
struct Seen {
    offers: Offers,
    /// Recipients `RCPT TO` refuses (550).
    refused: Mutex<Vec<String>>,
    mails: Mutex<Vec<ReceivedMail>>,
    /// The user names of successful `AUTH PLAIN`s.
    logins: Mutex<Vec<String>>,
    connections: AtomicUsize,
    /// Mails past this count get no answer until it is lifted (`None`).
    hold_from: watch::Sender<Option<usize>>,
    /// Sessions waiting for an answer to their mail.
    held: AtomicUsize,
}

impl Seen {
    fn new(offers: Offers) -> Self {
        Self {
            offers,
            refused: Mutex::default(),
            mails: Mutex::default(),
            logins: Mutex::default(),
            connections: AtomicUsize::default(),
            hold_from: watch::Sender::new(None),
            held: AtomicUsize::default(),
        }
    }
}

impl SmtpSink {
    /// Listens on a free loopback port.
    pub async fn start() -> Self {
        Self::start_offering(Offers::default()).await
    }

    /// Listens on a free loopback port, offering only `offers`.
    pub async fn start_offering(offers: Offers) -> Self {
        let addr = SocketAddr::from(([127, 0, 0, 1], super::free_port()));
        let sink = Self {
            addr,
            seen: Arc::new(Seen::new(offers)),
            running: Mutex::new(CancellationToken::new()),
        };
        sink.listen().await;
        sink
    }

    /// `smtp://127.0.0.1:PORT` (plain SMTP, no TLS, no authentication), for lettre's `from_url`.
    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Every mail accepted so far.
    pub fn mails(&self) -> Vec<ReceivedMail> {
        self.seen.mails.lock().unwrap().clone()
    }

    /// From now on `RCPT TO:<recipient>` gets `550 5.1.1` (the relay knows no such user).
    pub fn refuse(&self, recipient: &str) {
        self.seen.refused.lock().unwrap().push(recipient.to_owned());
    }

    /// The user names clients authenticated as (`AUTH PLAIN` or `LOGIN`, any password), in
    /// order.
    pub fn logins(&self) -> Vec<String> {
        self.seen.logins.lock().unwrap().clone()
    }

    /// How many connections clients opened so far.
    pub fn connections(&self) -> usize {
        self.seen.connections.load(Ordering::Relaxed)
    }

    /// Waits until at least `count` mails arrived (panics after `timeout`).
    pub async fn wait_for(&self, count: usize, timeout: Duration) -> Vec<ReceivedMail> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let mails = self.mails();
            if mails.len() >= count {
                return mails;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "expected {count} mail(s) within {timeout:?}, got {}",
                mails.len()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// From now on the sink keeps every mail past the first `count` unanswered: it reads the
    /// mail, then neither accepts it nor replies until [`Self::release`]. A client that gives up
    /// or dies meanwhile leaves nothing behind, as with a relay that never said 250.
    pub fn hold_from(&self, count: usize) {
        self.seen.hold_from.send_replace(Some(count));
    }

    /// Answers the held mails whose clients are still there (250, and they are kept) and holds
    /// no more.
    pub fn release(&self) {
        self.seen.hold_from.send_replace(None);
    }

    /// How many mails wait for an answer.
    pub fn held(&self) -> usize {
        self.seen.held.load(Ordering::SeqCst)
    }

    /// Waits until the number of mails waiting for an answer satisfies `wanted` (panics after
    /// `timeout`), e.g. `|n| n > 0`: a send is in flight; `|n| n == 0`: the held clients gave
    /// up or died.
    pub async fn wait_held(&self, wanted: impl Fn(usize) -> bool, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let held = self.held();
            if wanted(held) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "held mails still {held} after {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Closes the port and every open connection: clients get "connection refused".
    pub fn stop(&self) {
        self.running.lock().unwrap().cancel();
    }

    /// Listens again on the same port.
    pub async fn restart(&self) {
        self.stop();
        *self.running.lock().unwrap() = CancellationToken::new();
        self.listen().await;
    }

    async fn listen(&self) {
        let token = self.running.lock().unwrap().clone();
        let bind = || -> std::io::Result<tokio::net::TcpListener> {
            let socket = TcpSocket::new_v4()?;
            socket.set_reuseaddr(true)?;
            socket.bind(self.addr)?;
            socket.listen(64)
        };
        // The previous listener may take a moment to release the port.
        let mut bound = bind();
        for _ in 0..50 {
            if bound.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            bound = bind();
        }
        let listener = bound.expect("SMTP sink listens on its port");
        let seen = self.seen.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = token.cancelled() => break,
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        seen.connections.fetch_add(1, Ordering::Relaxed);
                        let seen = seen.clone();
                        let token = token.clone();
                        tokio::spawn(async move {
                            tokio::select! {
                                _ = token.cancelled() => {}
                                _ = session(stream, seen) => {}
                            }
                        });
                    }
                }
            }
        });
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn session(stream: TcpStream, seen: Arc<Seen>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    write
        .write_all(b"220 sink.test ESMTP test sink\r\n")
        .await?;
    let mut from = String::new();
    let mut to = Vec::new();
    let mut pipelined = false;
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_owned();
        let mut words = command.split_whitespace();
        let verb = words.next().unwrap_or_default().to_ascii_uppercase();
        let mechanism = words.next().unwrap_or_default().to_ascii_uppercase();
        let offers = seen.offers;
        let reply: std::borrow::Cow<'static, [u8]> = match verb.as_str() {
            "EHLO" => offers.ehlo_reply().into_bytes().into(),
            "AUTH" if mechanism == "PLAIN" && offers.auth_plain => {
                authenticated(&seen, plain_login(&command))
            }
            "AUTH" if mechanism == "LOGIN" && offers.auth_login => {
                let user = login(&mut lines, &mut write).await?;
                authenticated(&seen, user)
            }
            "AUTH" => b"504 5.5.4 Unrecognized authentication type\r\n".into(),
            "HELO" | "NOOP" => b"250 OK\r\n".into(),
            "MAIL" => {
                from = address(&command);
                to.clear();
                pipelined = lines
                    .buffer()
                    .windows(6)
                    .any(|w| w.eq_ignore_ascii_case(b"DATA\r\n"));
                b"250 OK\r\n".into()
            }
            "RCPT" => {
                let recipient = address(&command);
                if seen.refused.lock().unwrap().contains(&recipient) {
                    b"550 5.1.1 No such user here\r\n".into()
                } else {
                    to.push(recipient);
                    b"250 OK\r\n".into()
                }
            }
            "RSET" => {
                from.clear();
                to.clear();
                b"250 OK\r\n".into()
            }
            "DATA" if to.is_empty() => b"554 5.5.1 No valid recipients\r\n".into(),
            "DATA" => {
                write
                    .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    .await?;
                let mut data = String::new();
                loop {
                    line.clear();
                    if lines.read_line(&mut line).await? == 0 {
                        return Ok(());
                    }
                    if line == ".\r\n" || line == ".\n" {
                        break;
                    }
                    data.push_str(line.strip_prefix('.').unwrap_or(&line));
                }
                let mail = ReceivedMail {
                    from: std::mem::take(&mut from),
                    to: std::mem::take(&mut to),
                    data,
                    pipelined,
                };
                if !accept(&seen, mail, &mut lines).await {
                    return Ok(());
                }
                b"250 OK queued\r\n".into()
            }
            "QUIT" => {
                write.write_all(b"221 Bye\r\n").await?;
                return Ok(());
            }
            _ => b"502 Command not implemented\r\n".into(),
        };
        write.write_all(&reply).await?;
    }
}

fn authenticated(seen: &Seen, user: Option<String>) -> std::borrow::Cow<'static, [u8]> {
    match user {
        Some(user) => {
            seen.logins.lock().unwrap().push(user);
            b"235 2.7.0 Authentication successful\r\n".into()
        }
        None => b"535 5.7.8 Authentication credentials invalid\r\n".into(),
    }
}

/// `AUTH LOGIN`'s two challenges (`Username:`, `Password:`, base64); the user name answered.
async fn login(
    client: &mut BufReader<OwnedReadHalf>,
    write: &mut tokio::net::tcp::OwnedWriteHalf,
) -> std::io::Result<Option<String>> {
    let mut answers = Vec::new();
    for challenge in ["Username:", "Password:"] {
        let encoded = base64::engine::general_purpose::STANDARD.encode(challenge);
        write
            .write_all(format!("334 {encoded}\r\n").as_bytes())
            .await?;
        let mut answer = String::new();
        client.read_line(&mut answer).await?;
        answers.push(
            base64::engine::general_purpose::STANDARD
                .decode(answer.trim())
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok()),
        );
    }
    let password = answers.pop().flatten();
    let user = answers.pop().flatten();
    Ok(user.filter(|_| password.is_some()))
}

/// Keeps `mail`, or, while the sink holds mails past its count, waits to be released first.
/// False when the client went away while held: the mail is dropped unanswered.
async fn accept(seen: &Seen, mail: ReceivedMail, client: &mut BufReader<OwnedReadHalf>) -> bool {
    let mut hold = seen.hold_from.subscribe();
    {
        let mut mails = seen.mails.lock().unwrap();
        if hold.borrow().is_none_or(|count| mails.len() < count) {
            mails.push(mail);
            return true;
        }
    }
    let _waiting = Held::count(&seen.held);
    // The client sends nothing until it has an answer; a read ending means it is gone.
    let mut ignored = String::new();
    let released = tokio::select! {
        released = hold.wait_for(Option::is_none) => released.is_ok(),
        _ = client.read_line(&mut ignored) => false,
    };
    if released {
        seen.mails.lock().unwrap().push(mail);
    }
    released
}

/// Counts a held session for as long as it lives (also when the sink stops and drops it).
struct Held<'a>(&'a AtomicUsize);

impl<'a> Held<'a> {
    fn count(held: &'a AtomicUsize) -> Self {
        held.fetch_add(1, Ordering::SeqCst);
        Self(held)
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The user name of `AUTH PLAIN <base64 of "\0user\0password">`.
fn plain_login(command: &str) -> Option<String> {
    let mut words = command.split_whitespace().skip(1);
    if !words.next()?.eq_ignore_ascii_case("PLAIN") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(words.next()?)
        .ok()?;
    let mut parts = decoded.split(|b| *b == 0).skip(1);
    let user = String::from_utf8(parts.next()?.to_vec()).ok()?;
    parts.next()?;
    Some(user)
}

/// The address in `MAIL FROM:<a@b>` / `RCPT TO:<a@b>`.
fn address(command: &str) -> String {
    let start = command.find('<').map_or(0, |i| i + 1);
    let end = command[start..]
        .find('>')
        .map_or(command.len(), |i| start + i);
    command[start..end].trim().to_owned()
}
