//! A NATS server with JetStream as a child process of the test, on a port and store of its
//! own, so a test can stop it (an outage) and start it again on the same port and store.
//!
//! The binary is `NATS_SERVER_BIN` when set (`scripts/test.sh` exports it), else the first
//! `nats-server` found on `PATH`, `/usr/sbin` or `/usr/bin`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::free_port;

pub fn nats_server_binary() -> PathBuf {
    if let Ok(path) = std::env::var("NATS_SERVER_BIN")
        && !path.is_empty()
    {
        return PathBuf::from(path);
    }
    let path = std::env::var("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|dir| dir.join("nats-server"))
        .find(|candidate| candidate.is_file())
        .expect("nats-server not found: set NATS_SERVER_BIN or put nats-server on PATH")
}

pub struct NatsServer {
    pub port: u16,
    pub store: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts on a free loopback port with a fresh JetStream store; returns once it accepts
    /// connections.
    pub async fn start() -> Self {
        let dir = service_kit::testing::scratch_dir("nats");
        let mut server = Self {
            port: free_port(),
            store: dir.join("store"),
            log: dir.join("nats-server.log"),
            child: None,
        };
        server.spawn().await;
        server
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    async fn spawn(&mut self) {
        let started = Instant::now();
        loop {
            let child = Command::new(nats_server_binary())
                .args([
                    "-js",
                    "-a",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-sd",
                ])
                .arg(&self.store)
                .arg("-l")
                .arg(&self.log)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("starting nats-server");
            self.child = Some(child);
            if self.wait_listening(Duration::from_secs(10)).await {
                return;
            }
            // The port may still be held by the previous instance: try again, bounded.
            self.kill();
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "nats-server did not listen on {}: {}",
                self.port,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }

    async fn wait_listening(&mut self, timeout: Duration) -> bool {
        let started = Instant::now();
        while started.elapsed() < timeout {
            if let Some(child) = self.child.as_mut()
                && child.try_wait().ok().flatten().is_some()
            {
                return false;
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    /// Stops the server (SIGTERM, then SIGKILL after 5 s) and waits until it is gone: clients
    /// see their connection drop and reconnects are refused.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let started = Instant::now();
        loop {
            if child.try_wait().ok().flatten().is_some() {
                return;
            }
            if started.elapsed() > Duration::from_secs(5) {
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts again on the same port and store.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.spawn().await;
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}
