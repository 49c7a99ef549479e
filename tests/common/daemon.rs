//! Real brokers and a real daemon for the integration tests: Debian's
//! Mosquitto on a free port, `fchmd` as a child process, and
//! `mosquitto_sub` / `mosquitto_pub` as the independent clients.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const MOSQUITTO: &str = "/usr/sbin/mosquitto";

/// The smoke machine bundle (`$FCHM_SMOKE_BUNDLE`) and a human-layer bundle
/// built for it (`$FCHM_SMOKE_HVCN`); `None` when the latter is not set.
pub fn smoke_aux_bundles() -> Option<(PathBuf, PathBuf)> {
    let human = PathBuf::from(std::env::var_os("FCHM_SMOKE_HVCN")?);
    let machine = std::env::var_os("FCHM_SMOKE_BUNDLE")
        .map(PathBuf::from)
        .expect(
        "FCHM_SMOKE_HVCN is set but FCHM_SMOKE_BUNDLE (the machine bundle it pairs with) is not",
    );
    for dir in [&machine, &human] {
        assert!(
            dir.join("manifest.json").exists(),
            "{} has no manifest.json",
            dir.display()
        );
    }
    Some((machine, human))
}

/// The JSON payloads among `msgs` (stats messages).
pub fn stats_of(msgs: &[Msg]) -> Vec<serde_json::Value> {
    msgs.iter()
        .filter_map(|m| serde_json::from_slice(&m.payload).ok())
        .collect()
}

fn need(bin: &str, package: &str) {
    assert!(
        Path::new(bin).exists() || which(bin),
        "{bin} not found: apt-get install {package} (.ci/run installs it)"
    );
}

fn which(bin: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {bin}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn wait_for_port(port: u16, timeout: Duration) -> bool {
    let t = Instant::now();
    while t.elapsed() < timeout {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A Mosquitto broker with persistence in its own folder, so sessions and
/// queued messages survive a stop and start.
pub struct Mosquitto {
    pub port: u16,
    child: Option<Child>,
    conf: PathBuf,
    pub dir: tempfile::TempDir,
}

impl Mosquitto {
    pub fn start() -> Self {
        Self::start_with("")
    }

    /// Start with `extra` lines appended to the configuration (e.g. a
    /// second listener).
    pub fn start_with(extra: &str) -> Self {
        need(MOSQUITTO, "mosquitto");
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n\
                 persistence_location {}/\nautosave_interval 1\nmax_queued_messages 100000\n\
                 log_dest file {}/mosquitto.log\n{extra}",
                dir.path().display(),
                dir.path().display()
            ),
        )
        .expect("write mosquitto.conf");
        let mut m = Self {
            port,
            child: None,
            conf,
            dir,
        };
        m.resume();
        m
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// Start (again) on the same port with the same persistence file.
    pub fn resume(&mut self) {
        let child = Command::new(MOSQUITTO)
            .arg("-c")
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto");
        self.child = Some(child);
        assert!(
            wait_for_port(self.port, Duration::from_secs(10)),
            "mosquitto did not listen on {}",
            self.port
        );
    }

    /// SIGTERM (Mosquitto saves its persistence file) and wait.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(&c, libc::SIGTERM);
            let _ = c.wait();
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as libc::pid_t, sig);
    }
}

/// `fchmd` as a child process, logging to a file in its work folder.
pub struct Daemon {
    pub child: Option<Child>,
    pub dir: tempfile::TempDir,
}

impl Daemon {
    /// Start with a config of `extra` TOML appended to the test defaults
    /// (test scene at `fps`, stderr logs, a spool in the work folder).
    pub fn start(device: &str, broker_url: &str, bundle: &Path, body: &str) -> Self {
        Self::start_with_mqtt(device, broker_url, bundle, body, "")
    }

    /// The same with `mqtt` lines added to the `[mqtt]` section (TLS files).
    pub fn start_with_mqtt(
        device: &str,
        broker_url: &str,
        bundle: &Path,
        body: &str,
        mqtt: &str,
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let conf = dir.path().join("fchmd.toml");
        std::fs::write(
            &conf,
            format!(
                "device_id = \"{device}\"\nbundle = \"{}\"\n{body}\n\
                 [mqtt]\nbroker = \"{broker_url}\"\nkeep_alive_s = 5\nreconnect_min_ms = 200\nreconnect_max_ms = 2000\n{mqtt}\n\
                 [spool]\ndir = \"{}/spool\"\n[log]\ntarget = \"stderr\"\nlevel = \"info\"\n",
                bundle.display(),
                dir.path().display()
            ),
        )
        .expect("write fchmd.toml");
        let log = std::fs::File::create(dir.path().join("fchmd.log")).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_fchmd"))
            .arg("--config")
            .arg(&conf)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start fchmd");
        Self {
            child: Some(child),
            dir,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("fchmd.log")).unwrap_or_default()
    }

    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(&c, libc::SIGKILL);
            let _ = c.wait();
        }
    }

    /// SIGTERM; returns the final accounting JSON it printed.
    pub fn stop(&mut self) -> serde_json::Value {
        let c = self.child.take().expect("daemon running");
        signal(&c, libc::SIGTERM);
        let out = c.wait_with_output().expect("wait fchmd");
        assert!(
            out.status.success(),
            "fchmd exited with {}:\n{}",
            out.status,
            self.log()
        );
        fchm::edge::parse_final_accounting(&String::from_utf8_lossy(&out.stdout))
            .unwrap_or_else(|| panic!("no final accounting line; log:\n{}", self.log()))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A `mosquitto_sub` printing `%t %r %x` (topic, retained flag, payload in hex) per message.
pub struct Sub {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

pub struct Msg {
    pub topic: String,
    pub retained: bool,
    pub payload: Vec<u8>,
}

impl Sub {
    pub fn start(port: u16, topic: &str, extra: &[&str]) -> Self {
        need("mosquitto_sub", "mosquitto-clients");
        let mut child = Command::new("mosquitto_sub")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-q",
                "1",
                "-t",
                topic,
            ])
            .args(["-F", "%t %r %x"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto_sub");
        let out = child.stdout.take().expect("piped");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Self { child, lines }
    }

    /// The next message within `timeout`.
    pub fn next(&self, timeout: Duration) -> Option<Msg> {
        let line = self.lines.recv_timeout(timeout).ok()?;
        let mut parts = line.splitn(3, ' ');
        let topic = parts.next()?.to_string();
        let retained = parts.next()? == "1";
        let payload = hex::decode(parts.next().unwrap_or("")).ok()?;
        Some(Msg {
            topic,
            retained,
            payload,
        })
    }

    /// Every message that arrives within `window`.
    pub fn drain(&self, window: Duration) -> Vec<Msg> {
        let end = Instant::now() + window;
        let mut v = Vec::new();
        while let Some(m) = self.next(end.saturating_duration_since(Instant::now())) {
            v.push(m);
        }
        v
    }
}

impl Drop for Sub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn mosquitto_pub(port: u16, topic: &str, message: &str) {
    need("mosquitto_pub", "mosquitto-clients");
    let st = Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-q",
            "1",
            "-t",
            topic,
            "-m",
            message,
        ])
        .status()
        .expect("run mosquitto_pub");
    assert!(st.success(), "mosquitto_pub {topic} failed");
}
