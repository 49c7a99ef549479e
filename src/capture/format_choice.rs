//! Which of a V4L2 device's pixel formats and frame sizes to ask for. Pure, so the policy is
//! testable without a camera.
//!
//! Policy, in order:
//! 1. Size. The requested size if any usable format offers it; otherwise the smallest offered
//!    size that covers it in both dimensions (downscaling keeps detail, upscaling invents none);
//!    otherwise the largest offered size.
//! 2. Format at that size: NV12, then YUYV, then MJPEG. Uncompressed frames cost no JPEG decode
//!    (CPU on an edge box belongs to the feature codec) and carry no JPEG artefacts into a codec
//!    that would spend bits on them. NV12 first because it is the native output of the ISPs on
//!    embedded boards (Jetson, Raspberry Pi) and moves 12 bits a pixel instead of 16.
//! 3. Except: USB 2.0 cameras can only send uncompressed frames slowly at large sizes (often
//!    5 fps at 1080p). When every uncompressed format at the chosen size is known to top out
//!    below [`MIN_UNCOMPRESSED_FPS`] and MJPEG is not known to be as slow, MJPEG wins.

/// Below this rate an uncompressed format loses to MJPEG: the daemon's encoder runs at up to
/// about this rate, and a slower camera also means longer exposures and more motion blur.
pub const MIN_UNCOMPRESSED_FPS: f32 = 10.0;

/// The pixel formats this program converts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    Nv12,
    Yuyv,
    Mjpeg,
}

impl PixelFormat {
    const ALL: [PixelFormat; 3] = [PixelFormat::Nv12, PixelFormat::Yuyv, PixelFormat::Mjpeg];

    /// The V4L2 fourcc.
    pub fn fourcc(self) -> [u8; 4] {
        match self {
            PixelFormat::Nv12 => *b"NV12",
            PixelFormat::Yuyv => *b"YUYV",
            PixelFormat::Mjpeg => *b"MJPG",
        }
    }

    pub fn from_fourcc(fourcc: &[u8; 4]) -> Option<PixelFormat> {
        Self::ALL.into_iter().find(|f| &f.fourcc() == fourcc)
    }

    pub fn name(self) -> &'static str {
        match self {
            PixelFormat::Nv12 => "NV12",
            PixelFormat::Yuyv => "YUYV",
            PixelFormat::Mjpeg => "MJPEG",
        }
    }

    fn compressed(self) -> bool {
        self == PixelFormat::Mjpeg
    }
}

/// Frame sizes a device offers for one format (`VIDIOC_ENUM_FRAMESIZES`).
#[derive(Debug, Clone, PartialEq)]
pub enum OfferedSize {
    Discrete {
        width: u32,
        height: u32,
    },
    /// Any size on the grid min + k·step up to max (continuous ranges have step 1).
    Stepwise {
        min_width: u32,
        max_width: u32,
        step_width: u32,
        min_height: u32,
        max_height: u32,
        step_height: u32,
    },
}

/// One format/size the device offers.
#[derive(Debug, Clone, PartialEq)]
pub struct Offer {
    pub fourcc: [u8; 4],
    pub size: OfferedSize,
    /// Highest frame rate at this size, when the driver enumerates its frame intervals.
    pub max_fps: Option<f32>,
}

/// What to ask the driver for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice {
    pub format: PixelFormat,
    pub width: u32,
    pub height: u32,
}

/// The grid value nearest to `want` within `min..=max`.
fn snap(want: u32, min: u32, max: u32, step: u32) -> u32 {
    let (min, max, step) = (
        u64::from(min),
        u64::from(max.max(min)),
        u64::from(step.max(1)),
    );
    let want = u64::from(want).clamp(min, max);
    let k = (want - min + step / 2) / step;
    let v = min + k * step;
    // Rounding up may leave the grid's last point.
    let v = if v > max { v - step } else { v };
    v as u32
}

impl OfferedSize {
    /// The offered size nearest to the request.
    fn nearest(&self, want_w: u32, want_h: u32) -> (u32, u32) {
        match *self {
            OfferedSize::Discrete { width, height } => (width, height),
            OfferedSize::Stepwise {
                min_width,
                max_width,
                step_width,
                min_height,
                max_height,
                step_height,
            } => (
                snap(want_w, min_width, max_width, step_width),
                snap(want_h, min_height, max_height, step_height),
            ),
        }
    }
}

