//! Parsing at the edge: once a value is an [`Email`], a [`UserName`] or a [`Password`] it is
//! valid, so handlers never re-check.

use std::fmt;

/// A syntactically valid address, lower-cased (addresses are unique case-insensitively).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let email = raw.trim().to_lowercase();
        let valid = email.len() <= 254
            && email.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && local.len() <= 64
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !domain.contains("..")
                    && domain
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
                    && !local
                        .chars()
                        .any(|c| c.is_whitespace() || c == '@' || c.is_control())
            });
        if valid {
            Ok(Self(email))
        } else {
            Err(format!("Invalid email address: {raw}"))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserName(String);

impl UserName {
    pub const MAX_CHARS: usize = 100;
    pub fn parse(raw: &str) -> Result<Self, String> {
        let name = raw.trim();
        if name.is_empty() {
            Err("Name must not be empty".into())
        } else if name.chars().count() > Self::MAX_CHARS {
            Err(format!(
                "Name must be at most {} characters",
                Self::MAX_CHARS
            ))
        } else if name.chars().any(char::is_control) {
            Err("Name must not contain control characters".into())
        } else {
            Ok(Self(name.to_owned()))
        }
    }
    pub fn into_inner(self) -> String {
        self.0
    }
}

/// A password acceptable to store (as an argon2 hash, never as itself).
pub struct Password(String);

impl Password {
    pub const MIN_CHARS: usize = 8;
    /// argon2 accepts long input, but hashing megabytes on request is a denial of service.
    pub const MAX_BYTES: usize = 1024;
    pub fn parse(raw: String) -> Result<Self, String> {
        if raw.chars().count() < Self::MIN_CHARS {
            Err(format!(
                "Password must be at least {} characters",
                Self::MIN_CHARS
            ))
        } else if raw.len() > Self::MAX_BYTES {
            Err(format!(
                "Password must be at most {} bytes",
                Self::MAX_BYTES
            ))
        } else {
            Ok(Self(raw))
        }
    }

    pub fn hash(&self) -> anyhow::Result<String> {
        use argon2::PasswordHasher;
        Ok(hasher()
            .hash_password(self.0.as_bytes())
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .to_string())
    }
}

/// argon2id with OWASP's 7 MiB, 5 passes, 1 lane: the cheat sheet's equal-strength alternative
/// to 19 MiB × 2 passes, for about the same CPU and a third of the memory per hash in flight.
/// Hashes made with other parameters (they are in the PHC string) still verify.
fn hasher() -> argon2::Argon2<'static> {
    let params = argon2::Params::new(7 * 1024, 5, 1, None).expect("valid argon2 parameters");
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
}

/// argon2 takes megabytes and tens of milliseconds of CPU per hash. Hashes run on a few threads
/// of their own, one per core unless [`set_hashing_threads`] says otherwise: more at once would
/// only pile up memory, and on the shared blocking pool every thread kept its own arena (a login
/// burst reached 870 MiB RSS).
type Job = Box<dyn FnOnce() + Send>;

/// How many threads hash passwords (0: one per core); read when the first hash runs.
static HASHING_THREADS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Sets how many passwords are hashed or verified at once (0: one per core), each holding its
/// 7 MiB block while it runs: fewer trades logins per second for memory. The threads are the
/// process's, started on the first hash: a call after that changes nothing.
pub fn set_hashing_threads(threads: usize) {
    HASHING_THREADS.store(threads, std::sync::atomic::Ordering::Relaxed);
}

