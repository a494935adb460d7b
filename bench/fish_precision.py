"""How far the fish detector's boxes can be trusted: precision and recall on generated fish scenes, and false
alarms on fish-free scenes and on photos that installed packages ship, for one or more weights files.

Measured as the module answers (its image size, conf 0.25, boxes over 80% of the image dropped) by
`reeflab.modules.fish_detector.evaluate.precision_report`, the same report the training script writes into
weights/TRAINING.md. Compare the shipped weights with an older version, e.g.:

    git show HEAD~1:server_extension/reeflab/modules/fish_detector/weights/fish-yolo.pt > /tmp/old.pt
    .venv/bin/python bench/fish_precision.py /tmp/old.pt   # without arguments: the shipped weights
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

WEIGHTS = Path(__file__).resolve().parents[1] / "server_extension/reeflab/modules/fish_detector/weights/fish-yolo.pt"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights", nargs="*", type=Path, default=[WEIGHTS])
    parser.add_argument("--scenes", type=int, default=100, help="held-out generated fish scenes")
    parser.add_argument("--empty", type=int, default=50, help="held-out generated fish-free scenes")
    args = parser.parse_args()
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="yolo-config-"))
    from reeflab.modules.fish_detector.evaluate import precision_report

    for weights in args.weights:
        print(f"\n{weights}")
        for name, t in precision_report(weights, args.scenes, args.empty).items():
            scores = f"precision {t['precision']:.3f}, recall {t['recall']:.3f}, " if t["fish"] else ""
            print(
                f"  {name:32} {t['images']:4} images, {t['fish']:4} fish: {scores}{t['detections']} boxes, "
                f"{t['clean_images']} images without a false alarm, {t['large_boxes']} boxes over 80% dropped"
            )
            if not t["fish"] and t["images"] <= 10:
                print("    " + ", ".join(f"{n}: {c}" for n, c in t["by_image"].items()))


if __name__ == "__main__":
    main()
