"""Fidelity mAP: how well detections on decoded features agree with the
uncompressed detector's, used as ground truth (no labelled set ships here).

Protocol (also in models/README.md and the Rust `fchm eval`):
- ground truth: the uncompressed detector's boxes after post-processing
  (NMS IoU 0.4, score >= 0.3, at most 10);
- predictions: boxes from decoded features, NMS IoU 0.4, score >= 0.05, at most 100;
- per class, predictions over all images are ranked by score and matched
  greedily to unmatched ground truth of the same class and image at IoU >= 0.5;
  AP is the 101-point interpolated area (COCO style); mAP is the mean over
  classes present in the ground truth.
"""

from __future__ import annotations

import numpy as np

GT_SCORE, PRED_SCORE, IOU_MATCH = 0.3, 0.05, 0.5


def as_array(dets: list[dict]) -> np.ndarray:
    """detector.postprocess output -> [n, 6] = x1, y1, x2, y2, score, class."""
    return np.asarray([[*d["box"], d["score"], d["class"]] for d in dets], np.float64).reshape(-1, 6)


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of one box a [4] against boxes b [n, 4] (x1, y1, x2, y2)."""
    x1, y1 = np.maximum(a[0], b[:, 0]), np.maximum(a[1], b[:, 1])
    x2, y2 = np.minimum(a[2], b[:, 2]), np.minimum(a[3], b[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda r: np.clip(r[..., 2] - r[..., 0], 0, None) * np.clip(r[..., 3] - r[..., 1], 0, None)  # noqa: E731
    return inter / np.maximum(area(a) + area(b) - inter, 1e-9)


def mean_ap(gts: list[np.ndarray], preds: list[np.ndarray]) -> float:
    """gts, preds: per image arrays [n, 6] = x1, y1, x2, y2, score, class."""
    classes = sorted({int(c) for g in gts for c in g[:, 5]})
    if not classes:
        return float("nan")
    aps = []
    for c in classes:
        n_gt = sum(int((g[:, 5] == c).sum()) for g in gts)
        dets = [(p[4], i, p[:4]) for i, ps in enumerate(preds) for p in ps if int(p[5]) == c]
        dets.sort(key=lambda d: -d[0])
        used = [np.zeros(int((g[:, 5] == c).sum()), bool) for g in gts]
        tp = np.zeros(len(dets))
        for k, (_, i, box) in enumerate(dets):
            g = gts[i][gts[i][:, 5] == c]
            if len(g) == 0:
                continue
            ious = iou(box, g[:, :4])
            ious[used[i]] = -1
            j = int(np.argmax(ious))
            if ious[j] >= IOU_MATCH:
                used[i][j] = True
                tp[k] = 1
        ctp = np.cumsum(tp)
        recall = ctp / n_gt
        precision = ctp / np.arange(1, len(dets) + 1) if dets else np.zeros(0)
        # precision envelope, then sample at 101 recall points
        for k in range(len(precision) - 2, -1, -1):
            precision[k] = max(precision[k], precision[k + 1])
        ap = 0.0
        for r in np.linspace(0, 1, 101):
            hit = np.searchsorted(recall, r, side="left")
            ap += precision[hit] if hit < len(precision) else 0.0
        aps.append(ap / 101)
    return float(np.mean(aps))
