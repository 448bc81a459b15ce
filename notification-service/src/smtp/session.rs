//! One SMTP conversation (RFC 5321) on a connection [`super::Relay`] opened: the greeting, `EHLO`,
//! `STARTTLS`, `AUTH`, then mail after mail, with each mail's `MAIL FROM`, `RCPT TO` and `DATA`
//! sent in one write when the relay offers `PIPELINING` (RFC 2920).
//!
//! lettre formats the commands (its `commands` module: addresses, parameters, the `AUTH`
//! answers); this module writes them and reads the replies. lettre's own connection sends a
//! command and waits for its reply before it writes the next one (its writes are private and its
//! `EHLO` parsing knows no `PIPELINING`), so every mail cost four round trips and four writes on
//! each side. Pipelined, a mail is two of each: the envelope with `DATA`, then the message.
//!
//! After any error the session is in an unknown state (a pipelined `RCPT` may have been refused
//! with `DATA` already sent): the caller drops it, closing the connection, and never reuses it.

use std::fmt;

use lettre::address::{Address, Envelope};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::commands::{Auth, Data, Ehlo, Mail, Noop, Rcpt, Starttls};
use lettre::transport::smtp::extension::{ClientId, MailBodyParameter, MailParameter};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_util::either::Either;

use super::{SmtpError, Tls};

/// A reply line longer than this (Postfix's `line_length_limit`) is not SMTP.
const MAX_LINE: u64 = 2048;
/// Nor is a reply of more lines than this.
const MAX_LINES: usize = 100;
/// `RCPT TO`'s positive replies (251: "not local; will forward").
const RCPT_OK: &[u16] = &[250, 251];

type Stream = Either<TcpStream, tokio_rustls::client::TlsStream<TcpStream>>;

/// What the relay said about itself in reply to `EHLO`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Extensions {
    pub pipelining: bool,
    pub starttls: bool,
    pub eight_bit_mime: bool,
    pub smtp_utf8: bool,
    /// The `AUTH` mechanisms, upper case.
    pub auth: Vec<String>,
}

impl Extensions {
    fn from_ehlo(reply: &Reply) -> Self {
        let mut extensions = Self::default();
        // The first line greets; each further line names one extension and its parameters.
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_ascii_whitespace();
            let Some(keyword) = words.next() else {
                continue;
            };
            match keyword.to_ascii_uppercase().as_str() {
                "PIPELINING" => extensions.pipelining = true,
                "STARTTLS" => extensions.starttls = true,
                "8BITMIME" => extensions.eight_bit_mime = true,
                "SMTPUTF8" => extensions.smtp_utf8 = true,
                "AUTH" => extensions.auth = words.map(str::to_ascii_uppercase).collect(),
                _ => {}
            }
        }
        extensions
    }
}

/// A reply: its code and its lines' text (without the code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        for line in &self.lines {
            write!(f, " {line}")?;
        }
        Ok(())
    }
}

pub(super) struct Session {
    stream: BufReader<Stream>,
    /// Commands written but not yet sent: [`Self::flush`] sends them in one write.
    out: Vec<u8>,
    extensions: Extensions,
}

impl Session {
    /// Reads the greeting and says `EHLO`.
    pub async fn start(stream: Stream, hello: &ClientId) -> Result<Self, SmtpError> {
        let mut session = Self {
            stream: BufReader::new(stream),
            out: Vec::with_capacity(1024),
            extensions: Extensions::default(),
        };
        session.expect("the connection", &[220]).await?;
        session.ehlo(hello).await?;
        Ok(session)
    }

    pub fn extensions(&self) -> &Extensions {
        &self.extensions
    }

    async fn ehlo(&mut self, hello: &ClientId) -> Result<(), SmtpError> {
        self.write(Ehlo::new(hello.clone()));
        self.flush().await?;
        let reply = self.expect("EHLO", &[250]).await?;
        self.extensions = Extensions::from_ehlo(&reply);
        Ok(())
    }

    /// `STARTTLS`, the handshake, and `EHLO` again: what the relay offered in plain text is
    /// forgotten (RFC 3207).
    pub async fn starttls(mut self, tls: &Tls, hello: &ClientId) -> Result<Self, SmtpError> {
        self.write(Starttls);
        self.flush().await?;
        self.expect("STARTTLS", &[220]).await?;
        // Anything the relay sent after that reply came before the encryption and could be an
        // attacker's answer to the first encrypted command (CVE-2011-0411's other side).
        if !self.stream.buffer().is_empty() {
            return Err(SmtpError::Protocol(
                "the relay sent more after its STARTTLS reply".into(),
            ));
        }
        let Either::Left(tcp) = self.stream.into_inner() else {
            return Err(SmtpError::Protocol(
                "STARTTLS on an encrypted connection".into(),
            ));
        };
        let encrypted = tls
            .connector
            .connect(tls.name.clone(), tcp)
            .await
            .map_err(SmtpError::Tls)?;
        self.stream = BufReader::new(Either::Right(encrypted));
        self.ehlo(hello).await?;
        Ok(self)
    }

