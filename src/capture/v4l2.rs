//! The `v4l2:` source: a Video4Linux2 capture device read through mmap streaming.
//!
//! Opening enumerates what the device offers, lets [`choose_format`] pick a pixel format and
//! size, and maps 4 buffers. Each frame is converted to RGB with `convert`/`mjpeg`. A device
//! that delivers nothing for [`STALL_TIMEOUT`] yields [`CaptureError::Stall`], so a
//! [`super::Reopening`] wrapper can reopen it; a run of corrupt frames is an error too, while a
//! single corrupt frame (common with USB MJPEG cameras) is skipped.

use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::Duration;

use image::RgbImage;
use v4l::buffer::{Flags, Type};
use v4l::format::Quantization;
use v4l::frameinterval::FrameIntervalEnum;
use v4l::framesize::FrameSizeEnum;
use v4l::io::traits::CaptureStream;
use v4l::prelude::{Device, MmapStream};
use v4l::video::Capture;
use v4l::{Format, FourCC};

use super::convert::{nv12_to_rgb, yuyv_to_rgb, Range};
use super::format_choice::{choose_format, Offer, OfferedSize, PixelFormat};
use super::mjpeg::decode_jpeg;
use super::{CaptureError, Source};

/// No frame for this long means the camera stalled (USB hiccup, unplugged, wedged driver).
/// Generous because some cameras take a second or two to deliver the first frame.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(5);
const BUFFER_COUNT: u32 = 4;
/// Corrupt frames in a row before the device is declared broken.
const MAX_BAD_FRAMES_IN_A_ROW: u32 = 30;
/// `POLLIN` from poll(2); the same value on every Linux architecture.
const POLLIN: i16 = 0x0001;

pub(crate) struct V4l2Source {
    stream: MmapStream<'static>,
    // Kept open for the stream's lifetime (the stream holds its own handle too).
    _device: Device,
    path: PathBuf,
    format: PixelFormat,
    width: u32,
    height: u32,
    stride: usize,
    range: Range,
    fps: Option<f32>,
    frame: Vec<u8>,
    bad_in_a_row: u32,
}

/// Runs a `v4l` call that may panic on odd driver data (it unwraps driver strings and enum
/// values), turning the panic into an error: a strange camera must not take the daemon down.
fn guarded<T>(
    path: &Path,
    op: &'static str,
    f: impl FnOnce() -> io::Result<T>,
) -> Result<T, CaptureError> {
    let to_error = |source| CaptureError::V4l2 {
        device: path.to_path_buf(),
        op,
        source,
    };
    match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result.map_err(to_error),
        Err(_) => Err(to_error(io::Error::other(
            "the v4l crate panicked on the driver's reply",
        ))),
    }
}

fn fourcc_text(fourcc: &FourCC) -> String {
    String::from_utf8_lossy(&fourcc.repr).trim_end().to_string()
}

/// Frames per second of a frame interval given as a fraction of a second.
fn interval_fps(numerator: u32, denominator: u32) -> Option<f32> {
    (numerator > 0 && denominator > 0).then(|| denominator as f32 / numerator as f32)
}

fn max_fps(device: &Device, fourcc: FourCC, width: u32, height: u32) -> Option<f32> {
    // Not every driver enumerates intervals; the choice then proceeds without rates.
    let intervals = device.enum_frameintervals(fourcc, width, height).ok()?;
    intervals
        .iter()
        .filter_map(|i| match &i.interval {
            FrameIntervalEnum::Discrete(f) => interval_fps(f.numerator, f.denominator),
            FrameIntervalEnum::Stepwise(s) => interval_fps(s.min.numerator, s.min.denominator),
        })
        .reduce(f32::max)
}

