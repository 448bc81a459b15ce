//! The benchmark's SMTP sink: speaks just enough SMTP for notification-service (EHLO, MAIL,
//! RCPT, DATA, RSET, NOOP, QUIT and PIPELINING; no TLS, no auth), accepts every mail and appends
//! one line per mail to a log file: `<unix time in ns when the final "." arrived>\t<UUIDs in the body, comma-separated>`.
//! The harness matches those ids with the orders it created to get order → e-mail latency.
//!
//! Usage: `bench-smtp-sink PORT LOG_FILE` (listens on 127.0.0.1 only).

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

type Log = Arc<Mutex<std::fs::File>>;

/// One thread: the sink shares the machine with the services it measures, and a mail is a few
/// short lines; spreading sessions over worker threads only added wake-ups between them.
#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(port), Some(path)) = (args.next(), args.next()) else {
        eprintln!("usage: bench-smtp-sink PORT LOG_FILE");
        std::process::exit(2);
    };
    let port: u16 = port.parse().map_err(|_| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "PORT must be a number")
    })?;
    let log: Log = Arc::new(Mutex::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?,
    ));
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let log = log.clone();
        tokio::spawn(async move {
            let _ = session(stream, log).await;
        });
    }
}

async fn session(stream: TcpStream, log: Log) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 bench-smtp-sink ESMTP\r\n").await?;
    let mut line = Vec::new();
    // Replies wait here while more commands are already in hand (pipelined), then go in one
    // write, as a relay such as Postfix answers a pipelined group.
    let mut replies = Vec::new();
    loop {
        if lines.buffer().is_empty() && !replies.is_empty() {
            write.write_all(&replies).await?;
            replies.clear();
        }
        line.clear();
        if lines.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        let verb = String::from_utf8_lossy(&line[..line.len().min(4)]).to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => b"250-bench-smtp-sink\r\n250-8BITMIME\r\n250-PIPELINING\r\n250 SMTPUTF8\r\n",
            "HELO" | "MAIL" | "RCPT" | "RSET" | "NOOP" => b"250 OK\r\n",
            "QUIT" => {
                replies.extend_from_slice(b"221 Bye\r\n");
                write.write_all(&replies).await?;
                return Ok(());
            }
            "DATA" => {
                // DATA ends a pipelined group: the client waits for this reply.
                replies.extend_from_slice(b"354 End data with <CR><LF>.<CR><LF>\r\n");
                write.write_all(&replies).await?;
                replies.clear();
                let mut body = Vec::with_capacity(4096);
                loop {
                    line.clear();
                    if lines.read_until(b'\n', &mut line).await? == 0 {
                        return Ok(());
                    }
                    if line == b".\r\n" || line == b".\n" {
                        break;
                    }
                    let unstuffed = if line.starts_with(b"..") {
                        &line[1..]
                    } else {
                        &line[..]
                    };
                    body.extend_from_slice(unstuffed);
                }
                let at = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or_default();
                let ids = uuids_in_body(&body).join(",");
                if let Ok(mut file) = log.lock() {
                    let _ = file.write_all(format!("{at}\t{ids}\n").as_bytes());
                }
                b"250 OK queued\r\n"
            }
            _ => b"502 Command not implemented\r\n",
        };
        replies.extend_from_slice(reply);
    }
}

/// UUIDs named in the body (after the headers, so not the Message-ID), in order of appearance,
/// in plain, quoted-printable (soft line breaks joined) and base64 parts alike.
fn uuids_in_body(mail: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(mail);
    let body = match text.find("\r\n\r\n").or_else(|| text.find("\n\n")) {
        Some(at) => &text[at..],
        None => &text[..],
    };
    let mut found = Vec::new();
    let joined = body.replace("=\r\n", "").replace("=\n", "");
    scan(&joined, &mut found);
    // Runs of base64 lines, decoded.
    let mut blob = String::new();
    for line in body.lines().chain(std::iter::once("")) {
        let line = line.trim_end();
        let is_b64 = line.len() >= 16
            && line
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=');
        if is_b64 {
            blob.push_str(line);
        } else if !blob.is_empty() {
            if let Some(decoded) = base64_decode(&blob) {
                scan(&String::from_utf8_lossy(&decoded), &mut found);
            }
            blob.clear();
        }
    }
    found
}

fn scan(text: &str, found: &mut Vec<String>) {
    const SHAPE: [usize; 5] = [8, 4, 4, 4, 12];
    let bytes = text.as_bytes();
    let mut i = 0;
    while i + 36 <= bytes.len() {
        let candidate = &bytes[i..i + 36];
        let mut ok = true;
        let mut at = 0;
        for (n, len) in SHAPE.iter().enumerate() {
            if !candidate[at..at + len].iter().all(u8::is_ascii_hexdigit) {
                ok = false;
                break;
            }
            at += len;
            if n < 4 {
                if candidate[at] != b'-' {
                    ok = false;
                    break;
                }
                at += 1;
            }
        }
        let boundary_before = i == 0 || !bytes[i - 1].is_ascii_hexdigit();
        if ok && boundary_before {
            let id = text[i..i + 36].to_ascii_lowercase();
            if !found.contains(&id) {
                found.push(id);
            }
            i += 36;
        } else {
            i += 1;
        }
    }
}

fn base64_decode(input: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(input.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for c in input.bytes().filter(|&c| c != b'=') {
        acc = (acc << 6) | value(c)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_ids_in_plain_and_base64_bodies_but_not_headers() {
        let plain = b"Message-ID: <0f0e0d0c-0000-4000-8000-000000000001@x>\r\n\r\nwe received your order 0196d2a4-7b1c-7c3e-9f00-1234567890ab:\r\n";
        assert_eq!(
            uuids_in_body(plain),
            vec!["0196d2a4-7b1c-7c3e-9f00-1234567890ab".to_owned()]
        );
        // "order 0196d2a4-7b1c-7c3e-9f00-1234567890ab" in base64
        let b64 = b"Subject: x\r\n\r\nb3JkZXIgMDE5NmQyYTQtN2IxYy03YzNlLTlmMDAtMTIzNDU2Nzg5MGFi\r\n";
        assert_eq!(
            uuids_in_body(b64),
            vec!["0196d2a4-7b1c-7c3e-9f00-1234567890ab".to_owned()]
        );
    }
}
