//! Camera sources: V4L2, Y4M, image folders and the bundled test scene, all yielding RGB frames.
//!
//! A source is named by a [`SourceSpec`] (parsed from the config string), opened with [`open`]
//! and read frame by frame through the [`Source`] trait. Sources may block; the daemon runs them
//! on their own thread and paces them itself. [`Reopening`] wraps a source that can stall or
//! vanish (a USB camera) and reopens it with backoff.

mod convert;
mod error;
mod format_choice;
mod images;
mod mjpeg;
mod reopen;
mod scene;
mod v4l2;
mod y4m;
mod y4m_source;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

pub use convert::{
    nv12_to_rgb, planar_to_rgb, yuyv_to_rgb, ConvertError, PlanarLayout, Range, Subsampling,
};
pub use error::{CaptureError, SpecError};
pub use format_choice::{
    choose_format, Choice, Offer, OfferedSize, PixelFormat, MIN_UNCOMPRESSED_FPS,
};
pub use image::RgbImage;
pub use mjpeg::{decode_jpeg, MjpegError};
pub use reopen::{Backoff, Reopening, Sleep, ThreadSleep};
pub use scene::frame as scene_frame;
pub use v4l2::STALL_TIMEOUT;
pub use y4m::{
    Colorspace as Y4mColorspace, Interlace as Y4mInterlace, Y4mError, Y4mHeader, Y4mReader,
    MAX_DIMENSION as Y4M_MAX_DIMENSION, MAX_PIXELS as Y4M_MAX_PIXELS,
};

/// Which camera or file to read frames from.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceSpec {
    /// The pedestrian clip compiled into the binary (`test-scene`).
    TestScene,
    /// A YUV4MPEG2 stream (`y4m:-` for stdin, `y4m:PATH`).
    Y4m(Y4mInput),
    /// A V4L2 capture device (`v4l2:/dev/video0`, or a stable `/dev/v4l/by-id/...` link).
    V4l2(PathBuf),
    /// A folder of JPEG/PNG files read in name order (`images:DIR`).
    Images(PathBuf),
}

/// Where a Y4M stream comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Y4mInput {
    Stdin,
    File(PathBuf),
}

/// How to open a source; fields a source does not use are ignored by it.
#[derive(Debug, Clone)]
pub struct CaptureOptions {
    /// Restart Y4M files and image folders at their end instead of ending the source.
    /// Stdin cannot be rewound and ignores this.
    pub looped: bool,
    /// Frame width requested from a V4L2 device (the device may offer a different one).
    pub width: u32,
    /// Frame height requested from a V4L2 device.
    pub height: u32,
}

impl Default for CaptureOptions {
    fn default() -> Self {
        CaptureOptions {
            looped: false,
            width: 640,
            height: 480,
        }
    }
}

/// A producer of RGB frames.
pub trait Source: Send {
    /// Blocks until the next frame. `Ok(None)`: the source ended for good (file or folder end
    /// without loop).
    fn next_frame(&mut self) -> Result<Option<RgbImage>, CaptureError>;
    /// One line for logs, e.g. `v4l2:/dev/video0 YUYV 640x480`.
    fn describe(&self) -> String;
    /// The rate the source produces at by itself, if it has one (Y4M header rate, V4L2
    /// negotiated rate, the test scene's rate); `None` for image folders.
    fn native_fps(&self) -> Option<f32>;
}

/// Opens the source named by `spec`.
pub fn open(spec: &SourceSpec, opts: &CaptureOptions) -> Result<Box<dyn Source>, CaptureError> {
    Ok(match spec {
        SourceSpec::TestScene => Box::new(scene::TestScene::new()),
        SourceSpec::Y4m(input) => Box::new(y4m_source::Y4mSource::open(input, opts.looped)?),
        SourceSpec::V4l2(path) => Box::new(v4l2::V4l2Source::open(path, opts.width, opts.height)?),
        SourceSpec::Images(dir) => Box::new(images::ImageFolder::open(dir, opts.looped)?),
    })
}