struct Candidate {
    format: PixelFormat,
    width: u32,
    height: u32,
    max_fps: Option<f32>,
}

/// Orders sizes by policy step 1; smaller is better.
fn size_rank(width: u32, height: u32, want_w: u32, want_h: u32) -> (u8, i64) {
    let area = i64::from(width) * i64::from(height);
    if (width, height) == (want_w, want_h) {
        (0, 0)
    } else if width >= want_w && height >= want_h {
        (1, area)
    } else {
        (2, -area)
    }
}

/// Applies the policy in the module documentation; `None` when the device offers none of the
/// formats this program reads.
pub fn choose_format(offered: &[Offer], want_width: u32, want_height: u32) -> Option<Choice> {
    let candidates: Vec<Candidate> = offered
        .iter()
        .filter_map(|offer| {
            let format = PixelFormat::from_fourcc(&offer.fourcc)?;
            let (width, height) = offer.size.nearest(want_width, want_height);
            Some(Candidate {
                format,
                width,
                height,
                max_fps: offer.max_fps,
            })
        })
        .filter(|c| c.width > 0 && c.height > 0)
        .collect();
    let (width, height) = candidates
        .iter()
        .map(|c| (c.width, c.height))
        .min_by_key(|&(w, h)| size_rank(w, h, want_width, want_height))?;
    let at_size: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| (c.width, c.height) == (width, height))
        .collect();
    let best_of = |compressed: bool| {
        at_size
            .iter()
            .filter(|c| c.format.compressed() == compressed)
            .min_by_key(|c| PixelFormat::ALL.iter().position(|f| *f == c.format))
    };
    let format = match (best_of(false), best_of(true)) {
        (Some(_), Some(jpeg)) if too_slow(&at_size, jpeg.max_fps) => jpeg.format,
        (Some(raw), _) => raw.format,
        (None, Some(jpeg)) => jpeg.format,
        (None, None) => return None,
    };
    Some(Choice {
        format,
        width,
        height,
    })
}