    /// `AUTH` with the first of PLAIN and LOGIN the relay offers.
    pub async fn authenticate(&mut self, credentials: &Credentials) -> Result<(), SmtpError> {
        let offered = |name: &str| self.extensions.auth.iter().any(|m| m == name);
        let mechanism = if offered("PLAIN") {
            Mechanism::Plain
        } else if offered("LOGIN") {
            Mechanism::Login
        } else {
            return Err(SmtpError::Unsupported(
                "AUTH PLAIN or LOGIN, which the URL's credentials need",
            ));
        };
        let mut challenge = None;
        // PLAIN takes one step, LOGIN three (the command, the user name, the password).
        for _ in 0..3 {
            let answer = Auth::new(mechanism, credentials.clone(), challenge)
                .map_err(|e| SmtpError::Protocol(format!("AUTH {mechanism}: {e}")))?;
            self.write(answer);
            self.flush().await?;
            let reply = self.reply().await?;
            match reply.code {
                235 => return Ok(()),
                334 => challenge = Some(decode_challenge(&reply)?),
                _ => {
                    return Err(SmtpError::Refused {
                        command: "AUTH",
                        reply,
                    });
                }
            }
        }
        Err(SmtpError::Protocol(format!(
            "AUTH {mechanism}: too many challenges"
        )))
    }

    /// Whether the relay still answers (`NOOP`).
    pub async fn is_alive(&mut self) -> bool {
        self.write(Noop);
        self.flush().await.is_ok() && self.expect("NOOP", &[250]).await.is_ok()
    }

    /// Sends one mail: `message` is the formatted message (headers and body).
    pub async fn send(&mut self, envelope: &Envelope, message: &[u8]) -> Result<(), SmtpError> {
        let mut parameters = Vec::new();
        let mut addresses = envelope.from().into_iter().chain(envelope.to());
        if addresses.any(|a: &Address| !a.user().is_ascii() || !a.domain().is_ascii()) {
            if !self.extensions.smtp_utf8 {
                return Err(SmtpError::Unsupported(
                    "SMTPUTF8, which a non-ASCII address needs",
                ));
            }
            parameters.push(MailParameter::SmtpUtfEight);
        }
        if !message.is_ascii() {
            if !self.extensions.eight_bit_mime {
                return Err(SmtpError::Unsupported(
                    "8BITMIME, which a non-ASCII message needs",
                ));
            }
            parameters.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }

        // The envelope and DATA: in one write when pipelining, else each after the last reply.
        let pipelining = self.extensions.pipelining;
        self.write(Mail::new(envelope.from().cloned(), parameters));
        if !pipelining {
            self.flush().await?;
            self.expect("MAIL FROM", &[250]).await?;
        }
        for to in envelope.to() {
            self.write(Rcpt::new(to.clone(), Vec::new()));
            if !pipelining {
                self.flush().await?;
                self.expect("RCPT TO", RCPT_OK).await?;
            }
        }
        self.write(Data);
        self.flush().await?;
        if pipelining {
            self.expect("MAIL FROM", &[250]).await?;
            for _ in envelope.to() {
                self.expect("RCPT TO", RCPT_OK).await?;
            }
        }
        self.expect("DATA", &[354]).await?;

        stuff_dots(message, &mut self.out);
        self.out.extend_from_slice(if message.ends_with(b"\r\n") {
            b".\r\n"
        } else {
            b"\r\n.\r\n"
        });
        self.flush().await?;
        self.expect("the message", &[250]).await?;
        Ok(())
    }

    fn write(&mut self, command: impl fmt::Display) {
        use std::io::Write;
        write!(self.out, "{command}").expect("writing to a Vec cannot fail");
    }

    async fn flush(&mut self) -> Result<(), SmtpError> {
        let stream = self.stream.get_mut();
        stream.write_all(&self.out).await?;
        stream.flush().await?;
        self.out.clear();
        Ok(())
    }

