//! Capture sources through the public API: spec strings → `open` → frames.

use std::io::Write;
use std::path::Path;
use std::process::Command;

use fchm::capture::{open, CaptureOptions, Reopening, Source, SourceSpec};

fn opts(looped: bool) -> CaptureOptions {
    CaptureOptions {
        looped,
        ..CaptureOptions::default()
    }
}

fn open_str(spec: &str, looped: bool) -> Box<dyn Source> {
    open(&spec.parse::<SourceSpec>().unwrap(), &opts(looped)).unwrap()
}

#[test]
fn test_scene_runs_from_the_binary_alone() {
    let mut src = open_str("test-scene", false);
    assert_eq!(src.native_fps(), Some(10.0 / 3.0));
    assert!(
        src.describe().starts_with("test-scene"),
        "{}",
        src.describe()
    );
    let first = src.next_frame().unwrap().unwrap();
    assert_eq!(first.dimensions(), (384, 288));
    // A real scene, not a flat test card: plenty of distinct colours.
    let mut levels: Vec<u8> = first.pixels().map(|p| p.0[1]).collect();
    levels.sort_unstable();
    levels.dedup();
    assert!(levels.len() > 100, "only {} green levels", levels.len());
}

/// A 4x2 4:2:0 stream of `frames` frames, frame i filled with luma 16 + 100·i.
fn write_y4m(path: &Path, frames: u8) {
    let mut f = std::fs::File::create(path).unwrap();
    f.write_all(b"YUV4MPEG2 W4 H2 F25:1 Ip C420jpeg\n").unwrap();
    for i in 0..frames {
        f.write_all(b"FRAME\n").unwrap();
        f.write_all(&[16 + 100 * i; 8]).unwrap();
        f.write_all(&[128; 4]).unwrap();
    }
}

#[test]
fn y4m_files_end_or_loop_as_asked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("two.y4m");
    write_y4m(&path, 2);
    let spec = format!("y4m:{}", path.display());

    let mut once = open_str(&spec, false);
    assert_eq!(once.native_fps(), Some(25.0));
    let lumas: Vec<u8> = std::iter::from_fn(|| once.next_frame().unwrap())
        .map(|img| img.get_pixel(0, 0).0[0])
        .collect();
    assert_eq!(lumas, [0, 116]); // limited range: Y 16 → 0, Y 116 → 100·255/219
    assert!(once.next_frame().unwrap().is_none());

    let mut looped = open_str(&spec, true);
    let lumas: Vec<u8> = (0..5)
        .map(|_| looped.next_frame().unwrap().unwrap().get_pixel(0, 0).0[0])
        .collect();
    assert_eq!(lumas, [0, 116, 0, 116, 0]);

    let empty = dir.path().join("empty.y4m");
    write_y4m(&empty, 0);
    let mut src = open_str(&format!("y4m:{}", empty.display()), true);
    assert!(
        src.next_frame().unwrap().is_none(),
        "a frameless file must end, not spin"
    );
}

#[test]
fn missing_paths_are_errors_naming_the_path() {
    for spec in ["y4m:/nonexistent/a.y4m", "images:/nonexistent/dir"] {
        let err = open(&spec.parse().unwrap(), &opts(false)).err().unwrap();
        assert!(err.to_string().contains("/nonexistent/"), "{spec}: {err}");
    }
}

#[test]
fn y4m_from_ffmpeg_matches_ffmpegs_own_rgb_conversion() {
    if Command::new("ffmpeg").arg("-version").output().is_err() {
        println!("ffmpeg not found: Y4M cross-check against ffmpeg not run");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let y4m = dir.path().join("bars.y4m");
    let rgb = dir.path().join("bars.rgb");
    let ffmpeg = |args: &[&str]| {
        let status = Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-y"])
            .args(args)
            .status()
            .unwrap();
        assert!(status.success(), "ffmpeg {args:?}");
    };
    // Smooth colour regions (SMPTE bars), so chroma upsampling differences stay at the edges.
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "smptebars=size=128x96:rate=5",
        "-frames:v",
        "2",
        "-pix_fmt",
        "yuv420p",
        "-f",
        "yuv4mpegpipe",
        y4m.to_str().unwrap(),
    ]);
    ffmpeg(&[
        "-i",
        y4m.to_str().unwrap(),
        "-pix_fmt",
        "rgb24",
        "-f",
        "rawvideo",
        rgb.to_str().unwrap(),
    ]);
    let want = std::fs::read(&rgb).unwrap();
    let mut src = open_str(&format!("y4m:{}", y4m.display()), false);
    let mut got = Vec::new();
    while let Some(img) = src.next_frame().unwrap() {
        assert_eq!(img.dimensions(), (128, 96));
        got.extend_from_slice(img.as_raw());
    }
    assert_eq!(got.len(), want.len());
    let close = got
        .iter()
        .zip(&want)
        .filter(|(a, b)| a.abs_diff(**b) <= 2)
        .count();
    let share = close as f64 / got.len() as f64;
    assert!(
        share > 0.95,
        "only {:.1} % of samples within ±2 of ffmpeg",
        share * 100.0
    );
}

#[test]
fn v4l2_device_grabs_a_frame_when_a_camera_exists() {
    let has_video = std::fs::read_dir("/dev")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .any(|e| e.file_name().to_string_lossy().starts_with("video"))
        })
        .unwrap_or(false);
    if !has_video {
        println!("no /dev/video* on this machine: V4L2 device test not run");
        return;
    }
    let spec: SourceSpec = "v4l2:/dev/video0".parse().unwrap();
    let mut src = Reopening::open(spec, CaptureOptions::default())
        .unwrap_or_else(|e| panic!("a /dev/video* exists but /dev/video0 does not open: {e}"));
    let frame = src.next_frame().unwrap().unwrap();
    println!(
        "{}: got {}x{}",
        src.describe(),
        frame.width(),
        frame.height()
    );
    assert!(frame.width() > 0 && frame.height() > 0);
    assert_eq!(src.reopens(), 0);
}
