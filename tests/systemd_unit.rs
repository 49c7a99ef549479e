//! The shipped unit `systemd/fchmd.service` is valid (`systemd-analyze
//! verify`, with no warning about it) and hardened (`systemd-analyze security`
//! exposure below 3.0, "OK"). Needs `systemd-analyze`; without it these tests
//! fail rather than pass unchecked.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use fchm::config::ConfigError;

const UNIT: &str = include_str!("../systemd/fchmd.service");
const UNIT_NAME: &str = "fchmd.service";
/// On systemd-analyze's 0-10 scale the unit scores 1.5 ("OK"); the bound
/// leaves room for one justified relaxation but not for a lost sandbox.
const MAX_EXPOSURE: f64 = 3.0;

fn analyze(args: &[&str]) -> Output {
    match Command::new("systemd-analyze").args(args).output() {
        Ok(out) => out,
        Err(e) => panic!(
            "cannot run systemd-analyze ({e}): install systemd (Debian: apt-get install systemd); \
             CI installs it, and the unit must not go unchecked"
        ),
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The unit with ExecStart pointing at the freshly built binary (verify
/// checks that the executable exists), in a temp dir under its own name.
fn unit_under_test(dir: &Path) -> PathBuf {
    let bin = env!("CARGO_BIN_EXE_fchmd");
    let mut exec_lines = 0;
    let unit: String = UNIT
        .lines()
        .map(|line| match line.strip_prefix("ExecStart=") {
            Some(command) => {
                exec_lines += 1;
                let args = command.split_once(' ').map_or("", |(_, args)| args);
                format!("ExecStart={bin} {args}\n")
            }
            None => format!("{line}\n"),
        })
        .collect();
    assert_eq!(exec_lines, 1, "expected exactly one ExecStart= line");
    let path = dir.join(UNIT_NAME);
    std::fs::write(&path, unit).expect("write unit");
    path
}

#[test]
fn unit_verifies_without_warnings() {
    let dir = tempfile::tempdir().expect("temp dir");
    let unit = unit_under_test(dir.path());
    let out = analyze(&["verify", unit.to_str().expect("UTF-8 temp path")]);
    let output = text(&out);
    println!("systemd-analyze verify:\n{output}");
    assert!(out.status.success(), "verify failed:\n{output}");
    // verify exits 0 on unknown or misspelt directives and only warns; a
    // silently ignored hardening line is exactly what this test must catch.
    let about_us: Vec<&str> = output.lines().filter(|l| l.contains(UNIT_NAME)).collect();
    assert!(
        about_us.is_empty(),
        "warnings about the unit: {about_us:#?}"
    );
}

#[test]
fn unit_exposure_is_ok() {
    let version = text(&analyze(&["--version"]));
    println!("{}", version.lines().next().unwrap_or(""));
    let dir = tempfile::tempdir().expect("temp dir");
    let unit = unit_under_test(dir.path());
    // --offline (systemd >= 250) rates the file itself instead of a loaded unit.
    let out = analyze(&[
        "security",
        "--offline=yes",
        "--no-pager",
        unit.to_str().expect("UTF-8 temp path"),
    ]);
    let output = text(&out);
    println!("systemd-analyze security --offline=yes:\n{output}");
    assert!(out.status.success(), "security failed:\n{output}");
    let marker = format!("Overall exposure level for {UNIT_NAME}: ");
    let score: f64 = output
        .lines()
        .find_map(|l| l.split_once(marker.as_str()).map(|(_, rest)| rest))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure score in:\n{output}"));
    println!("exposure score: {score}");
    assert!(
        score < MAX_EXPOSURE,
        "exposure {score} >= {MAX_EXPOSURE}:\n{output}"
    );
}

/// Directives the daemon's code relies on; a "cleanup" of the unit that drops
/// one breaks readiness, the watchdog, the camera or the spool.
#[test]
fn unit_keeps_the_directives_the_daemon_relies_on() {
    let settings: Vec<(&str, &str)> = UNIT
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .collect();
    let exit_code = format!("{}", ConfigError::EXIT_CODE);
    for (key, value) in [
        ("Type", "notify"),
        ("NotifyAccess", "main"),
        ("WatchdogSec", "30"),
        (
            "ExecStart",
            "/usr/local/bin/fchmd --config /etc/fchmd/fchmd.toml",
        ),
        ("Restart", "on-failure"),
        ("RestartPreventExitStatus", exit_code.as_str()),
        ("DynamicUser", "yes"),
        ("SupplementaryGroups", "video"),
        ("DevicePolicy", "closed"),
        ("DeviceAllow", "char-video4linux rw"),
        ("StateDirectory", "fchmd"),
        ("ProtectSystem", "strict"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
    ] {
        assert!(
            settings.contains(&(key, value)),
            "systemd/fchmd.service lacks {key}={value}"
        );
    }
    // tract reads /proc/cpuinfo to pick its ARM kernels (NEON on armv7,
    // fp16 on aarch64); ProcSubset=pid would hide it and silently slow
    // inference down on exactly the cameras this runs on.
    assert!(
        !settings.iter().any(|(k, _)| *k == "ProcSubset"),
        "ProcSubset= hides /proc/cpuinfo from tract"
    );
    // PrivateDevices=yes would hide /dev/video*.
    assert!(!settings.contains(&("PrivateDevices", "yes")));
}
