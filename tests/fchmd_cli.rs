//! The `fchmd` binary's command line: a bad config exits 78 (EX_CONFIG) and
//! names the key, for files and for overrides; `--check-config` accepts a
//! good file.

mod common;

use std::process::Command;

fn fchmd(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_fchmd"))
        .args(args)
        .output()
        .expect("run fchmd")
}

#[test]
fn a_bad_config_exits_78_and_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[rate]\ntarget_kbps = -5\n").unwrap();
    for args in [
        vec!["--check-config", bad.to_str().unwrap()],
        vec!["--config", bad.to_str().unwrap()],
    ] {
        let out = fchmd(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{args:?}: {err}");
        assert!(
            err.contains("rate.target_kbps") && err.contains("-5"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn a_bad_override_exits_78_and_names_the_key() {
    let out = fchmd(&[
        "--broker",
        "http://nowhere",
        "--check-config",
        "config/fchmd-demo.toml",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.contains("mqtt.broker") && err.contains("http://nowhere"),
        "{err}"
    );
}

#[test]
fn check_config_accepts_the_demo_config_with_a_real_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    let text = std::fs::read_to_string(common::repo_root().join("config/fchmd-demo.toml")).unwrap();
    let bundle = common::bundle_dir();
    let text = text.replace(
        "bundle = \"models/centernet-vfcn\"",
        &format!("bundle = \"{}\"", bundle.display()),
    );
    std::fs::write(&good, text).unwrap();
    let out = fchmd(&["--check-config", good.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));
}
