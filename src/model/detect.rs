//! Detector output -> boxes a user can read.

use serde::{Deserialize, Serialize};

/// COCO-80 class names, in the detector's 0-based class order.
pub const COCO_CLASSES: [&str; 80] = [
    "person",
    "bicycle",
    "car",
    "motorcycle",
    "airplane",
    "bus",
    "train",
    "truck",
    "boat",
    "traffic light",
    "fire hydrant",
    "stop sign",
    "parking meter",
    "bench",
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "backpack",
    "umbrella",
    "handbag",
    "tie",
    "suitcase",
    "frisbee",
    "skis",
    "snowboard",
    "sports ball",
    "kite",
    "baseball bat",
    "baseball glove",
    "skateboard",
    "surfboard",
    "tennis racket",
    "bottle",
    "wine glass",
    "cup",
    "fork",
    "knife",
    "spoon",
    "bowl",
    "banana",
    "apple",
    "sandwich",
    "orange",
    "broccoli",
    "carrot",
    "hot dog",
    "pizza",
    "donut",
    "cake",
    "chair",
    "couch",
    "potted plant",
    "bed",
    "dining table",
    "toilet",
    "tv",
    "laptop",
    "mouse",
    "remote",
    "keyboard",
    "cell phone",
    "microwave",
    "oven",
    "toaster",
    "sink",
    "refrigerator",
    "book",
    "clock",
    "vase",
    "scissors",
    "teddy bear",
    "hair drier",
    "toothbrush",
];

/// One box in detector-input pixels (512x512), or scaled to the source image.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
    pub score: f32,
    pub class: u32,
}

impl Detection {
    pub fn class_name(&self) -> &'static str {
        COCO_CLASSES
            .get(self.class as usize)
            .copied()
            .unwrap_or("unknown")
    }

    pub fn iou(&self, o: &Detection) -> f32 {
        let iw = (self.x2.min(o.x2) - self.x1.max(o.x1)).max(0.0);
        let ih = (self.y2.min(o.y2) - self.y1.max(o.y1)).max(0.0);
        let inter = iw * ih;
        let area = |d: &Detection| (d.x2 - d.x1).max(0.0) * (d.y2 - d.y1).max(0.0);
        inter / (area(self) + area(o) - inter).max(1e-9)
    }

    /// Map from detector-input coordinates to a `width` x `height` image.
    pub fn scaled(&self, sx: f32, sy: f32) -> Detection {
        Detection {
            x1: self.x1 * sx,
            y1: self.y1 * sy,
            x2: self.x2 * sx,
            y2: self.y2 * sy,
            ..*self
        }
    }
}

/// A detection as JSON shows it (`fchm decode`, the server's `detections`
/// topic and API): class name and id, score, box `[x1, y1, x2, y2]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelledBox {
    pub class: String,
    pub class_id: u32,
    pub score: f32,
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
}

impl From<&Detection> for LabelledBox {
    fn from(d: &Detection) -> Self {
        Self {
            class: d.class_name().to_owned(),
            class_id: d.class,
            score: d.score,
            bbox: [d.x1, d.y1, d.x2, d.y2],
        }
    }
}

/// Post-processing of the raw `[100, 6]` detections (x1, y1, x2, y2, score, class).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PostProcess {
    pub score_min: f32,
    pub iou: f32,
    pub max_detections: usize,
}

impl Default for PostProcess {
    /// The upstream package's settings for this detector.
    fn default() -> Self {
        Self {
            score_min: 0.2,
            iou: 0.4,
            max_detections: 10,
        }
    }
}

impl PostProcess {
    /// Greedy class-agnostic NMS in score order, as the upstream package does
    /// with `tf.image.nonMaxSuppression` over all boxes: candidates have
    /// score > `score_min`; a box is dropped when its IoU with a kept box
    /// reaches `iou`; ties keep input order. Same rule as `postprocess` in
    /// models/train/fchm_train/detector.py.
    pub fn apply(&self, raw: &[f32]) -> Vec<Detection> {
        let mut cands: Vec<Detection> = raw
            .chunks_exact(6)
            .filter(|r| r[4].is_finite() && r[4] > self.score_min && r[5].is_finite())
            .map(|r| Detection {
                x1: r[0],
                y1: r[1],
                x2: r[2],
                y2: r[3],
                score: r[4],
                class: r[5].max(0.0) as u32,
            })
            .collect();
        cands.sort_by(|a, b| b.score.total_cmp(&a.score));
        let mut keep: Vec<Detection> = Vec::new();
        for c in cands {
            if keep.len() >= self.max_detections {
                break;
            }
            if keep.iter().all(|k| k.iou(&c) < self.iou) {
                keep.push(c);
            }
        }
        keep
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nms_suppresses_overlaps_and_low_scores() {
        let raw = [
            0.0, 0.0, 10.0, 10.0, 0.9, 0.0, // kept
            1.0, 1.0, 10.0, 10.0, 0.8, 16.0, // IoU 0.81 with the first: suppressed
            20.0, 20.0, 30.0, 30.0, 0.5, 16.0, // kept
            40.0, 40.0, 50.0, 50.0, 0.1, 0.0, // below score_min
        ];
        let d = PostProcess::default().apply(&raw);
        assert_eq!(d.len(), 2);
        assert_eq!((d[0].class, d[1].class), (0, 16));
        assert_eq!(d[1].class_name(), "dog");
    }

    #[test]
    fn caps_the_count() {
        let raw: Vec<f32> = (0..20)
            .flat_map(|i| {
                let x = i as f32 * 20.0;
                [x, 0.0, x + 10.0, 10.0, 0.9, 1.0]
            })
            .collect();
        let pp = PostProcess {
            max_detections: 5,
            ..Default::default()
        };
        assert_eq!(pp.apply(&raw).len(), 5);
    }
}
