//! The server as a real process: started from the built `crm-server` binary on a free
//! loopback port, waited for until `GET /health` answers 200, its output captured in a
//! log file, killed with SIGKILL (never a graceful stop) and started again.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a start may take: migrations on a fresh schema on a loaded 2-core machine.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// One server process, and how to start it again.
#[derive(Debug)]
pub struct ServerProcess {
    label: String,
    env: Vec<(String, String)>,
    child: Option<Child>,
    port: u16,
    log_path: PathBuf,
}

/// A port no listener holds right now. The server binds it a moment later; another
/// process taking it in between would show as a start failure naming the port.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap_or_else(|e| panic!("cannot bind a loopback port: {e}"));
    listener
        .local_addr()
        .unwrap_or_else(|e| panic!("no local address: {e}"))
        .port()
}

impl ServerProcess {
    /// Starts `crm-server` with `env` (added to this process's environment; the bind
    /// address is set here) and waits until it is healthy. `label` names its log file.
    pub async fn start(label: &str, env: Vec<(String, String)>) -> Self {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("crm-server-logs");
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3f");
        let mut server = Self {
            label: label.to_owned(),
            env,
            child: None,
            port: 0,
            log_path: dir.join(format!("{label}-{stamp}.log")),
        };
        server.spawn_and_wait().await;
        server
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The path of the log file (every start of this server appends to it).
    pub fn log_path(&self) -> &std::path::Path {
        &self.log_path
    }

    /// The captured output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The process id of the running process.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the process with SIGKILL (no shutdown hook runs) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // std's kill is SIGKILL on Unix.
            let _ = child.kill();
            let _ = child.wait();
            self.note(&format!(
                "--- killed with SIGKILL at {}",
                chrono::Utc::now()
            ));
        }
    }

    /// Starts the process again (on a new port) and waits until it is healthy.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn_and_wait().await;
    }

    fn note(&self, line: &str) {
        if let Ok(mut file) = OpenOptions::new().append(true).open(&self.log_path) {
            let _ = writeln!(file, "{line}");
        }
    }

    async fn spawn_and_wait(&mut self) {
        self.port = free_port();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", self.log_path.display()));
        let err = log
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot share the log file: {e}"));
        let mut command = Command::new(env!("CARGO_BIN_EXE_crm-server"));
        command
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env(super::env::BIND, format!("127.0.0.1:{}", self.port))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err));
        self.note(&format!(
            "--- {} starting on port {} at {}",
            self.label,
            self.port,
            chrono::Utc::now()
        ));
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start crm-server: {e}"));
        self.child = Some(child);
        self.wait_healthy().await;
    }

    async fn wait_healthy(&mut self) {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_else(|e| panic!("no HTTP client: {e}"));
        let url = format!("{}/health", self.base_url());
        let started = Instant::now();
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "{} exited with {status} before it was healthy; its log ({}):\n{}",
                    self.label,
                    self.log_path.display(),
                    tail(&self.log(), 60)
                );
            }
            if let Ok(response) = client.get(&url).send().await
                && response.status().is_success()
            {
                return;
            }
            if started.elapsed() > START_TIMEOUT {
                self.kill();
                panic!(
                    "{} did not answer GET /health with 200 within {START_TIMEOUT:?}; its log \
                     ({}):\n{}",
                    self.label,
                    self.log_path.display(),
                    tail(&self.log(), 60)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Appends `text` to a file beside the server logs, for figures a test reports.
pub fn write_report(name: &str, text: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    if let Ok(mut file) = File::create(&path) {
        let _ = file.write_all(text.as_bytes());
    }
    path
}
