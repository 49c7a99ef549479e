//! YCbCr → RGB for the raw layouts cameras and Y4M streams carry: packed YUYV, semi-planar NV12
//! and planar 4:2:0 / 4:2:2 / 4:1:1 / 4:4:4 / mono.
//!
//! BT.601 matrix, limited ("TV", Y 16..235, C 16..240) range unless told full range. Integer
//! fixed point (16 fractional bits) so every CPU the daemon runs on produces the same pixels and
//! no float unit is needed on small ARM cores. Chroma is replicated over the pixels it covers
//! (nearest neighbour): the frames feed a detector, which gains nothing from interpolated chroma.

use image::RgbImage;

/// Quantisation range of the Y, Cb and Cr samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Range {
    /// Y 16..=235, Cb/Cr 16..=240: what cameras and video files use unless they say otherwise.
    #[default]
    Limited,
    /// Y, Cb, Cr 0..=255 (JPEG/JFIF, Y4M `XCOLORRANGE=FULL`).
    Full,
}

/// Chroma subsampling of a planar frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subsampling {
    /// Chroma halved both ways (I420; Y4M 420jpeg/420mpeg2/420paldv/420).
    S420,
    /// Chroma halved horizontally.
    S422,
    /// Chroma quartered horizontally.
    S411,
    /// Full-resolution chroma.
    S444,
    /// Luma only.
    Mono,
}

impl Subsampling {
    /// Horizontal and vertical chroma decimation; `None` when there are no chroma planes.
    fn factors(self) -> Option<(usize, usize)> {
        match self {
            Subsampling::S420 => Some((2, 2)),
            Subsampling::S422 => Some((2, 1)),
            Subsampling::S411 => Some((4, 1)),
            Subsampling::S444 => Some((1, 1)),
            Subsampling::Mono => None,
        }
    }
}

/// Geometry of a planar frame stored as Y, then Cb, then Cr, each plane tightly packed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanarLayout {
    pub width: u32,
    pub height: u32,
    pub subsampling: Subsampling,
}

impl PlanarLayout {
    /// Size of one chroma plane; partial chroma blocks at odd edges round up.
    pub fn chroma_size(&self) -> (usize, usize) {
        match self.subsampling.factors() {
            Some((sx, sy)) => (
                (self.width as usize).div_ceil(sx),
                (self.height as usize).div_ceil(sy),
            ),
            None => (0, 0),
        }
    }

    /// Bytes in one frame (all planes), `None` if that does not fit in memory arithmetic.
    pub fn frame_len(&self) -> Option<usize> {
        let luma = (self.width as usize).checked_mul(self.height as usize)?;
        let (cw, ch) = self.chroma_size();
        luma.checked_add(cw.checked_mul(ch)?.checked_mul(2)?)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    #[error("{format} frame has zero size ({width}x{height})")]
    ZeroSize {
        format: &'static str,
        width: u32,
        height: u32,
    },
    #[error("{format} {width}x{height}: stride {stride} is less than a row's {row} bytes")]
    StrideTooSmall {
        format: &'static str,
        width: u32,
        height: u32,
        stride: usize,
        row: usize,
    },
    #[error("{format} {width}x{height}: buffer holds {got} bytes, the frame needs {needed}")]
    BufferTooShort {
        format: &'static str,
        width: u32,
        height: u32,
        needed: usize,
        got: usize,
    },
    #[error("{format} {width}x{height}: frame size overflows")]
    TooLarge {
        format: &'static str,
        width: u32,
        height: u32,
    },
}

/// Fixed-point BT.601 coefficients, scaled by 2^16. Derived from Kr = 0.299, Kb = 0.114:
/// R = Y' + 2(1-Kr)·Cr, B = Y' + 2(1-Kb)·Cb, G = Y' − (2(1-Kb)Kb/Kg)·Cb − (2(1-Kr)Kr/Kg)·Cr,
/// with Y' and C rescaled by 255/219 and 255/224 for limited range.
struct Coeffs {
    y_offset: i32,
    y_gain: i32,
    r_from_cr: i32,
    g_from_cb: i32,
    g_from_cr: i32,
    b_from_cb: i32,
}

const LIMITED: Coeffs = Coeffs {
    y_offset: 16,
    y_gain: 76309,
    r_from_cr: 104597,
    g_from_cb: 25675,
    g_from_cr: 53279,
    b_from_cb: 132201,
};

const FULL: Coeffs = Coeffs {
    y_offset: 0,
    y_gain: 65536,
    r_from_cr: 91881,
    g_from_cb: 22553,
    g_from_cr: 46802,
    b_from_cb: 116130,
};

const HALF: i32 = 1 << 15;

impl Coeffs {
    fn for_range(range: Range) -> &'static Coeffs {
        match range {
            Range::Limited => &LIMITED,
            Range::Full => &FULL,
        }
    }

