//! Camera image -> the detector's input tensor, as the manifest's `input` says.

use image::{imageops::FilterType, RgbImage};

use super::manifest::InputSpec;

/// Resize the whole image to the input size (no letterbox: the detector was
/// trained on stretched inputs) and lay it out NCHW, RGB, 0..255.
///
/// The triangle filter widens with the downscale factor, like PIL's
/// `Image.resize(BILINEAR)` that the Python side uses, so both see nearly the
/// same pixels (not bit-identical: rounding differs by at most one level).
pub fn to_input(img: &RgbImage, spec: &InputSpec) -> Vec<f32> {
    let (w, h) = (spec.width, spec.height);
    let resized;
    let img = if img.dimensions() == (w, h) {
        img
    } else {
        resized = image::imageops::resize(img, w, h, FilterType::Triangle);
        &resized
    };
    let plane = (w * h) as usize;
    let mut out = vec![0f32; 3 * plane];
    for (i, p) in img.pixels().enumerate() {
        for c in 0..3 {
            out[c * plane + i] = p[c] as f32;
        }
    }
    out
}
