//! A service binary running as its own OS process, as it runs in a pod.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The binaries `cargo test --workspace` built next to this test executable.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target profile folder");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} not built: run `cargo test --workspace` (or `make test`)",
        path.display()
    );
    path
}

pub use service_kit::testing::free_port;

pub struct ServiceProcess {
    pub name: &'static str,
    pub port: u16,
    pub log: PathBuf,
    env: Vec<(String, String)>,
    child: Child,
}

fn spawn(name: &str, log: &PathBuf, env: &[(String, String)]) -> Child {
    // Appends, so the log of a restarted process keeps what its predecessor wrote.
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    Command::new(binary(name))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("CONFIG_DIR", "/nonexistent")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(Stdio::from(file.try_clone().expect("log file")))
        .stderr(Stdio::from(file))
        .spawn()
        .unwrap_or_else(|e| panic!("starting {name}: {e}"))
}

impl ServiceProcess {
    /// Starts `name` with `env` (on top of a clean slate: no config files) and waits until its
    /// `/ready` answers 200.
    pub async fn start(name: &'static str, port: u16, env: &[(String, String)]) -> Self {
        let log = service_kit::testing::scratch_dir("e2e-logs").join(format!("{name}.log"));
        let child = spawn(name, &log, env);
        let mut process = Self {
            name,
            port,
            log,
            env: env.to_vec(),
            child,
        };
        process.wait_ready(Duration::from_secs(30)).await;
        process
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the process (and its predecessors, across restarts) wrote.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL, and waits for the process to be gone: no shutdown hook runs.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the binary again with the same environment and port (after [`Self::kill`] or
    /// [`Self::terminate`]) and waits until `/ready` answers 200.
    pub async fn restart(&mut self) {
        self.kill();
        self.child = spawn(self.name, &self.log, &self.env);
        self.wait_ready(Duration::from_secs(30)).await;
    }

    /// SIGSTOP: the port still accepts connections (the kernel queues them) but nothing
    /// answers, as with a hung process. [`Self::resume`] continues it.
    pub fn suspend(&self) {
        let _ = Command::new("kill")
            .args(["-STOP", &self.child.id().to_string()])
            .status();
    }

    pub fn resume(&self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .status();
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Until `/ready` answers 200 naming this service, and the process is still running (a
    /// process that could not listen exits: whatever answered was something else).
    async fn wait_ready(&mut self, timeout: Duration) {
        let client = reqwest::Client::new();
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("process status") {
                panic!("{} exited ({status}):\n{}", self.name, self.log_tail());
            }
            if let Ok(response) = client
                .get(self.url("/ready"))
                .timeout(Duration::from_secs(1))
                .send()
                .await
                && response.status().is_success()
                && let Ok(body) = response.json::<serde_json::Value>().await
                && body["service"] == self.name
                && self.child.try_wait().expect("process status").is_none()
            {
                return;
            }
            assert!(
                started.elapsed() < timeout,
                "{} not ready after {timeout:?}:\n{}",
                self.name,
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends SIGTERM and waits for the exit; returns how long it took and whether it exited 0.
    pub async fn terminate(&mut self, timeout: Duration) -> (Duration, bool) {
        let started = Instant::now();
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        loop {
            if let Some(status) = self.child.try_wait().expect("process status") {
                return (started.elapsed(), status.success());
            }
            assert!(
                started.elapsed() < timeout,
                "{} still running {timeout:?} after SIGTERM",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        // SIGKILL ends a suspended child too; `Child::kill` does not signal one already reaped.
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A failing test says what its services last said (the log folder outlives the run).
        if std::thread::panicking() {
            eprintln!(
                "--- {} ({}), last lines:\n{}",
                self.name,
                self.log.display(),
                self.log_tail()
            );
        }
    }
}
