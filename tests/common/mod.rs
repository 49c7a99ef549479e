//! Shared by the integration tests: where the bundle, the photos and Python are.
#![allow(dead_code)]

pub mod daemon;
pub mod peer;
pub mod server;

use std::path::{Path, PathBuf};
use std::process::Command;

/// The bundle under test. CI builds the smoke bundle and sets this; a test
/// that needs a bundle fails rather than passing without one.
pub fn bundle_dir() -> PathBuf {
    let dir = std::env::var_os("FCHM_TEST_BUNDLE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!(
                "FCHM_TEST_BUNDLE is not set: build a bundle first, e.g. \
             `cd models/train && python3 -m fchm_train.build --smoke --out /tmp/smoke-bundle`, \
             then FCHM_TEST_BUNDLE=/tmp/smoke-bundle"
            )
        });
    with_manifest(dir)
}

/// The committed human-layer bundle (`FCHM_TEST_HVCN`, set by `.ci/run`),
/// paired with the machine bundle under test.
pub fn human_dir() -> PathBuf {
    let dir = std::env::var_os("FCHM_TEST_HVCN")
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("FCHM_TEST_HVCN is not set: point it at models/centernet-hvcn"));
    with_manifest(dir)
}

fn with_manifest(dir: PathBuf) -> PathBuf {
    assert!(
        dir.join("manifest.json").exists(),
        "{} has no manifest.json",
        dir.display()
    );
    dir
}

/// Debian `darknet`'s classic detection photos.
pub fn photo(name: &str) -> PathBuf {
    let p = Path::new("/usr/share/darknet/data").join(name);
    assert!(
        p.exists(),
        "{} missing: apt-get install darknet",
        p.display()
    );
    p
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `python3` (or `$FCHM_PYTHON`) running a script from tests/python.
pub fn python(script: &str) -> Command {
    let exe = std::env::var("FCHM_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut c = Command::new(exe);
    c.arg(repo_root().join("tests/python").join(script));
    c
}

pub fn run_ok(mut c: Command) -> String {
    let out = c
        .output()
        .unwrap_or_else(|e| panic!("cannot run {c:?}: {e}"));
    assert!(
        out.status.success(),
        "{c:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
