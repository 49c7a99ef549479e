//! `fchm demo`: one process runs the broker, fchmd on the test scene and
//! the server; the dashboard's API shows the device live, with detections,
//! stats and a picture, and SIGTERM stops it cleanly.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::daemon::{free_port, signal};
use common::server::{get, get_json, post};

#[test]
fn demo_runs_broker_daemon_and_server_in_one_process() {
    let bundle = common::bundle_dir();
    let dir = tempfile::tempdir().unwrap();
    let demo_conf = std::fs::read_to_string(common::repo_root().join("config/fchmd-demo.toml"))
        .unwrap()
        .replace(
            "dir = \"target/demo-spool\"",
            &format!("dir = \"{}/spool\"", dir.path().display()),
        );
    let conf = dir.path().join("demo.toml");
    std::fs::write(&conf, demo_conf).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_fchm"))
        .arg("demo")
        .arg("--config")
        .arg(&conf)
        .arg("--bundle")
        .arg(&bundle)
        .args(["--mqtt", &format!("127.0.0.1:{}", free_port())])
        .args(["--http", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.path().join("demo.log")).unwrap())
        .spawn()
        .expect("start fchm demo");
    let log = || std::fs::read_to_string(dir.path().join("demo.log")).unwrap_or_default();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| {
            l.strip_prefix(fchm::server::READY_PREFIX)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| panic!("no dashboard line; log:\n{}", log()));
    let http = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap();

    let t = Instant::now();
    let detail = loop {
        let devices = get_json(http, "/api/devices");
        let ready = devices.as_array().unwrap().iter().any(|d| {
            d["id"] == "demo" && d["online"] == true && d["frames"].as_u64().unwrap_or(0) >= 2
        });
        if ready {
            let d = get_json(http, "/api/devices/demo");
            if !d["rate_history"].as_array().unwrap().is_empty() {
                break d;
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(180),
            "the demo device never showed decoded frames and stats: {devices}\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(detail["state"]["rate_mode"], "auto");
    assert!(detail["latest"]["detections"].is_array());
    assert!(detail["stats"]["fps"]["captured"].as_f64().unwrap() > 0.0);
    assert_eq!(get(http, "/api/devices/demo/latest.jpg").0, 200);
    let (status, _, page) = get(http, "/");
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&page).contains("app.js"));

    // "Look now", as the dashboard does it: set/aux once through the server,
    // exactly one aux frame comes back, and the server renders its human view.
    assert!(detail["aux_sequences"].as_array().unwrap().is_empty());
    let (status, _, body) = post(
        http,
        "/api/devices/demo/set",
        r#"{"key":"aux","value":"once"}"#,
    );
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
    let t = Instant::now();
    let seq = loop {
        let d = get_json(http, "/api/devices/demo");
        if let Some(s) = d["aux_sequences"].as_array().unwrap().first() {
            assert_eq!(d["state"]["aux"], "once");
            break s.as_u64().unwrap();
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "no aux frame came back: {d}\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    // A few more frames go by: still exactly one aux frame.
    let frames = get_json(http, "/api/devices/demo")["frames"]
        .as_u64()
        .unwrap();
    let t = Instant::now();
    while get_json(http, "/api/devices/demo")["frames"]
        .as_u64()
        .unwrap()
        < frames + 3
    {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "frames stopped:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(
        get_json(http, "/api/devices/demo")["aux_sequences"],
        serde_json::json!([seq])
    );
    let (status, headers, jpg) = get(
        http,
        &format!("/api/devices/demo/frames/{seq}.jpg?mode=fast"),
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&jpg));
    assert!(headers
        .iter()
        .any(|(k, v)| k == "x-fchm-view" && v == "fast"));
    assert!(image::load_from_memory(&jpg).is_ok());

    signal(&child, libc::SIGTERM);
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "demo did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "demo exited with {status}:\n{}", log());
}