static HASHERS: std::sync::LazyLock<std::sync::Mutex<std::sync::mpsc::Sender<Job>>> =
    std::sync::LazyLock::new(|| {
        // glibc serves a block of this size from the thread's arena once it has freed one
        // (its mmap threshold follows the largest freed block), and arenas keep what they
        // grew to: user-service sat at 260 MiB after a login burst. A fixed threshold keeps
        // argon2's blocks mapped per hash and returned at once.
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: mallopt only changes a malloc tunable; any value is valid.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        }
        let (sender, receiver) = std::sync::mpsc::channel::<Job>();
        let receiver = std::sync::Arc::new(std::sync::Mutex::new(receiver));
        let threads = match HASHING_THREADS.load(std::sync::atomic::Ordering::Relaxed) {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        for i in 0..threads {
            let receiver = receiver.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || {
                    loop {
                        let job = match receiver.lock() {
                            Ok(receiver) => receiver.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                        // A hash's peak is its block on top of whatever the heap holds: the
                        // arenas keep the free pages earlier bursts of requests left. Giving
                        // them back after each hash, off the request path, took user-service's
                        // peak under argon2 load (SQLite) from 40.0-40.6 to 39.2-39.9 MiB in
                        // four alternated pairs, logins a second unchanged (2026-11-25).
                        #[cfg(all(target_os = "linux", target_env = "gnu"))]
                        // SAFETY: malloc_trim only returns free memory to the system.
                        unsafe {
                            libc::malloc_trim(0);
                        }
                    }
                })
                .expect("spawning an argon2 thread");
        }
        std::sync::Mutex::new(sender)
    });

async fn off_the_workers<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> anyhow::Result<T> {
    let (done, result) = tokio::sync::oneshot::channel();
    HASHERS
        .lock()
        .map_err(|_| anyhow::anyhow!("argon2 threads unavailable"))?
        .send(Box::new(move || {
            // Its request gone (cancelled, or its connection closed) while it waited behind
            // others, a job is skipped: it would cost a hash's CPU and its 7 MiB block for an
            // answer no one reads.
            if done.is_closed() {
                return;
            }
            let _ = done.send(work());
        }))
        .map_err(|_| anyhow::anyhow!("argon2 threads stopped"))?;
    Ok(result.await?)
}

impl Password {
    pub async fn hash_in_background(self) -> anyhow::Result<String> {
        off_the_workers(move || self.hash()).await?
    }
}

/// [`verify_password`] under the same bound as hashing.
pub async fn verify_password_in_background(candidate: String, hash: String) -> bool {
    off_the_workers(move || verify_password(&candidate, &hash))
        .await
        .unwrap_or(false)
}

/// Compares `candidate` with a stored hash in constant time.
pub fn verify_password(candidate: &str, hash: &str) -> bool {
    use argon2::PasswordVerifier;
    argon2::password_hash::phc::PasswordHash::new(hash).is_ok_and(|parsed| {
        argon2::Argon2::default()
            .verify_password(candidate.as_bytes(), &parsed)
            .is_ok()
    })
}

#[cfg(test)]
mod tests {
    /// A job whose request is gone before a hashing thread takes it is skipped.
    #[tokio::test]
    async fn hashing_jobs_whose_request_is_gone_are_skipped() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        // More jobs than there are hashing threads, each a while: every thread is busy when
        // the next job is queued and abandoned.
        let mut busy: Vec<_> = (0..16)
            .map(|_| {
                Box::pin(off_the_workers(|| {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }))
            })
            .collect();
        for job in &mut busy {
            assert!(futures_util::poll!(job).is_pending(), "queued");
        }
        let ran = Arc::new(AtomicBool::new(false));
        let flag = ran.clone();
        let mut abandoned = Box::pin(off_the_workers(move || flag.store(true, Ordering::SeqCst)));
        assert!(futures_util::poll!(&mut abandoned).is_pending(), "queued");
        drop(abandoned);
        for job in busy {
            job.await.expect("ran");
        }
        // Queued after it, so the threads have passed it.
        off_the_workers(|| ()).await.expect("ran");
        assert!(!ran.load(Ordering::SeqCst), "the abandoned job was skipped");
    }

    use super::*;

    #[test]
    fn emails_are_lower_cased_and_checked() {
        assert_eq!(
            Email::parse(" Ada@Example.COM ").unwrap().as_str(),
            "ada@example.com"
        );
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "ada@ex..com",
            "a da@example.com",
            "ada@-.c m",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(UserName::parse("  Ada ").unwrap().into_inner(), "Ada");
        assert!(UserName::parse("   ").is_err());
        assert!(UserName::parse(&"x".repeat(101)).is_err());
    }

    #[test]
    fn passwords_hash_and_verify() {
        assert!(Password::parse("short".into()).is_err());
        let hash = Password::parse("correct horse".into())
            .unwrap()
            .hash()
            .unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("wrong horse", &hash));
        assert!(!verify_password("x", "not a hash"));
    }
}
