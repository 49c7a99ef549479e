//! The `test-scene` source: a short real clip compiled into the binary, looped forever.
//!
//! 48 JPEG frames (384x288) of OpenCV's `vtest.avi` pedestrian clip, every third frame of the
//! 10 fps original, so consecutive frames are 0.3 s apart and the clip's own rate is 10/3 fps.
//! Provenance, the command that made them and the licence: `assets/test-scene/README.md`.
//! Embedding them means the daemon can demonstrate and self-test with no camera and no files.

use image::RgbImage;

use super::mjpeg::decode_jpeg;
use super::{CaptureError, Source};

/// Frame rate of the clip: 10 fps source, every 3rd frame kept.
pub(crate) const FPS: f32 = 10.0 / 3.0;
pub(crate) const WIDTH: u32 = 384;
pub(crate) const HEIGHT: u32 = 288;

macro_rules! frames {
    ($($n:literal)*) => {
        [$(include_bytes!(concat!("../../assets/test-scene/frame-", $n, ".jpg")) as &[u8]),*]
    };
}

static FRAMES: [&[u8]; 48] = frames!(
"000" "001" "002" "003" "004" "005" "006" "007"
"008" "009" "010" "011" "012" "013" "014" "015"
"016" "017" "018" "019" "020" "021" "022" "023"
"024" "025" "026" "027" "028" "029" "030" "031"
"032" "033" "034" "035" "036" "037" "038" "039"
"040" "041" "042" "043" "044" "045" "046" "047"
);

/// Frame `index` (modulo the clip's length) of the test scene, decoded.
pub fn frame(index: usize) -> Result<RgbImage, CaptureError> {
    let index = index % FRAMES.len();
    decode_jpeg(FRAMES[index]).map_err(|source| CaptureError::Scene { index, source })
}

pub(crate) struct TestScene {
    next: usize,
}

impl TestScene {
    pub(crate) fn new() -> Self {
        TestScene { next: 0 }
    }
}

impl Source for TestScene {
    fn next_frame(&mut self) -> Result<Option<RgbImage>, CaptureError> {
        let index = self.next;
        self.next = (self.next + 1) % FRAMES.len();
        // Decoded on demand: ~1 MB of JPEG instead of ~16 MB of RGB held for the process life.
        frame(index).map(Some)
    }

    fn describe(&self) -> String {
        format!(
            "test-scene ({} frames of OpenCV vtest.avi, {WIDTH}x{HEIGHT}, looped)",
            FRAMES.len()
        )
    }

    fn native_fps(&self) -> Option<f32> {
        Some(FPS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_frame_decodes_at_the_documented_size_and_the_clip_loops() {
        let mut scene = TestScene::new();
        let mut first = None;
        let mut previous: Option<RgbImage> = None;
        for i in 0..FRAMES.len() {
            let img = scene.next_frame().unwrap().unwrap();
            assert_eq!(img.dimensions(), (WIDTH, HEIGHT), "frame {i}");
            if let Some(prev) = &previous {
                // People walk: consecutive frames must differ (a stuck index would not).
                assert_ne!(prev, &img, "frame {i} repeats frame {}", i - 1);
            }
            first.get_or_insert_with(|| img.clone());
            previous = Some(img);
        }
        assert_eq!(scene.next_frame().unwrap(), first);
        assert_eq!(scene.native_fps(), Some(10.0 / 3.0));
    }
}
