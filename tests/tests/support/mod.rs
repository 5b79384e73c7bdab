//! Real processes on loopback: the `nasflat-host` and `nasflat-agent`
//! binaries of this build, an HTTP client for the JSON API, and a lock that
//! runs the heavy end-to-end tests one at a time (2 cores).
#![allow(clippy::unwrap_used, dead_code)] // helpers outside #[test] fns; not every file uses all

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) const ADMIN: &str = "admin-token-e2e";
pub(crate) const ENROL: &str = "enrol-token-e2e";
/// The hosts' viewer token: [`Api`] reads with it.
pub(crate) const VIEWER: &str = "viewer-token-e2e";

/// One heavy test at a time.
pub(crate) static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub(crate) async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    SERIAL.lock().await
}

/// A binary of this workspace: `NASFLAT_<NAME>_BIN` if set, else next to
/// the test's `deps/` directory (`cargo test --workspace` builds both).
pub(crate) fn bin(name: &str) -> PathBuf {
    let var = format!(
        "NASFLAT_{}_BIN",
        name.trim_start_matches("nasflat-").to_uppercase()
    );
    if let Ok(p) = std::env::var(&var) {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} not found: run `cargo build -p nasflat-host -p nasflat-agent` (cargo test --workspace builds it) or set {var}",
        path.display()
    );
    path
}

/// Pretrained checkpoints shared by every e2e test and run (same settings ->
/// same cache key -> pretrained once).
pub(crate) fn checkpoint_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("nasflat-e2e-checkpoints")
}

/// A `nasflat-host serve` process.
pub(crate) struct HostProcess {
    child: Child,
    pub(crate) url: String,
    pub(crate) port: u16,
    pub(crate) log: PathBuf,
}

impl HostProcess {
    /// Starts the host on `port` (0: any) with a data dir, and waits for it to listen.
    pub(crate) fn start(data_dir: &Path, port: u16, extra: &[&str]) -> HostProcess {
        Self::try_start(data_dir, port, extra)
            .unwrap_or_else(|log| panic!("host exited before listening; log:\n{log}"))
    }

    /// Starts the host on a fixed port below the kernel's ephemeral range, so
    /// it can be restarted on the same port (a client retrying a dead
    /// ephemeral port can end up holding it itself).
    pub(crate) fn start_fixed(data_dir: &Path, extra: &[&str]) -> HostProcess {
        for attempt in 0..50u32 {
            let port = 20_000 + ((std::process::id() * 7919 + attempt * 131) % 10_000) as u16;
            if let Ok(h) = Self::try_start(data_dir, port, extra) {
                return h;
            }
        }
        panic!("no free port for the host");
    }

    /// Restarts on `port`, retrying while the old socket is released.
    pub(crate) fn restart(data_dir: &Path, port: u16, extra: &[&str]) -> HostProcess {
        let mut last = String::new();
        for _ in 0..40 {
            match Self::try_start(data_dir, port, extra) {
                Ok(h) => return h,
                Err(log) => last = log,
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!("host did not restart on port {port}:\n{last}");
    }

    fn try_start(data_dir: &Path, port: u16, extra: &[&str]) -> Result<HostProcess, String> {
        std::fs::create_dir_all(data_dir).unwrap();
        static STARTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = data_dir.join(format!("host-{n}.log"));
        let mut child = Command::new(bin("nasflat-host"))
            .arg("serve")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--checkpoints")
            .arg(checkpoint_dir())
            .args(["--admin-token", ADMIN, "--enrol-token", ENROL])
            .args(["--viewer-token", VIEWER])
            .args(["--pretrain-epochs", "20", "--source-samples", "25"])
            .args(["--lease-secs", "60", "--poll-secs", "1"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .env("RUST_LOG", "info")
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let url = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(url) = line.strip_prefix("nasflat-host listening on ") {
                        break url.trim().to_string();
                    }
                }
                _ => {
                    let _ = child.wait();
                    return Err(std::fs::read_to_string(&log).unwrap_or_default());
                }
            }
        };
        // Keep draining stdout so the host never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let port = url.rsplit(':').next().unwrap().parse().unwrap();
        Ok(HostProcess {
            child,
            url,
            port,
            log,
        })
    }

    /// SIGKILL: no shutdown handler runs.
    pub(crate) fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Runs `nasflat-agent run` against `url` until it is idle; returns its stderr.
pub(crate) fn run_agent(url: &str, state_dir: &Path) -> String {
    let out = agent_command(url, state_dir).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "agent failed: {err}");
    err
}

pub(crate) fn agent_command(url: &str, state_dir: &Path) -> Command {
    let mut c = Command::new(bin("nasflat-agent"));
    c.args([
        "run",
        "--host",
        url,
        "--token",
        ENROL,
        "--name",
        "e2e-board",
    ])
    .arg("--state-dir")
    .arg(state_dir)
    .args([
        "--exit-when-idle",
        "--max-retries",
        "60",
        "--backoff-ms",
        "50",
        "--backoff-max-ms",
        "500",
    ])
    .env("RUST_LOG", "info")
    .stdin(Stdio::null());
    c
}

/// JSON over HTTP.
pub(crate) struct Api {
    pub(crate) http: reqwest::Client,
    pub(crate) base: String,
}

impl Api {
    pub(crate) fn new(base: &str) -> Api {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Api {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .unwrap(),
            base: base.trim_end_matches('/').to_string(),
        }
    }

    /// A read with the viewer token.
    pub(crate) async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .header("authorization", format!("Bearer {VIEWER}"))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let bytes = r.bytes().await.unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        )
    }

    /// A POST with `token` (none: the viewer token).
    pub(crate) async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        body: &serde_json::Value,
    ) -> (u16, serde_json::Value) {
        // No token given: a read (prediction batches), with the viewer token.
        let token = token.unwrap_or(VIEWER);
        let req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {token}"))
            .body(serde_json::to_vec(body).unwrap());
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let bytes = r.bytes().await.unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        )
    }

    /// The only agent device.
    pub(crate) async fn agent_device(&self) -> Option<serde_json::Value> {
        let (_, v) = self.get("/v1/devices?kind=agent").await;
        v.as_array().and_then(|a| a.first().cloned())
    }

    /// Waits until a device has a served predictor; returns its version.
    pub(crate) async fn wait_predictor(&self, device: &str, limit: Duration) -> String {
        let started = Instant::now();
        loop {
            let (_, d) = self.get(&format!("/v1/devices/{device}")).await;
            if let Some(v) = d["predictors"][0]["version"].as_str() {
                return v.to_string();
            }
            if let Some(t) = d["transfers"].as_array().and_then(|t| t.first())
                && t["state"] == "failed"
            {
                panic!("transfer failed: {t}");
            }
            assert!(
                started.elapsed() < limit,
                "no predictor after {limit:?}: {d}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}