    #[inline]
    fn rgb(&self, y: u8, cb: u8, cr: u8) -> [u8; 3] {
        // Adding HALF before the arithmetic shift rounds to nearest for negative sums too.
        let y = (i32::from(y) - self.y_offset) * self.y_gain + HALF;
        let cb = i32::from(cb) - 128;
        let cr = i32::from(cr) - 128;
        [
            clamp((y + self.r_from_cr * cr) >> 16),
            clamp((y - self.g_from_cb * cb - self.g_from_cr * cr) >> 16),
            clamp((y + self.b_from_cb * cb) >> 16),
        ]
    }
}

#[inline]
fn clamp(v: i32) -> u8 {
    v.clamp(0, 255) as u8
}

fn check_size(format: &'static str, width: u32, height: u32) -> Result<(), ConvertError> {
    if width == 0 || height == 0 {
        return Err(ConvertError::ZeroSize {
            format,
            width,
            height,
        });
    }
    Ok(())
}

/// Bytes a strided image of `rows` rows needs: the last row need not be padded to the stride.
fn ensure_len(
    format: &'static str,
    width: u32,
    height: u32,
    needed: usize,
    got: usize,
) -> Result<(), ConvertError> {
    if got < needed {
        return Err(ConvertError::BufferTooShort {
            format,
            width,
            height,
            needed,
            got,
        });
    }
    Ok(())
}

fn strided_len(stride: usize, row: usize, rows: usize) -> Option<usize> {
    stride.checked_mul(rows.checked_sub(1)?)?.checked_add(row)
}

/// Packed 4:2:2, byte order Y0 Cb Y1 Cr (V4L2 `YUYV`, a.k.a. YUY2). `stride` is the distance
/// between rows in bytes (V4L2 `bytesperline`). An odd width still occupies whole 4-byte pairs.
pub fn yuyv_to_rgb(
    src: &[u8],
    width: u32,
    height: u32,
    stride: usize,
    range: Range,
) -> Result<RgbImage, ConvertError> {
    const FORMAT: &str = "YUYV";
    check_size(FORMAT, width, height)?;
    let (w, h) = (width as usize, height as usize);
    let row = w.div_ceil(2) * 4;
    if stride < row {
        return Err(ConvertError::StrideTooSmall {
            format: FORMAT,
            width,
            height,
            stride,
            row,
        });
    }
    let needed = strided_len(stride, row, h).ok_or(ConvertError::TooLarge {
        format: FORMAT,
        width,
        height,
    })?;
    ensure_len(FORMAT, width, height, needed, src.len())?;
    let c = Coeffs::for_range(range);
    let mut out = RgbImage::new(width, height);
    for (dst, line) in out.chunks_exact_mut(w * 3).zip(src.chunks(stride)) {
        for (x, px) in dst.chunks_exact_mut(3).enumerate() {
            let pair = &line[(x / 2) * 4..(x / 2) * 4 + 4];
            let y = pair[(x % 2) * 2];
            px.copy_from_slice(&c.rgb(y, pair[1], pair[3]));
        }
    }
    Ok(out)
}

