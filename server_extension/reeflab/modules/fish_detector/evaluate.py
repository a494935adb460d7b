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


def detector(weights: str | Path, conf: float = CONF, imgsz: int | None = None, max_box_area: float | None = None):
    """Detect fish as the module does (its image size and whole-image box filter unless given): a function of an
    image (path or PIL) that returns the boxes, their scores and how many boxes the filter dropped."""
    from ultralytics import YOLO

    from ..ultra import drop_large_boxes
    from . import model as module

    imgsz = imgsz or module.imgsz
    max_box_area = module.max_box_area if max_box_area is None else max_box_area
    network = YOLO(str(weights), task="detect")

    def detect(image) -> tuple[list[list[float]], list[float], int]:
        raw = network.predict(image, conf=conf, iou=module.iou, imgsz=imgsz, device="cpu", verbose=False)[0]
        kept = drop_large_boxes(raw, max_box_area)
        return kept.boxes.xyxy.tolist(), kept.boxes.conf.tolist(), len(raw.boxes) - len(kept.boxes)

    return detect


def evaluate_samples(weights: str | Path, samples_dir: str | Path, conf: float = CONF) -> dict:
    """Run the detector on every sample listed in ground_truth.json and match it to the truth.

    Returns ``{"images": {name: {"ious": [...], "false_positives": [[x1, y1, x2, y2, conf], ...]}},
    "fish": N, "found": N, "false_positives": N}``.
    """
    samples = Path(samples_dir)
    truth = json.loads((samples / "ground_truth.json").read_text())["images"]
    detect = detector(weights, conf)
    report: dict = {"images": {}, "fish": 0, "found": 0, "false_positives": 0}
    for name, entry in truth.items():
        boxes, scores, _ = detect(str(samples / name))
        ious, fps = greedy_match(entry["boxes"], boxes, scores)
        report["images"][name] = {
            "ious": [None if v is None else round(v, 3) for v in ious],
            "false_positives": [[round(v, 1) for v in boxes[i]] + [round(scores[i], 3)] for i in fps],
        }
        report["fish"] += len(ious)
        report["found"] += sum(v is not None for v in ious)
        report["false_positives"] += len(fps)
    return report


def _tally(detect, images) -> dict:
    """Detections against the truth over (name, image, boxes) triples: fish found, false alarms, dropped boxes."""
    out = {"images": 0, "fish": 0, "found": 0, "detections": 0, "clean_images": 0, "large_boxes": 0, "by_image": {}}
    for name, image, truth in images:
        boxes, scores, dropped = detect(image)
        ious, false_pos = greedy_match(truth, boxes, scores)
        out["images"] += 1
        out["fish"] += len(truth)
        out["found"] += sum(v is not None for v in ious)
        out["detections"] += len(boxes)
        out["clean_images"] += not false_pos
        out["large_boxes"] += dropped
        out["by_image"][name] = len(boxes)
    found, detections, fish = out["found"], out["detections"], out["fish"]
    out["precision"] = found / detections if detections else 1.0
    out["recall"] = found / fish if fish else None
    return out


def precision_report(weights: str | Path, n_scenes: int = 100, n_empty: int = 50, conf: float = CONF) -> dict:
    """How far the detector's boxes can be trusted, on images no training run uses (and, marked so, on the
    fish-free images it was trained on): generated fish scenes, generated fish-free scenes, photos and
    rasters that ship in installed packages. Each set: images, fish, found, detections, precision, recall,
    images without a false alarm, boxes dropped as covering nearly the whole image."""
    from . import negatives, synth

    detect = detector(weights, conf)
    scenes = ((f"scene {i}", s.image, s.boxes) for i, s in enumerate(synth.held_out_scenes(n_scenes)))
    empty = ((f"empty {i}", s.image, []) for i, s in enumerate(synth.held_out_scenes(n_empty, empty=True)))
    return {
        "fish scenes": _tally(detect, scenes),
        "fish-free scenes": _tally(detect, empty),
        "fish-free photos (held out)": _tally(
            detect, ((n, im, []) for n, im in negatives.fish_free_images("held-out").items())
        ),
        "fish-free images (trained on)": _tally(
            detect, ((n, im, []) for n, im in negatives.fish_free_images("train").items())
        ),
    }
