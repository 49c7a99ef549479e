//! The picture of a frame while no human layer exists: the decoded feature
//! map P̂ made visible, so a person can see where the detector's attention
//! is and check the boxes against it.
//!
//! Per position, the mean magnitude over channels; the picture has the
//! source's aspect ratio and is served as a JPEG (`X-Fchm-View: features`).

use image::codecs::jpeg::JpegEncoder;
use image::{ExtendedColorType, ImageEncoder};

/// Longest side of a rendered picture: enough for a dashboard tile, and a
/// bound on the work a header claiming a 65535-pixel source can cause.
pub const MAX_SIDE: u32 = 768;

#[derive(Debug, Clone, PartialEq)]
pub struct FeatureView {
    pub sequence: u64,
    /// The source image's size (from the frame header).
    pub source_width: u32,
    pub source_height: u32,
    /// Channel-mean |P̂| on the feature grid, scaled to 0..=1.
    grid: Vec<f32>,
    grid_h: usize,
    grid_w: usize,
}

impl FeatureView {
    /// From features `[C][H][W]` (`shape = [C, H, W]`).
    pub fn from_features(
        sequence: u64,
        features: &[f32],
        shape: [usize; 3],
        source_width: u32,
        source_height: u32,
    ) -> Self {
        let [c, h, w] = shape;
        let plane = h * w;
        let mut grid = vec![0f32; plane];
        if c > 0 && features.len() == c * plane {
            for ch in features.chunks_exact(plane) {
                for (g, v) in grid.iter_mut().zip(ch) {
                    *g += v.abs();
                }
            }
        }
        // Scale by a high percentile, not the max: one hot spot would
        // otherwise leave the rest of the picture black.
        let mut finite: Vec<f32> = grid.iter().copied().filter(|v| v.is_finite()).collect();
        let lo = finite.iter().copied().reduce(f32::min).unwrap_or(0.0);
        let p99 = finite.len().saturating_sub(1) * 99 / 100;
        let hi = if finite.is_empty() {
            1.0
        } else {
            *finite.select_nth_unstable_by(p99, f32::total_cmp).1
        };
        let span = (hi - lo).max(f32::EPSILON);
        for g in &mut grid {
            *g = if g.is_finite() {
                ((*g - lo) / span).clamp(0.0, 1.0)
            } else {
                0.0
            };
        }
        Self {
            sequence,
            source_width,
            source_height,
            grid,
            grid_h: h,
            grid_w: w,
        }
    }

    /// Output size: the source's aspect ratio, longest side at most [`MAX_SIDE`].
    pub fn size(&self) -> (u32, u32) {
        let (w, h) = (self.source_width.max(1), self.source_height.max(1));
        let scale = (MAX_SIDE as f64 / w.max(h) as f64).min(1.0);
        (
            ((w as f64 * scale).round() as u32).max(1),
            ((h as f64 * scale).round() as u32).max(1),
        )
    }

    /// Greyscale pixels, bilinear from the feature grid.
    pub fn pixels(&self) -> (u32, u32, Vec<u8>) {
        let (w, h) = self.size();
        let mut out = Vec::with_capacity((w * h) as usize);
        let (gw, gh) = (self.grid_w.max(1), self.grid_h.max(1));
        let at = |x: usize, y: usize| self.grid.get(y * gw + x).copied().unwrap_or(0.0);
        for y in 0..h {
            let fy = ((y as f32 + 0.5) * gh as f32 / h as f32 - 0.5).clamp(0.0, (gh - 1) as f32);
            let (y0, ty) = (fy.floor() as usize, fy.fract());
            let y1 = (y0 + 1).min(gh - 1);
            for x in 0..w {
                let fx =
                    ((x as f32 + 0.5) * gw as f32 / w as f32 - 0.5).clamp(0.0, (gw - 1) as f32);
                let (x0, tx) = (fx.floor() as usize, fx.fract());
                let x1 = (x0 + 1).min(gw - 1);
                let top = at(x0, y0) * (1.0 - tx) + at(x1, y0) * tx;
                let bottom = at(x0, y1) * (1.0 - tx) + at(x1, y1) * tx;
                let v = top * (1.0 - ty) + bottom * ty;
                out.push((v * 255.0).round().clamp(0.0, 255.0) as u8);
            }
        }
        (w, h, out)
    }

    pub fn jpeg(&self) -> Result<Vec<u8>, image::ImageError> {
        let (w, h, px) = self.pixels();
        jpeg(&px, w, h, ExtendedColorType::L8)
    }
}

/// The dashboard's JPEG quality: pictures for people, not for measurement.
const QUALITY: u8 = 85;

fn jpeg(
    px: &[u8],
    w: u32,
    h: u32,
    colour: ExtendedColorType,
) -> Result<Vec<u8>, image::ImageError> {
    let mut buf = Vec::new();
    JpegEncoder::new_with_quality(&mut buf, QUALITY).write_image(px, w, h, colour)?;
    Ok(buf)
}

/// An RGB picture (a human view) as JPEG.
pub fn encode_jpeg(img: &image::RgbImage) -> Result<Vec<u8>, image::ImageError> {
    jpeg(
        img.as_raw(),
        img.width(),
        img.height(),
        ExtendedColorType::Rgb8,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bright_where_the_features_are_strong() {
        // Two channels on a 2x2 grid; energy only in the bottom-right cell.
        let f = [0.0, 0.0, 0.0, 4.0, 0.0, 0.0, 0.0, -4.0];
        let v = FeatureView::from_features(7, &f, [2, 2, 2], 100, 100);
        let (w, h, px) = v.pixels();
        assert_eq!((w, h), (100, 100));
        assert_eq!(px[0], 0);
        assert_eq!(px[(99 * 100 + 99) as usize], 255);
    }

    #[test]
    fn size_keeps_aspect_and_is_bounded() {
        let v = FeatureView::from_features(0, &[], [0, 0, 0], 65535, 1000);
        assert_eq!(v.size(), (MAX_SIDE, 12));
        let v = FeatureView::from_features(0, &[], [0, 0, 0], 640, 480);
        assert_eq!(v.size(), (640, 480));
    }

    #[test]
    fn encodes_a_decodable_jpeg() {
        let f: Vec<f32> = (0..3 * 8 * 8).map(|i| (i % 7) as f32).collect();
        let v = FeatureView::from_features(1, &f, [3, 8, 8], 320, 240);
        let jpg = v.jpeg().unwrap();
        let img = image::load_from_memory(&jpg).unwrap();
        assert_eq!((img.width(), img.height()), (320, 240));
    }
}