/// Semi-planar 4:2:0 (V4L2 `NV12`): a Y plane, then at `stride * height` an interleaved Cb Cr
/// plane with the same stride and half the rows (rounded up).
pub fn nv12_to_rgb(
    src: &[u8],
    width: u32,
    height: u32,
    stride: usize,
    range: Range,
) -> Result<RgbImage, ConvertError> {
    const FORMAT: &str = "NV12";
    check_size(FORMAT, width, height)?;
    let (w, h) = (width as usize, height as usize);
    let chroma_row = w.div_ceil(2) * 2;
    if stride < chroma_row {
        return Err(ConvertError::StrideTooSmall {
            format: FORMAT,
            width,
            height,
            stride,
            row: chroma_row,
        });
    }
    let too_large = ConvertError::TooLarge {
        format: FORMAT,
        width,
        height,
    };
    let chroma_start = stride.checked_mul(h).ok_or(too_large.clone())?;
    let needed = strided_len(stride, chroma_row, h.div_ceil(2))
        .and_then(|n| n.checked_add(chroma_start))
        .ok_or(too_large)?;
    ensure_len(FORMAT, width, height, needed, src.len())?;
    let c = Coeffs::for_range(range);
    let (luma, chroma) = src.split_at(chroma_start);
    let mut out = RgbImage::new(width, height);
    for (y_row, dst) in out.chunks_exact_mut(w * 3).enumerate() {
        let yl = &luma[y_row * stride..y_row * stride + w];
        let cl = &chroma[(y_row / 2) * stride..(y_row / 2) * stride + chroma_row];
        for (x, px) in dst.chunks_exact_mut(3).enumerate() {
            let i = (x / 2) * 2;
            px.copy_from_slice(&c.rgb(yl[x], cl[i], cl[i + 1]));
        }
    }
    Ok(out)
}

