//! `fchm-server` as a child process, plain HTTP/1.1 against it, and frame
//! payloads of the bundled test scene to feed it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fchm::model::{Bundle, Role};

use super::daemon::signal;

pub struct Server {
    child: Option<Child>,
    pub http: SocketAddr,
    pub instance: String,
    log: tempfile::NamedTempFile,
}

impl Server {
    /// Start and wait until it listens and is subscribed (`/healthz` 200).
    /// `FCHM_SERVER_BACKEND` (default `tract`) picks the inference backend,
    /// so the same tests run on ONNX Runtime in a `--features ort` build.
    pub fn start(broker_port: u16, bundle: &Path, instance: &str, extra: &[&str]) -> Self {
        let log = tempfile::NamedTempFile::new().expect("log file");
        let backend = std::env::var("FCHM_SERVER_BACKEND").unwrap_or_else(|_| "tract".into());
        let mut child = Command::new(env!("CARGO_BIN_EXE_fchm-server"))
            .args(["--backend", &backend])
            .args(["--broker", &format!("mqtt://127.0.0.1:{broker_port}")])
            .arg("--bundle")
            .arg(bundle)
            .args(["--http", "127.0.0.1:0", "--instance-id", instance])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(log.reopen().expect("log file"))
            .spawn()
            .expect("start fchm-server");
        let out = child.stdout.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix(fchm::server::READY_PREFIX) {
                    let _ = tx.send(url.to_owned());
                }
            }
        });
        let read_log = |l: &tempfile::NamedTempFile| std::fs::read_to_string(l.path()).unwrap();
        let url = rx
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("fchm-server {instance} never ready:\n{}", read_log(&log)));
        let http: SocketAddr = url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .expect("address in the ready line");
        let s = Self {
            child: Some(child),
            http,
            instance: instance.to_owned(),
            log,
        };
        let t = std::time::Instant::now();
        while get(s.http, "/healthz").0 != 200 {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "{instance} never subscribed:\n{}",
                s.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        s
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(&c, libc::SIGKILL);
            let _ = c.wait();
        }
    }

    /// The value of one sample line of `/metrics`, e.g.
    /// `fchm_server_frames_refused_total{cause="malformed"}`; 0 if absent.
    pub fn metric(&self, series: &str) -> f64 {
        let (_, _, body) = get(self.http, "/metrics");
        String::from_utf8_lossy(&body)
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Status, headers (names lower-case) and body.
pub type Reply = (u16, Vec<(String, String)>, Vec<u8>);

fn request(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> Reply {
    let mut s = TcpStream::connect(addr).expect("connect to fchm-server");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read reply");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v == "chunked")
    {
        body = dechunk(&body);
    }
    (status, headers, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n").expect("chunk size");
        let size = usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap().trim(), 16)
            .expect("hex chunk size");
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[eol + 2 + size + 2..];
    }
}

pub fn get(addr: SocketAddr, path: &str) -> Reply {
    request(addr, "GET", path, None)
}

pub fn get_json(addr: SocketAddr, path: &str) -> serde_json::Value {
    let (status, _, body) = get(addr, path);
    assert_eq!(
        status,
        200,
        "GET {path}: {}",
        String::from_utf8_lossy(&body)
    );
    serde_json::from_slice(&body).expect("JSON body")
}

pub fn post(addr: SocketAddr, path: &str, body: &str) -> Reply {
    request(addr, "POST", path, Some(body))
}

/// `n` frames of the bundled test scene, sequence numbers `first..first+n`.
pub fn scene_frames(bundle: &Path, first: u64, n: usize) -> Vec<(u64, Vec<u8>)> {
    let b = Bundle::load(bundle, Role::Edge).expect("edge bundle");
    fchm::bench::server::scene_frames(&b, first, n).expect("encoding the scene")
}

/// Publish raw bytes with `mosquitto_pub` (QoS 1) from stdin.
pub fn publish_bytes(port: u16, topic: &str, payload: &[u8]) {
    let mut c = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "1"])
        .args(["-t", topic, "-s"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("start mosquitto_pub");
    c.stdin.take().unwrap().write_all(payload).unwrap();
    assert!(
        c.wait().unwrap().success(),
        "mosquitto_pub to {topic} failed"
    );
}
