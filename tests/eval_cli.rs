//! `fchm eval` end to end on two small photos with a real bundle.
//!
//! Needs `FCHM_TEST_BUNDLE` (any bundle: the smoke bundle is enough) and the
//! Debian `darknet` photos; without either the test fails, naming what is missing.

use std::path::{Path, PathBuf};
use std::process::Command;

use image::imageops::FilterType;

const PHOTOS: &str = "/usr/share/darknet/data";

fn bundle() -> PathBuf {
    match std::env::var_os("FCHM_TEST_BUNDLE") {
        Some(dir) => PathBuf::from(dir),
        None => panic!(
            "FCHM_TEST_BUNDLE is not set: point it at a model bundle directory \
             (e.g. `cd models/train && python3 -m fchm_train.build --smoke --out DIR`); \
             this test runs the real models and does not pass without one"
        ),
    }
}

fn fchm(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_fchm"))
        .args(args)
        .output()
        .expect("running fchm")
}

/// Two small images from the Debian photos, one PNG and one JPEG, plus a non-image.
fn small_images(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for (src, dst) in [("dog.jpg", "a_dog.png"), ("person.jpg", "b_person.jpg")] {
        let path = Path::new(PHOTOS).join(src);
        let img = image::open(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (install the Debian package `darknet`)",
                path.display()
            )
        });
        img.resize_exact(192, 144, FilterType::Triangle)
            .to_rgb8()
            .save(dir.join(dst))
            .unwrap();
    }
    std::fs::write(dir.join("notes.txt"), "not an image").unwrap();
}

#[test]
fn eval_writes_the_table_the_plot_and_the_bd_rates() {
    let bundle = bundle();
    let tmp = tempfile::tempdir().unwrap();
    let images = tmp.path().join("images");
    small_images(&images);
    let out = tmp.path().join("out");
    let json = tmp.path().join("nested").join("summary.json");
    let run = fchm(&[
        "eval",
        "--bundle",
        bundle.to_str().unwrap(),
        "--images",
        images.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
        "--gains",
        "3",
        "--qualities",
        "10,50,90",
        "--quiet",
    ]);
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "fchm eval failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stdout.contains("BD-rate machine vs jpeg") && stdout.contains("BD-rate machine vs webp"),
        "{stdout}"
    );

    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(s["images"], 2);
    assert!(s["gt_boxes"].as_u64().unwrap() > 0, "{s}");
    assert_eq!(s["map50_uncompressed"], 1.0);
    assert_eq!(s["pixels_per_image"], 512 * 512);
    for anchor in ["jpeg", "webp"] {
        let key = format!("bd_rate_machine_vs_{anchor}");
        let v = s.get(&key).unwrap_or_else(|| panic!("{key} missing"));
        let entry = s["bd_rate"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["anchor"] == anchor)
            .unwrap();
        // A number, or null with the reason it is undefined.
        assert!(
            v.is_f64() || (v.is_null() && entry["reason"].is_string()),
            "{key}: {v} / {entry}"
        );
        assert_eq!(&entry["percent"], v);
    }

    let points = s["points"].as_array().unwrap();
    assert_eq!(points.len(), 3 + 2 * 3);
    for p in points {
        let (bpp, map) = (p["bpp"].as_f64().unwrap(), p["map50"].as_f64().unwrap());
        assert!(bpp > 0.0 && (0.0..=1.0).contains(&map), "{p}");
    }
    for codec in ["jpeg", "webp"] {
        let bpp: Vec<f64> = points
            .iter()
            .filter(|p| p["codec"] == codec)
            .map(|p| p["bpp"].as_f64().unwrap())
            .collect();
        assert_eq!(bpp.len(), 3);
        assert!(bpp.windows(2).all(|w| w[1] > w[0]), "{codec}: {bpp:?}");
    }
    let gains: Vec<f64> = s["gains"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.as_f64().unwrap())
        .collect();
    assert_eq!(gains.len(), 3);
    assert!(gains.windows(2).all(|w| w[1] > w[0]));

    let csv = std::fs::read_to_string(out.join("rd.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "codec,param,bpp,map50");
    assert_eq!(lines.len(), 1 + 9);
    assert!(
        lines[1].starts_with("machine,")
            && lines[4].starts_with("jpeg,10,")
            && lines[9].starts_with("webp,90,")
    );

    let png = image::open(out.join("rd.png")).unwrap();
    assert_eq!((png.width(), png.height()), (960, 640));
}

#[test]
fn eval_refuses_a_folder_without_images() {
    let tmp = tempfile::tempdir().unwrap();
    let run = fchm(&[
        "eval",
        "--bundle",
        "/nonexistent",
        "--images",
        tmp.path().to_str().unwrap(),
        "--out",
        tmp.path().join("out").to_str().unwrap(),
    ]);
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("no .jpg, .jpeg or .png images"), "{stderr}");
}
