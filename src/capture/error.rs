//! Errors of the capture sources.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use super::{ConvertError, MjpegError, Y4mError};

/// A source string that is none of the accepted forms.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "invalid capture source {spec:?}: {reason}; accepted forms: test-scene, y4m:- (stdin), \
     y4m:PATH, v4l2:/dev/videoN, images:DIR"
)]
pub struct SpecError {
    pub spec: String,
    pub reason: &'static str,
}

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error(transparent)]
    Spec(#[from] SpecError),

    #[error("cannot open {}: {source}", path.display())]
    Open { path: PathBuf, source: io::Error },

    #[error("{}: {source}", origin)]
    Y4m { origin: String, source: Y4mError },

    #[error(transparent)]
    Convert(#[from] ConvertError),

    #[error(transparent)]
    Jpeg(#[from] MjpegError),

    #[error("image folder {}: no .jpg, .jpeg or .png files", dir.display())]
    NoImages { dir: PathBuf },

    #[error("image folder {}: none of its {count} images could be decoded", dir.display())]
    NoReadableImages { dir: PathBuf, count: usize },

    #[error("test scene frame {index}: {source}")]
    Scene { index: usize, source: MjpegError },

    #[error("V4L2 {}: {op} failed: {source}", device.display())]
    V4l2 {
        device: PathBuf,
        op: &'static str,
        source: io::Error,
    },

    #[error(
        "V4L2 {}: offers none of the formats this program reads (YUYV, MJPEG, NV12); it offers: {offered}",
        device.display()
    )]
    NoUsableFormat { device: PathBuf, offered: String },

    #[error("V4L2 {}: asked for {wanted}, the driver set {got}", device.display())]
    FormatRefused {
        device: PathBuf,
        wanted: String,
        got: String,
    },

    #[error("V4L2 {}: no frame for {timeout:?}", device.display())]
    Stall { device: PathBuf, timeout: Duration },

    #[error("V4L2 {}: {count} bad frames in a row, last: {last}", device.display())]
    BadFrames {
        device: PathBuf,
        count: u32,
        last: String,
    },
}
