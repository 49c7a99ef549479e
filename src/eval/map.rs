//! Fidelity mAP@0.5: detections after coding against the uncompressed
//! detector's, exactly as `models/train/fchm_train/metrics.py` computes it.
//!
//! Per class present in the ground truth, predictions over all images are
//! ranked by score (stable: equal scores keep image order, then row order)
//! and matched greedily to the unmatched ground-truth box of the same class
//! and image with the highest IoU, a match needing IoU >= 0.5. AP is the
//! COCO 101-point interpolated area under the precision envelope; mAP is
//! the mean over classes. IoU is computed in f64 like numpy does.

use std::collections::BTreeSet;

use crate::model::Detection;

/// A prediction matches a ground-truth box at IoU >= this.
pub const IOU_MATCH: f64 = 0.5;

/// IoU of two boxes in f64, with the reference's 1e-9 floor on the union.
fn iou(a: &Detection, b: &Detection) -> f64 {
    let (ax1, ay1, ax2, ay2) = (a.x1 as f64, a.y1 as f64, a.x2 as f64, a.y2 as f64);
    let (bx1, by1, bx2, by2) = (b.x1 as f64, b.y1 as f64, b.x2 as f64, b.y2 as f64);
    let iw = (ax2.min(bx2) - ax1.max(bx1)).max(0.0);
    let ih = (ay2.min(by2) - ay1.max(by1)).max(0.0);
    let inter = iw * ih;
    let area = |x1: f64, y1: f64, x2: f64, y2: f64| (x2 - x1).max(0.0) * (y2 - y1).max(0.0);
    inter / (area(ax1, ay1, ax2, ay2) + area(bx1, by1, bx2, by2) - inter).max(1e-9)
}

/// AP of one class: `gts[i]` / `preds[i]` are image i's boxes of that class.
fn average_precision(gts: &[Vec<&Detection>], preds: &[Vec<&Detection>]) -> f64 {
    let n_gt: usize = gts.iter().map(Vec::len).sum();
    let mut ranked: Vec<(usize, &Detection)> = preds
        .iter()
        .enumerate()
        .flat_map(|(i, ps)| ps.iter().map(move |p| (i, *p)))
        .collect();
    // Stable sort, like Python's list.sort: ties keep image order, then row order.
    ranked.sort_by(|a, b| b.1.score.total_cmp(&a.1.score));

    let mut used: Vec<Vec<bool>> = gts.iter().map(|g| vec![false; g.len()]).collect();
    let mut tp = Vec::with_capacity(ranked.len());
    for &(i, p) in &ranked {
        let mut best: Option<(usize, f64)> = None;
        for (j, g) in gts[i].iter().enumerate() {
            let v = if used[i][j] { -1.0 } else { iou(p, g) };
            // argmax: the first of equal maxima wins.
            match best {
                Some((_, b)) if v <= b => {}
                _ => best = Some((j, v)),
            }
        }
        let hit = match best {
            Some((j, v)) if v >= IOU_MATCH => {
                used[i][j] = true;
                true
            }
            _ => false,
        };
        tp.push(hit);
    }

    let mut recall = Vec::with_capacity(tp.len());
    let mut precision = Vec::with_capacity(tp.len());
    let mut ctp = 0usize;
    for (k, &hit) in tp.iter().enumerate() {
        ctp += usize::from(hit);
        recall.push(ctp as f64 / n_gt as f64);
        precision.push(ctp as f64 / (k + 1) as f64);
    }
    // Precision envelope: the best precision at this recall or beyond.
    for k in (0..precision.len().saturating_sub(1)).rev() {
        precision[k] = precision[k].max(precision[k + 1]);
    }
    // 101 recall points as numpy's linspace(0, 1, 101) gives them (i * 0.01).
    let mut ap = 0.0;
    for i in 0..=100 {
        let r = if i == 100 { 1.0 } else { i as f64 * 0.01 };
        // searchsorted(recall, r, side="left"): the first index with recall >= r.
        let hit = recall.partition_point(|&x| x < r);
        if hit < precision.len() {
            ap += precision[hit];
        }
    }
    ap / 101.0
}

