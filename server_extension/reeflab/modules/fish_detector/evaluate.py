"""Check detections against the bundled samples' ground truth (greedy IoU matching).

A ground-truth fish counts as found when a predicted box overlaps it with IoU >= 0.5, the PASCAL VOC
criterion that mAP50 uses; each prediction can match at most one fish (highest-confidence first), and
predictions left unmatched are false positives.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

IOU_MATCH = 0.5
CONF = 0.25

Box = Sequence[float]  # pixel x1, y1, x2, y2


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two xyxy boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def greedy_match(
    truth: Sequence[Box], predicted: Sequence[Box], scores: Sequence[float], iou_min: float = IOU_MATCH
) -> tuple[list[float | None], list[int]]:
    """Match predictions to ground truth, highest score first, each to the free fish it overlaps most.

    Returns the IoU of each ground-truth box's match (None when unmatched) and the indices of the
    predictions that matched nothing (false positives).
    """
    matched: list[float | None] = [None] * len(truth)
    false_pos = []
    for p in sorted(range(len(predicted)), key=lambda i: -scores[i]):
        best, best_iou = None, iou_min
        for t, box in enumerate(truth):
            if matched[t] is None:
                v = iou(box, predicted[p])
                if v >= best_iou:
                    best, best_iou = t, v
        if best is None:
            false_pos.append(p)
        else:
            matched[best] = best_iou
    return matched, false_pos


def evaluate_samples(weights: str | Path, samples_dir: str | Path, conf: float = CONF) -> dict:
    """Run the detector on every sample listed in ground_truth.json and match it to the truth.

    Returns ``{"images": {name: {"ious": [...], "false_positives": [[x1, y1, x2, y2, conf], ...]}},
    "fish": N, "found": N, "false_positives": N}``.
    """
    from ultralytics import YOLO

    samples = Path(samples_dir)
    truth = json.loads((samples / "ground_truth.json").read_text())["images"]
    model = YOLO(str(weights), task="detect")
    report: dict = {"images": {}, "fish": 0, "found": 0, "false_positives": 0}
    for name, entry in truth.items():
        result = model.predict(str(samples / name), conf=conf, device="cpu", verbose=False)[0]
        boxes = result.boxes.xyxy.tolist()
        scores = result.boxes.conf.tolist()
        ious, fps = greedy_match(entry["boxes"], boxes, scores)
        report["images"][name] = {
            "ious": [None if v is None else round(v, 3) for v in ious],
            "false_positives": [[round(v, 1) for v in boxes[i]] + [round(scores[i], 3)] for i in fps],
        }
        report["fish"] += len(ious)
        report["found"] += sum(v is not None for v in ious)
        report["false_positives"] += len(fps)
    return report