    /// The next reply, if its code is one of `codes`.
    async fn expect(&mut self, command: &'static str, codes: &[u16]) -> Result<Reply, SmtpError> {
        let reply = self.reply().await?;
        if codes.contains(&reply.code) {
            Ok(reply)
        } else {
            Err(SmtpError::Refused { command, reply })
        }
    }

    /// The next reply, all its lines (`250-…` continues, `250 …` ends).
    async fn reply(&mut self) -> Result<Reply, SmtpError> {
        let mut code = None;
        let mut lines = Vec::new();
        let mut line = Vec::with_capacity(128);
        loop {
            line.clear();
            let read = (&mut self.stream)
                .take(MAX_LINE)
                .read_until(b'\n', &mut line)
                .await?;
            if read == 0 {
                return Err(SmtpError::Protocol(
                    "the relay closed the connection".into(),
                ));
            }
            if !line.ends_with(b"\n") {
                return Err(SmtpError::Protocol(format!(
                    "a reply line longer than {MAX_LINE} bytes"
                )));
            }
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end_matches(['\r', '\n']);
            let (this, last, rest) = parse_line(text)
                .ok_or_else(|| SmtpError::Protocol(format!("not an SMTP reply: {text:?}")))?;
            if code.is_some_and(|code| code != this) {
                return Err(SmtpError::Protocol(format!(
                    "a reply's lines disagree on its code: {text:?}"
                )));
            }
            code = Some(this);
            lines.push(rest.to_owned());
            if last {
                return Ok(Reply { code: this, lines });
            }
            if lines.len() >= MAX_LINES {
                return Err(SmtpError::Protocol(format!(
                    "a reply of more than {MAX_LINES} lines"
                )));
            }
        }
    }
}

/// `"250-text"` → (250, more follow, "text"); `"250 text"` and `"250"` end the reply.
fn parse_line(line: &str) -> Option<(u16, bool, &str)> {
    let bytes = line.as_bytes();
    let digits = bytes.get(..3)?;
    if !(b'2'..=b'5').contains(&digits[0]) || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let code = line[..3].parse().ok()?;
    match bytes.get(3) {
        None => Some((code, true, "")),
        Some(b' ') => Some((code, true, &line[4..])),
        Some(b'-') => Some((code, false, &line[4..])),
        Some(_) => None,
    }
}

/// The text of a `334` challenge (base64).
fn decode_challenge(reply: &Reply) -> Result<String, SmtpError> {
    use base64::Engine;
    let encoded = reply.lines.first().map(String::as_str).unwrap_or_default();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|e| SmtpError::Protocol(format!("an AUTH challenge: {e}")))?;
    String::from_utf8(bytes).map_err(|e| SmtpError::Protocol(format!("an AUTH challenge: {e}")))
}

/// RFC 5321's transparency (4.5.2): a line that starts with `.` gets another.
fn stuff_dots(message: &[u8], out: &mut Vec<u8>) {
    out.reserve(message.len() + 8);
    let mut line_start = true;
    for &byte in message {
        if line_start && byte == b'.' {
            out.push(b'.');
        }
        out.push(byte);
        line_start = byte == b'\n';
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_lines_parse_and_junk_does_not() {
        assert_eq!(parse_line("250-sink.test"), Some((250, false, "sink.test")));
        assert_eq!(parse_line("250 OK"), Some((250, true, "OK")));
        assert_eq!(parse_line("354"), Some((354, true, "")));
        assert_eq!(parse_line("550 5.1.1 no"), Some((550, true, "5.1.1 no")));
        for junk in ["", "25", "OK 250", "250x", "199 early", "600 late", "2a0 x"] {
            assert_eq!(parse_line(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn ehlo_names_the_extensions() {
        let reply = Reply {
            code: 250,
            lines: [
                "relay.example greets you",
                "pipelining",
                "8BITMIME",
                "AUTH login PLAIN",
            ]
            .map(String::from)
            .to_vec(),
        };
        assert_eq!(
            Extensions::from_ehlo(&reply),
            Extensions {
                pipelining: true,
                starttls: false,
                eight_bit_mime: true,
                smtp_utf8: false,
                auth: vec!["LOGIN".into(), "PLAIN".into()],
            }
        );
    }

    #[test]
    fn lines_starting_with_a_dot_get_another() {
        let mut out = Vec::new();
        stuff_dots(b".top\r\nmid.dle\r\n.\r\n..two\r\nend.", &mut out);
        assert_eq!(out, b"..top\r\nmid.dle\r\n..\r\n...two\r\nend.");
    }
}
