//! Image-codec baselines: code the detector-sized image, decode it, and let the
//! uncompressed detector look at the result.

use anyhow::{anyhow, bail, Context, Result};
use image::codecs::jpeg::JpegEncoder;
use image::{ImageFormat, RgbImage};

/// A conventional image codec with a 1..=100 quality knob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Baseline {
    /// The `image` crate's baseline JPEG encoder: 4:4:4 (no chroma
    /// subsampling), the standard Annex K Huffman tables, IJG-scaled
    /// quantisation tables.
    Jpeg,
    /// libwebp lossy (`WebPEncodeRGB`: default method and filters).
    Webp,
}

impl Baseline {
    pub const ALL: [Baseline; 2] = [Baseline::Jpeg, Baseline::Webp];

    /// Short lower-case name, as in the CSV.
    pub fn name(self) -> &'static str {
        match self {
            Baseline::Jpeg => "jpeg",
            Baseline::Webp => "webp",
        }
    }

    /// Display name.
    pub fn label(self) -> &'static str {
        match self {
            Baseline::Jpeg => "JPEG",
            Baseline::Webp => "WebP",
        }
    }

    /// Encode at `quality` (1..=100); returns the coded size in bytes and the decoded image.
    pub fn round_trip(self, img: &RgbImage, quality: u8) -> Result<(usize, RgbImage)> {
        if !(1..=100).contains(&quality) {
            bail!("quality {quality} outside 1..=100");
        }
        let (w, h) = img.dimensions();
        let (bytes, decoded) = match self {
            Baseline::Jpeg => {
                let mut buf = Vec::new();
                JpegEncoder::new_with_quality(&mut buf, quality)
                    .encode_image(img)
                    .context("JPEG encoding")?;
                let decoded = image::load_from_memory_with_format(&buf, ImageFormat::Jpeg)
                    .context("JPEG decoding")?
                    .to_rgb8();
                (buf.len(), decoded)
            }
            Baseline::Webp => {
                let coded = webp::Encoder::from_rgb(img.as_raw(), w, h)
                    .encode_simple(false, quality as f32)
                    .map_err(|e| anyhow!("WebP encoding: {e:?}"))?;
                let image = webp::Decoder::new(&coded)
                    .decode()
                    .ok_or_else(|| anyhow!("WebP decoding failed"))?;
                let raw: Vec<u8> = if image.is_alpha() {
                    image
                        .chunks_exact(4)
                        .flat_map(|p| [p[0], p[1], p[2]])
                        .collect()
                } else {
                    image.to_vec()
                };
                let decoded = RgbImage::from_raw(image.width(), image.height(), raw)
                    .ok_or_else(|| anyhow!("WebP decoder returned a short buffer"))?;
                (coded.len(), decoded)
            }
        };
        if decoded.dimensions() != (w, h) {
            bail!(
                "{} decoded to {:?}, expected {w}x{h}",
                self.label(),
                decoded.dimensions()
            );
        }
        Ok((bytes, decoded))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_image() -> RgbImage {
        RgbImage::from_fn(64, 48, |x, y| {
            image::Rgb([(x * 4) as u8, (y * 5) as u8, ((x + y) * 2) as u8])
        })
    }

    #[test]
    fn round_trips_keep_the_size_and_rate_grows_with_quality() {
        let img = test_image();
        for b in Baseline::ALL {
            let (low, dec_low) = b.round_trip(&img, 5).unwrap();
            let (high, dec_high) = b.round_trip(&img, 95).unwrap();
            assert_eq!(dec_low.dimensions(), (64, 48));
            assert!(high > low, "{}: {high} <= {low} bytes", b.name());
            // The high-quality decode is close to the original.
            let err: f64 = img
                .as_raw()
                .iter()
                .zip(dec_high.as_raw())
                .map(|(&a, &b)| (a as f64 - b as f64).abs())
                .sum::<f64>()
                / img.as_raw().len() as f64;
            assert!(err < 4.0, "{}: mean abs error {err}", b.name());
        }
        assert!(Baseline::Jpeg.round_trip(&img, 0).is_err());
    }
}