/// Policy step 3: every uncompressed candidate is known to be slower than the threshold and
/// than MJPEG (whose rate may be unknown).
fn too_slow(at_size: &[&Candidate], jpeg_fps: Option<f32>) -> bool {
    at_size
        .iter()
        .filter(|c| !c.format.compressed())
        .all(|c| match c.max_fps {
            Some(fps) => fps < MIN_UNCOMPRESSED_FPS && !matches!(jpeg_fps, Some(j) if j <= fps),
            None => false,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(fourcc: &[u8; 4], width: u32, height: u32, max_fps: Option<f32>) -> Offer {
        Offer {
            fourcc: *fourcc,
            size: OfferedSize::Discrete { width, height },
            max_fps,
        }
    }

    fn choice(format: PixelFormat, width: u32, height: u32) -> Option<Choice> {
        Some(Choice {
            format,
            width,
            height,
        })
    }

    /// A typical UVC webcam: YUYV up to 1280x720 (slow there), MJPEG up to 1920x1080.
    fn webcam() -> Vec<Offer> {
        vec![
            offer(b"YUYV", 640, 480, Some(30.0)),
            offer(b"YUYV", 1280, 720, Some(7.5)),
            offer(b"MJPG", 640, 480, Some(30.0)),
            offer(b"MJPG", 1280, 720, Some(30.0)),
            offer(b"MJPG", 1920, 1080, Some(30.0)),
            offer(b"H264", 1920, 1080, Some(30.0)),
        ]
    }

    #[test]
    fn uncompressed_wins_at_the_requested_size_when_fast_enough() {
        assert_eq!(
            choose_format(&webcam(), 640, 480),
            choice(PixelFormat::Yuyv, 640, 480)
        );
    }

    #[test]
    fn mjpeg_wins_where_uncompressed_is_too_slow_or_absent() {
        assert_eq!(
            choose_format(&webcam(), 1280, 720),
            choice(PixelFormat::Mjpeg, 1280, 720)
        );
        assert_eq!(
            choose_format(&webcam(), 1920, 1080),
            choice(PixelFormat::Mjpeg, 1920, 1080)
        );
    }

    #[test]
    fn slow_uncompressed_stays_when_mjpeg_is_no_faster_or_rates_are_unknown() {
        let same = [
            offer(b"YUYV", 800, 600, Some(5.0)),
            offer(b"MJPG", 800, 600, Some(5.0)),
        ];
        assert_eq!(
            choose_format(&same, 800, 600),
            choice(PixelFormat::Yuyv, 800, 600)
        );
        let unknown = [
            offer(b"YUYV", 800, 600, None),
            offer(b"MJPG", 800, 600, Some(30.0)),
        ];
        assert_eq!(
            choose_format(&unknown, 800, 600),
            choice(PixelFormat::Yuyv, 800, 600)
        );
        let mjpeg_unknown = [
            offer(b"YUYV", 800, 600, Some(5.0)),
            offer(b"MJPG", 800, 600, None),
        ];
        assert_eq!(
            choose_format(&mjpeg_unknown, 800, 600),
            choice(PixelFormat::Mjpeg, 800, 600)
        );
    }

    #[test]
    fn nv12_beats_yuyv_beats_mjpeg_at_equal_size() {
        let all = [
            offer(b"MJPG", 640, 480, Some(30.0)),
            offer(b"YUYV", 640, 480, Some(30.0)),
            offer(b"NV12", 640, 480, Some(30.0)),
        ];
        assert_eq!(
            choose_format(&all, 640, 480),
            choice(PixelFormat::Nv12, 640, 480)
        );
        assert_eq!(
            choose_format(&all[..2], 640, 480),
            choice(PixelFormat::Yuyv, 640, 480)
        );
        // A fast NV12 keeps MJPEG out even when YUYV alone would be too slow.
        let mixed = [
            offer(b"YUYV", 640, 480, Some(5.0)),
            offer(b"NV12", 640, 480, Some(30.0)),
            offer(b"MJPG", 640, 480, Some(30.0)),
        ];
        assert_eq!(
            choose_format(&mixed, 640, 480),
            choice(PixelFormat::Nv12, 640, 480)
        );
    }

    #[test]
    fn without_the_exact_size_the_smallest_covering_then_the_largest() {
        // 1024x768 is not offered: 1280x720 does not cover its height, 1920x1080 does.
        assert_eq!(
            choose_format(&webcam(), 1024, 768),
            choice(PixelFormat::Mjpeg, 1920, 1080)
        );
        // Nothing covers 4K: take the largest.
        assert_eq!(
            choose_format(&webcam(), 3840, 2160),
            choice(PixelFormat::Mjpeg, 1920, 1080)
        );
        // 320x240 is covered by 640x480 in both formats: YUYV.
        assert_eq!(
            choose_format(&webcam(), 320, 240),
            choice(PixelFormat::Yuyv, 640, 480)
        );
    }

    #[test]
    fn stepwise_sizes_snap_to_their_grid() {
        let csi = [Offer {
            fourcc: *b"NV12",
            size: OfferedSize::Stepwise {
                min_width: 64,
                max_width: 3280,
                step_width: 16,
                min_height: 64,
                max_height: 2464,
                step_height: 2,
            },
            max_fps: None,
        }];
        assert_eq!(
            choose_format(&csi, 640, 480),
            choice(PixelFormat::Nv12, 640, 480)
        );
        assert_eq!(
            choose_format(&csi, 1000, 501),
            choice(PixelFormat::Nv12, 1008, 502)
        );
        assert_eq!(
            choose_format(&csi, 9000, 10),
            choice(PixelFormat::Nv12, 3280, 64)
        );
        assert_eq!(snap(100, 10, 95, 10), 90); // last grid point below max
        assert_eq!(snap(7, 0, 100, 0), 7); // a zero step is treated as continuous
    }

    #[test]
    fn nothing_usable_is_none() {
        assert_eq!(choose_format(&[], 640, 480), None);
        let foreign = [
            offer(b"H264", 640, 480, None),
            offer(b"GREY", 640, 480, None),
        ];
        assert_eq!(choose_format(&foreign, 640, 480), None);
        assert_eq!(choose_format(&[offer(b"YUYV", 0, 0, None)], 640, 480), None);
    }
}