/// Fidelity mAP@0.5 over images: `gts[i]`, `preds[i]` are image i's boxes.
///
/// `None` when the ground truth has no box at all (the reference returns NaN).
pub fn mean_ap(gts: &[Vec<Detection>], preds: &[Vec<Detection>]) -> Option<f64> {
    assert_eq!(gts.len(), preds.len(), "one prediction list per image");
    let classes: BTreeSet<u32> = gts.iter().flatten().map(|d| d.class).collect();
    if classes.is_empty() {
        return None;
    }
    fn of_class(set: &[Vec<Detection>], c: u32) -> Vec<Vec<&Detection>> {
        set.iter()
            .map(|ds| ds.iter().filter(|d| d.class == c).collect())
            .collect()
    }
    let sum: f64 = classes
        .iter()
        .map(|&c| average_precision(&of_class(gts, c), &of_class(preds, c)))
        .sum();
    Some(sum / classes.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(x1: f32, y1: f32, x2: f32, y2: f32, score: f32, class: u32) -> Detection {
        Detection {
            x1,
            y1,
            x2,
            y2,
            score,
            class,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn identical_detections_score_one() {
        let gts = vec![
            vec![
                det(0.0, 0.0, 10.0, 10.0, 0.9, 0),
                det(20.0, 20.0, 40.0, 40.0, 0.8, 16),
            ],
            vec![det(5.0, 5.0, 50.0, 50.0, 0.7, 0)],
        ];
        assert_eq!(mean_ap(&gts, &gts), Some(1.0));
    }

    #[test]
    fn no_predictions_score_zero_and_no_ground_truth_is_undefined() {
        let gts = vec![vec![det(0.0, 0.0, 10.0, 10.0, 0.9, 0)]];
        assert_eq!(mean_ap(&gts, &[vec![]]), Some(0.0));
        assert_eq!(
            mean_ap(&[vec![]], &[vec![det(0.0, 0.0, 1.0, 1.0, 0.9, 0)]]),
            None
        );
    }

    #[test]
    fn a_higher_scored_false_positive_halves_precision() {
        // Ranked: FP (0.9) then TP (0.8): precision [0, 0.5] -> envelope
        // [0.5, 0.5], recall [0, 1]: every one of the 101 points reads 0.5.
        let gts = vec![vec![det(0.0, 0.0, 10.0, 10.0, 0.9, 3)]];
        let preds = vec![vec![
            det(100.0, 100.0, 110.0, 110.0, 0.9, 3),
            det(0.0, 0.0, 10.0, 10.0, 0.8, 3),
        ]];
        assert!(close(mean_ap(&gts, &preds).unwrap(), 0.5));
    }

    #[test]
    fn half_recall_covers_51_of_101_points() {
        // Two boxes, one found: recall 0.5 at precision 1; points r = 0, .., 0.50.
        let gts = vec![vec![
            det(0.0, 0.0, 10.0, 10.0, 0.9, 0),
            det(50.0, 50.0, 60.0, 60.0, 0.9, 0),
        ]];
        let preds = vec![vec![det(0.0, 0.0, 10.0, 10.0, 0.6, 0)]];
        assert!(close(mean_ap(&gts, &preds).unwrap(), 51.0 / 101.0));
    }

    #[test]
    fn a_duplicate_is_a_false_positive_after_the_match() {
        // TP (0.9) then duplicate FP (0.8): recall [1, 1], precision [1, .5]
        // -> envelope [1, .5]; every point finds index 0: AP 1.
        let gts = vec![vec![det(0.0, 0.0, 10.0, 10.0, 0.9, 0)]];
        let preds = vec![vec![
            det(0.0, 0.0, 10.0, 10.0, 0.9, 0),
            det(0.0, 0.0, 10.0, 10.0, 0.8, 0),
        ]];
        assert!(close(mean_ap(&gts, &preds).unwrap(), 1.0));
        // A false positive ranked first caps the envelope below 1.
        let gts2 = vec![vec![
            det(0.0, 0.0, 10.0, 10.0, 0.9, 0),
            det(30.0, 0.0, 40.0, 10.0, 0.9, 0),
        ]];
        // FP (0.95), TP (0.9), TP (0.5): precision [0, .5, 2/3] -> envelope [2/3, 2/3, 2/3].
        let preds2 = vec![vec![
            det(60.0, 60.0, 70.0, 70.0, 0.95, 0),
            det(0.0, 0.0, 10.0, 10.0, 0.9, 0),
            det(30.0, 0.0, 40.0, 10.0, 0.5, 0),
        ]];
        assert!(close(mean_ap(&gts2, &preds2).unwrap(), 2.0 / 3.0));
    }

    #[test]
    fn iou_threshold_is_inclusive_and_classes_must_agree() {
        // [0,10]x[0,10] vs [0,10]x[0,5]: IoU exactly 0.5 -> a match.
        let gts = vec![vec![det(0.0, 0.0, 10.0, 10.0, 0.9, 1)]];
        assert!(close(
            mean_ap(&gts, &[vec![det(0.0, 0.0, 10.0, 5.0, 0.5, 1)]]).unwrap(),
            1.0
        ));
        // Just under 0.5 -> no match.
        assert_eq!(
            mean_ap(&gts, &[vec![det(0.0, 0.0, 10.0, 4.9, 0.5, 1)]]),
            Some(0.0)
        );
        // Same box, other class -> no match.
        assert_eq!(
            mean_ap(&gts, &[vec![det(0.0, 0.0, 10.0, 10.0, 0.5, 2)]]),
            Some(0.0)
        );
    }

    #[test]
    fn mean_is_over_ground_truth_classes_and_images_do_not_mix() {
        // Class 0 found (AP 1), class 5 missed (AP 0); class 9 only predicted: ignored.
        // The class-5 prediction sits on image 1's box position but in image 0.
        let gts = vec![
            vec![det(0.0, 0.0, 10.0, 10.0, 0.9, 0)],
            vec![det(20.0, 20.0, 30.0, 30.0, 0.9, 5)],
        ];
        let preds = vec![
            vec![
                det(0.0, 0.0, 10.0, 10.0, 0.9, 0),
                det(20.0, 20.0, 30.0, 30.0, 0.9, 5),
            ],
            vec![det(0.0, 0.0, 5.0, 5.0, 0.99, 9)],
        ];
        assert!(close(mean_ap(&gts, &preds).unwrap(), 0.5));
    }

    #[test]
    fn greedy_matching_takes_the_best_unused_box() {
        // Two overlapping GT boxes; the top prediction overlaps both but the
        // second more, so it takes the second; the next takes the first.
        let gts = vec![vec![
            det(0.0, 0.0, 10.0, 10.0, 0.9, 0),
            det(2.0, 0.0, 12.0, 10.0, 0.9, 0),
        ]];
        let preds = vec![vec![
            det(2.0, 0.0, 12.0, 10.0, 0.9, 0),
            det(0.0, 0.0, 10.0, 10.0, 0.8, 0),
        ]];
        assert!(close(mean_ap(&gts, &preds).unwrap(), 1.0));
    }
}