const TEST_SCENE: &str = "test-scene";
const Y4M_PREFIX: &str = "y4m:";
const V4L2_PREFIX: &str = "v4l2:";
const IMAGES_PREFIX: &str = "images:";
const STDIN_PATH: &str = "-";

impl FromStr for SourceSpec {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let error = |reason: &'static str| SpecError {
            spec: s.to_string(),
            reason,
        };
        let path = |rest: &str| -> Result<PathBuf, SpecError> {
            if rest.is_empty() {
                Err(error("the path after the prefix is empty"))
            } else {
                Ok(PathBuf::from(rest))
            }
        };
        if s == TEST_SCENE {
            Ok(SourceSpec::TestScene)
        } else if let Some(rest) = s.strip_prefix(Y4M_PREFIX) {
            if rest == STDIN_PATH {
                Ok(SourceSpec::Y4m(Y4mInput::Stdin))
            } else {
                Ok(SourceSpec::Y4m(Y4mInput::File(path(rest)?)))
            }
        } else if let Some(rest) = s.strip_prefix(V4L2_PREFIX) {
            Ok(SourceSpec::V4l2(path(rest)?))
        } else if let Some(rest) = s.strip_prefix(IMAGES_PREFIX) {
            Ok(SourceSpec::Images(path(rest)?))
        } else {
            Err(error("unknown source kind"))
        }
    }
}

impl fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceSpec::TestScene => f.write_str(TEST_SCENE),
            SourceSpec::Y4m(Y4mInput::Stdin) => write!(f, "{Y4M_PREFIX}{STDIN_PATH}"),
            // A file literally named "-" must not read back as stdin.
            SourceSpec::Y4m(Y4mInput::File(p)) if p.as_os_str() == STDIN_PATH => {
                write!(f, "{Y4M_PREFIX}./{STDIN_PATH}")
            }
            SourceSpec::Y4m(Y4mInput::File(p)) => write!(f, "{Y4M_PREFIX}{}", p.display()),
            SourceSpec::V4l2(p) => write!(f, "{V4L2_PREFIX}{}", p.display()),
            SourceSpec::Images(p) => write!(f, "{IMAGES_PREFIX}{}", p.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_accepted_form() {
        let cases = [
            ("test-scene", SourceSpec::TestScene),
            ("y4m:-", SourceSpec::Y4m(Y4mInput::Stdin)),
            (
                "y4m:/tmp/a b.y4m",
                SourceSpec::Y4m(Y4mInput::File("/tmp/a b.y4m".into())),
            ),
            ("v4l2:/dev/video2", SourceSpec::V4l2("/dev/video2".into())),
            ("images:frames", SourceSpec::Images("frames".into())),
        ];
        for (text, want) in cases {
            let got: SourceSpec = text.parse().unwrap();
            assert_eq!(got, want, "{text}");
            assert_eq!(got.to_string(), text);
        }
    }

    #[test]
    fn display_round_trips_a_file_named_dash() {
        let spec = SourceSpec::Y4m(Y4mInput::File("-".into()));
        let back: SourceSpec = spec.to_string().parse().unwrap();
        assert_eq!(back, SourceSpec::Y4m(Y4mInput::File("./-".into())));
        assert_ne!(back, SourceSpec::Y4m(Y4mInput::Stdin));
    }

    #[test]
    fn rejects_unknown_and_empty_specs_listing_the_accepted_forms() {
        for bad in [
            "",
            "webcam",
            "v4l2:",
            "images:",
            "y4m:",
            "Test-Scene",
            "rtsp://cam",
        ] {
            let err = bad.parse::<SourceSpec>().unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(&format!("{bad:?}")), "{msg}");
            for form in [
                "test-scene",
                "y4m:-",
                "y4m:PATH",
                "v4l2:/dev/videoN",
                "images:DIR",
            ] {
                assert!(msg.contains(form), "{msg} lacks {form}");
            }
        }
    }

    #[test]
    fn spec_error_converts_into_capture_error() {
        let err: CaptureError = "nope".parse::<SourceSpec>().unwrap_err().into();
        assert!(matches!(err, CaptureError::Spec(_)));
    }
}