/// Everything the device offers in the formats this program reads, plus the fourccs of all.
fn offers(device: &Device) -> io::Result<(Vec<Offer>, Vec<String>)> {
    let mut offers = Vec::new();
    let mut names = Vec::new();
    for desc in device.enum_formats()? {
        names.push(fourcc_text(&desc.fourcc));
        if PixelFormat::from_fourcc(&desc.fourcc.repr).is_none() {
            continue;
        }
        // A format whose sizes cannot be listed is still worth offering at the requested size
        // only if the driver says so; skip it instead of guessing.
        let Ok(sizes) = device.enum_framesizes(desc.fourcc) else {
            continue;
        };
        for size in sizes {
            let offer = match size.size {
                FrameSizeEnum::Discrete(d) => Offer {
                    fourcc: desc.fourcc.repr,
                    size: OfferedSize::Discrete {
                        width: d.width,
                        height: d.height,
                    },
                    max_fps: max_fps(device, desc.fourcc, d.width, d.height),
                },
                FrameSizeEnum::Stepwise(s) => Offer {
                    fourcc: desc.fourcc.repr,
                    size: OfferedSize::Stepwise {
                        min_width: s.min_width,
                        max_width: s.max_width,
                        step_width: s.step_width,
                        min_height: s.min_height,
                        max_height: s.max_height,
                        step_height: s.step_height,
                    },
                    max_fps: None,
                },
            };
            offers.push(offer);
        }
    }
    Ok((offers, names))
}

/// Bytes per row when the driver reports a stride of 0.
fn packed_stride(format: PixelFormat, width: u32) -> usize {
    match format {
        PixelFormat::Yuyv => (width as usize).div_ceil(2) * 4,
        PixelFormat::Nv12 => (width as usize).div_ceil(2) * 2,
        PixelFormat::Mjpeg => 0,
    }
}

/// A dequeue timeout is a stall; anything else is a device error.
fn stream_error(device: &Path, op: &'static str, source: io::Error) -> CaptureError {
    if source.kind() == io::ErrorKind::TimedOut {
        return CaptureError::Stall {
            device: device.to_path_buf(),
            timeout: STALL_TIMEOUT,
        };
    }
    CaptureError::V4l2 {
        device: device.to_path_buf(),
        op,
        source,
    }
}

fn range_of(quantization: Quantization) -> Range {
    // V4L2's default quantization for Y'CbCr formats is limited range.
    match quantization {
        Quantization::FullRange => Range::Full,
        Quantization::Default | Quantization::LimitedRange => Range::Limited,
    }
}

impl V4l2Source {
    pub(crate) fn open(
        path: &Path,
        want_width: u32,
        want_height: u32,
    ) -> Result<Self, CaptureError> {
        let device = guarded(path, "open", || Device::with_path(path))?;
        let (offered, names) = guarded(path, "enumerate formats", || offers(&device))?;
        let choice = choose_format(&offered, want_width, want_height).ok_or_else(|| {
            CaptureError::NoUsableFormat {
                device: path.to_path_buf(),
                offered: if names.is_empty() {
                    "nothing (not a video capture node?)".to_string()
                } else {
                    names.join(", ")
                },
            }
        })?;
        let wanted = Format::new(
            choice.width,
            choice.height,
            FourCC::new(&choice.format.fourcc()),
        );
        let actual = guarded(path, "set format", || device.set_format(&wanted))?;
        let format = PixelFormat::from_fourcc(&actual.fourcc.repr)
            .filter(|_| actual.width > 0 && actual.height > 0)
            .ok_or_else(|| CaptureError::FormatRefused {
                device: path.to_path_buf(),
                wanted: format!(
                    "{} {}x{}",
                    choice.format.name(),
                    choice.width,
                    choice.height
                ),
                got: format!(
                    "{} {}x{}",
                    fourcc_text(&actual.fourcc),
                    actual.width,
                    actual.height
                ),
            })?;
        // The rate is informational; a driver without VIDIOC_G_PARM is still usable.
        let fps = guarded(path, "get parameters", || device.params())
            .ok()
            .and_then(|p| interval_fps(p.interval.numerator, p.interval.denominator));
        let mut stream = guarded(path, "map buffers", || {
            MmapStream::with_buffers(&device, Type::VideoCapture, BUFFER_COUNT)
        })?;
        stream.set_timeout(STALL_TIMEOUT);
        let stride = match actual.stride as usize {
            0 => packed_stride(format, actual.width),
            s => s,
        };
        Ok(V4l2Source {
            stream,
            _device: device,
            path: path.to_path_buf(),
            format,
            width: actual.width,
            height: actual.height,
            stride,
            range: range_of(actual.quantization),
            fps,
            frame: Vec::new(),
            bad_in_a_row: 0,
        })
    }