/// Planar Y, Cb, Cr planes stored back to back without padding (I420 and what Y4M carries).
pub fn planar_to_rgb(
    src: &[u8],
    layout: PlanarLayout,
    range: Range,
) -> Result<RgbImage, ConvertError> {
    const FORMAT: &str = "planar YCbCr";
    let PlanarLayout { width, height, .. } = layout;
    check_size(FORMAT, width, height)?;
    let needed = layout.frame_len().ok_or(ConvertError::TooLarge {
        format: FORMAT,
        width,
        height,
    })?;
    ensure_len(FORMAT, width, height, needed, src.len())?;
    let c = Coeffs::for_range(range);
    let w = width as usize;
    let (luma, chroma) = src.split_at(w * height as usize);
    let mut out = RgbImage::new(width, height);
    let Some((sx, sy)) = layout.subsampling.factors() else {
        for (dst, &y) in out.chunks_exact_mut(3).zip(luma) {
            dst.copy_from_slice(&c.rgb(y, 128, 128));
        }
        return Ok(out);
    };
    let (cw, ch) = layout.chroma_size();
    let (cb_plane, cr_plane) = chroma.split_at(cw * ch);
    for (y_row, dst) in out.chunks_exact_mut(w * 3).enumerate() {
        let yl = &luma[y_row * w..(y_row + 1) * w];
        let crow = (y_row / sy) * cw;
        let cbl = &cb_plane[crow..crow + cw];
        let crl = &cr_plane[crow..crow + cw];
        for (x, px) in dst.chunks_exact_mut(3).enumerate() {
            px.copy_from_slice(&c.rgb(yl[x], cbl[x / sx], crl[x / sx]));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// BT.601 100 % colour bars as 8-bit limited-range Y'CbCr (the published values) with the
    /// RGB each must come back as.
    const BARS: [([u8; 3], [u8; 3]); 8] = [
        ([235, 128, 128], [255, 255, 255]), // white
        ([210, 16, 146], [255, 255, 0]),    // yellow
        ([170, 166, 16], [0, 255, 255]),    // cyan
        ([145, 54, 34], [0, 255, 0]),       // green
        ([106, 202, 222], [255, 0, 255]),   // magenta
        ([81, 90, 240], [255, 0, 0]),       // red
        ([41, 240, 110], [0, 0, 255]),      // blue
        ([16, 128, 128], [0, 0, 0]),        // black
    ];

    fn assert_close(got: &[u8], want: &[u8], what: &str) {
        for (g, w) in got.iter().zip(want) {
            assert!(g.abs_diff(*w) <= 1, "{what}: got {got:?}, want {want:?}");
        }
    }

    fn i420(w: u32, h: u32, ycc: [u8; 3], sub: Subsampling) -> (Vec<u8>, PlanarLayout) {
        let layout = PlanarLayout {
            width: w,
            height: h,
            subsampling: sub,
        };
        let luma = (w * h) as usize;
        let mut buf = vec![ycc[0]; luma];
        let (cw, ch) = layout.chroma_size();
        buf.extend(vec![ycc[1]; cw * ch]);
        buf.extend(vec![ycc[2]; cw * ch]);
        (buf, layout)
    }

    #[test]
    fn limited_range_colour_bars_in_every_layout() {
        for (ycc, rgb) in BARS {
            let [y, cb, cr] = ycc;
            let yuyv = yuyv_to_rgb(&[y, cb, y, cr], 2, 1, 4, Range::Limited).unwrap();
            assert_close(yuyv.as_raw(), &[rgb, rgb].concat(), "YUYV");
            let nv12 = nv12_to_rgb(&[y, y, y, y, cb, cr], 2, 2, 2, Range::Limited).unwrap();
            assert_close(nv12.as_raw(), &rgb.repeat(4), "NV12");
            for sub in [
                Subsampling::S420,
                Subsampling::S422,
                Subsampling::S411,
                Subsampling::S444,
            ] {
                let (buf, layout) = i420(4, 2, ycc, sub);
                let img = planar_to_rgb(&buf, layout, Range::Limited).unwrap();
                assert_close(img.as_raw(), &rgb.repeat(8), &format!("{sub:?}"));
            }
        }
    }

    #[test]
    fn limited_black_and_white_are_exact_and_out_of_range_clamps() {
        let img = yuyv_to_rgb(
            &[16, 128, 235, 128, 0, 128, 255, 128],
            4,
            1,
            8,
            Range::Limited,
        )
        .unwrap();
        assert_eq!(
            img.as_raw(),
            &[0, 0, 0, 255, 255, 255, 0, 0, 0, 255, 255, 255]
        );
    }

    #[test]
    fn full_range_uses_the_jfif_matrix() {
        // Y=0/255 grey ends, and pure red 255,0,0 encoded with the JFIF forward matrix.
        let img = planar_to_rgb(
            &[0, 255, 76, 76, 128, 85, 128, 255],
            PlanarLayout {
                width: 4,
                height: 1,
                subsampling: Subsampling::S422,
            },
            Range::Full,
        );
        // 4:2:2 chroma: pixels 0-1 share (128,128), pixels 2-3 share (85,255).
        assert_close(
            img.unwrap().as_raw(),
            &[0, 0, 0, 255, 255, 255, 255, 0, 0, 255, 0, 0],
            "full range",
        );
        // The same Y in limited range is a different grey: the range switch must take effect.
        let lim = planar_to_rgb(
            &[0, 255],
            PlanarLayout {
                width: 2,
                height: 1,
                subsampling: Subsampling::Mono,
            },
            Range::Limited,
        )
        .unwrap();
        assert_eq!(lim.as_raw(), &[0, 0, 0, 255, 255, 255]);
        let full_mid = planar_to_rgb(
            &[100],
            PlanarLayout {
                width: 1,
                height: 1,
                subsampling: Subsampling::Mono,
            },
            Range::Full,
        )
        .unwrap();
        assert_eq!(full_mid.as_raw(), &[100, 100, 100]);
    }

    #[test]
    fn chroma_of_odd_sized_frames_rounds_up_and_lands_on_the_right_pixels() {
        // 3x3 I420: chroma planes 2x2. Give each chroma sample its own colour and check the
        // pixel at the odd edge uses the last (partial) chroma block.
        let layout = PlanarLayout {
            width: 3,
            height: 3,
            subsampling: Subsampling::S420,
        };
        assert_eq!(layout.chroma_size(), (2, 2));
        assert_eq!(layout.frame_len(), Some(9 + 8));
        let mut buf = vec![126u8; 9];
        buf.extend([90, 128, 128, 240]); // Cb: red-ish, grey, grey, blue-ish
        buf.extend([240, 128, 128, 16]); // Cr
        let img = planar_to_rgb(&buf, layout, Range::Limited).unwrap();
        let red = img.get_pixel(1, 1).0;
        assert!(red[0] > 200 && red[2] < 60, "{red:?}");
        let blue = img.get_pixel(2, 2).0;
        assert!(blue[2] > 200 && blue[0] < 60, "{blue:?}");
        assert_eq!(img.get_pixel(2, 0).0, img.get_pixel(0, 2).0); // both grey
    }

    #[test]
    fn odd_width_yuyv_and_nv12_with_padding_strides() {
        // 3x2 YUYV with a 12-byte stride (8 bytes of pixels + 4 padding).
        let mut src = Vec::new();
        for (y, cb, cr) in [(81, 90, 240), (41, 240, 110)] {
            src.extend([y, cb, y, cr, y, cb, 0, cr, 0xAA, 0xAA, 0xAA, 0xAA]);
        }
        let img = yuyv_to_rgb(&src[..20], 3, 2, 12, Range::Limited).unwrap();
        for x in 0..3 {
            assert_close(&img.get_pixel(x, 0).0, &[255, 0, 0], "row 0");
            assert_close(&img.get_pixel(x, 1).0, &[0, 0, 255], "row 1");
        }
        // 3x3 NV12, stride 5: chroma rows of 4 bytes, 2 of them.
        let mut nv = vec![145u8; 15];
        nv.extend([54, 34, 240, 110, 0]);
        nv.extend([54, 34, 240, 110]);
        let img = nv12_to_rgb(&nv, 3, 3, 5, Range::Limited).unwrap();
        assert_close(&img.get_pixel(0, 2).0, &[0, 255, 0], "NV12 left");
        let right = img.get_pixel(2, 2).0;
        assert!(right[2] > 200 && right[1] < 200, "{right:?}");
    }

    #[test]
    fn short_buffers_and_bad_strides_are_errors_not_panics() {
        assert_eq!(
            yuyv_to_rgb(&[0; 15], 4, 2, 8, Range::Limited),
            Err(ConvertError::BufferTooShort {
                format: "YUYV",
                width: 4,
                height: 2,
                needed: 16,
                got: 15
            })
        );
        assert!(matches!(
            yuyv_to_rgb(&[0; 64], 4, 2, 7, Range::Limited),
            Err(ConvertError::StrideTooSmall { row: 8, .. })
        ));
        assert!(matches!(
            nv12_to_rgb(&[0; 23], 4, 4, 4, Range::Limited),
            Err(ConvertError::BufferTooShort { needed: 24, .. })
        ));
        let layout = PlanarLayout {
            width: 5,
            height: 3,
            subsampling: Subsampling::S420,
        };
        assert!(matches!(
            planar_to_rgb(&[0; 26], layout, Range::Full),
            Err(ConvertError::BufferTooShort {
                needed: 27,
                got: 26,
                ..
            })
        ));
        assert!(matches!(
            nv12_to_rgb(&[], 0, 4, 4, Range::Limited),
            Err(ConvertError::ZeroSize { .. })
        ));
        assert!(matches!(
            yuyv_to_rgb(&[0; 8], u32::MAX, u32::MAX, usize::MAX, Range::Limited),
            Err(ConvertError::TooLarge { .. } | ConvertError::BufferTooShort { .. })
        ));
    }
}