    /// Copies the newest filled buffer into `self.frame`; `false` if the driver flagged it bad.
    ///
    /// When the caller reads slower than the camera delivers, the queue holds older frames;
    /// they are passed over so the frame returned is at most one camera interval old.
    fn dequeue_newest(&mut self) -> Result<bool, CaptureError> {
        let mut good = false;
        for _ in 0..=BUFFER_COUNT {
            let (buf, meta) = CaptureStream::next(&mut self.stream)
                .map_err(|e| stream_error(&self.path, "dequeue", e))?;
            let used = match meta.bytesused as usize {
                0 => buf.len(),
                n => n.min(buf.len()),
            };
            good = !meta.flags.contains(Flags::ERROR);
            self.frame.clear();
            self.frame.extend_from_slice(&buf[..used]);
            let more = self
                .stream
                .handle()
                .poll(POLLIN, 0)
                .map_err(|e| stream_error(&self.path, "poll", e))?;
            if more == 0 {
                break;
            }
        }
        Ok(good)
    }

    fn convert(&self) -> Result<RgbImage, CaptureError> {
        let (w, h, s, r) = (self.width, self.height, self.stride, self.range);
        Ok(match self.format {
            PixelFormat::Yuyv => yuyv_to_rgb(&self.frame, w, h, s, r)?,
            PixelFormat::Nv12 => nv12_to_rgb(&self.frame, w, h, s, r)?,
            PixelFormat::Mjpeg => decode_jpeg(&self.frame)?,
        })
    }
}

impl Source for V4l2Source {
    fn next_frame(&mut self) -> Result<Option<RgbImage>, CaptureError> {
        loop {
            let result = if self.dequeue_newest()? {
                self.convert()
            } else {
                Err(CaptureError::V4l2 {
                    device: self.path.clone(),
                    op: "dequeue",
                    source: io::Error::other("driver flagged the buffer as corrupt"),
                })
            };
            match result {
                Ok(img) => {
                    self.bad_in_a_row = 0;
                    return Ok(Some(img));
                }
                Err(e) => {
                    self.bad_in_a_row += 1;
                    if self.bad_in_a_row >= MAX_BAD_FRAMES_IN_A_ROW {
                        return Err(CaptureError::BadFrames {
                            device: self.path.clone(),
                            count: self.bad_in_a_row,
                            last: e.to_string(),
                        });
                    }
                    log::warn!("v4l2:{}: skipping a bad frame: {e}", self.path.display());
                }
            }
        }
    }

    fn describe(&self) -> String {
        let fps = self.fps.map(|f| format!(" {f:.1} fps")).unwrap_or_default();
        format!(
            "v4l2:{} {} {}x{}{fps}",
            self.path.display(),
            self.format.name(),
            self.width,
            self.height
        )
    }

    fn native_fps(&self) -> Option<f32> {
        self.fps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_intervals_become_rates() {
        assert_eq!(interval_fps(1, 30), Some(30.0));
        assert_eq!(interval_fps(2, 15), Some(7.5));
        assert_eq!(interval_fps(0, 30), None);
        assert_eq!(interval_fps(1, 0), None);
    }

    #[test]
    fn zero_strides_fall_back_to_packed_rows() {
        assert_eq!(packed_stride(PixelFormat::Yuyv, 641), 1284);
        assert_eq!(packed_stride(PixelFormat::Nv12, 641), 642);
    }

    #[test]
    fn only_explicit_full_range_is_full() {
        assert_eq!(range_of(Quantization::FullRange), Range::Full);
        assert_eq!(range_of(Quantization::Default), Range::Limited);
        assert_eq!(range_of(Quantization::LimitedRange), Range::Limited);
    }

    #[test]
    fn timeouts_are_stalls_and_other_failures_device_errors() {
        let dev = Path::new("/dev/video7");
        let stall = stream_error(dev, "dequeue", io::ErrorKind::TimedOut.into());
        assert!(matches!(stall, CaptureError::Stall { .. }), "{stall}");
        let gone = stream_error(dev, "dequeue", io::Error::from_raw_os_error(19));
        assert!(
            matches!(gone, CaptureError::V4l2 { op: "dequeue", .. }),
            "{gone}"
        );
    }

    #[test]
    fn a_missing_device_is_an_open_error_naming_it() {
        let err = V4l2Source::open(Path::new("/nonexistent/video9"), 640, 480)
            .err()
            .unwrap();
        let msg = err.to_string();
        assert!(
            msg.contains("/nonexistent/video9") && msg.contains("open"),
            "{msg}"
        );
    }

    #[test]
    fn a_file_that_is_no_device_is_refused_without_panicking() {
        let file = tempfile::NamedTempFile::new().unwrap();
        assert!(V4l2Source::open(file.path(), 640, 480).is_err());
    }
}
