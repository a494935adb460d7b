"""Train the fish classifier's shipped weights on generated fish crops, reproducibly, on CPU.

    nice -n 10 python -m reeflab.modules.fish_classifier.train_weights [--epochs N] [--per-class N]

Draws the dataset (seeded) in a temporary folder with the fish detector's generator (``fish_detector/synth.py``):
for each species, fish of its body colour (jittered, any pattern, size, angle, see-through or water-tinted) on
a patch of generated water, cropped with the margin the pipeline's crop step leaves; for ``no-fish``, windows
of fish-free generated scenes. Trains ``fish-cls.yaml`` from scratch (no pretrained weights, CPU, one thread,
deterministic), saves the best checkpoint to ``weights/fish-cls.pt`` and writes ``weights/TRAINING.md``.
"""

from __future__ import annotations

import argparse
import hashlib
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from ..fish_detector import synth
from ..fish_detector.train_weights import _save_weights, offline_ultralytics

PACKAGE = Path(__file__).resolve().parent
MODEL_YAML = PACKAGE / "fish-cls.yaml"
WEIGHTS = PACKAGE / "weights" / "fish-cls.pt"
SPECIES = ["orange", "yellow", "silver", "red", "blue", "purple", "pink", "green"]  # synth's palette, in order
NO_FISH = "no-fish"
SEED = 7
IMGSZ = 64
EPOCHS = 50
PER_CLASS = 240  # training crops per class; a fifth as many again for validation
BATCH = 32


def fish_crop(rng: np.random.Generator, species: int) -> Image.Image:
    """One fish of `species` (its palette colour, jittered as synth does) on generated water, cropped around it."""
    sprite = synth._fish_sprite(rng, rng.uniform(28, 90), body=synth._colour(rng, synth._FISH_PALETTE[species], 22))
    if rng.random() < 0.5:
        sprite = sprite.transpose(Image.FLIP_LEFT_RIGHT)
    sprite = sprite.rotate(rng.uniform(-35, 35), resample=Image.BICUBIC, expand=True)
    sprite = sprite.crop(sprite.getbbox())
    pad = rng.uniform(0.03, 0.3)  # the pipeline crops each box with 10% margin; boxes are not exact either
    w, h = sprite.size
    cw, ch = int(w * (1 + 2 * pad)) + 2, int(h * (1 + 2 * pad)) + 2
    water, rows = synth._water(rng, cw, ch)
    canvas = Image.fromarray(np.clip(water, 0, 255).astype(np.uint8), "RGB").convert("RGBA")
    arr = np.asarray(sprite).astype(float)
    tint = rng.uniform(0.08, 0.3)
    arr[..., :3] = arr[..., :3] * (1 - tint) + rows[ch // 2] * tint
    arr[..., 3] *= rng.uniform(0.7, 1.0) if rng.random() < 0.4 else 1.0
    sprite = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGBA")
    x = int(np.clip((cw - w) // 2 + rng.integers(-3, 4), 0, cw - w))  # a box is never quite centred
    canvas.alpha_composite(sprite, (x, (ch - h) // 2))
    return canvas.convert("RGB")


def empty_crop(rng: np.random.Generator) -> Image.Image:
    """A window of a fish-free generated scene: water, sand, rock or weed (what a detector's false alarm shows)."""
    scene = synth.render_scene(rng, 256, 192, n_fish=0).image
    w, h = int(rng.integers(24, 120)), int(rng.integers(18, 100))
    x, y = int(rng.integers(0, 256 - w)), int(rng.integers(0, 192 - h))
    return scene.crop((x, y, x + w, y + h))


def generate(out: Path, per_class: int, seed: int = SEED) -> Path:
    """An Ultralytics classification dataset (train/<class>/, val/<class>/) under `out`."""
    for split, count in (("train", per_class), ("val", max(4, per_class // 5))):
        for k, name in enumerate([*SPECIES, NO_FISH]):
            folder = out / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                rng = np.random.default_rng([seed, 0 if split == "train" else 1, k, i])
                image = empty_crop(rng) if name == NO_FISH else fish_crop(rng, k)
                image.save(folder / f"{name}_{i:04d}.jpg", quality=int(rng.integers(75, 95)))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--per-class", type=int, default=PER_CLASS)
    parser.add_argument("--out", type=Path, default=WEIGHTS)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="reeflab-fish-cls-") as tmp:
        offline_ultralytics(Path(tmp) / "config")
        import torch
        from ultralytics import YOLO

        torch.set_num_threads(1)
        started = time.monotonic()
        data = generate(Path(tmp) / "data", args.per_class)
        generated = time.monotonic() - started
        model = YOLO(str(MODEL_YAML), task="classify")
        started = time.monotonic()
        model.train(
            data=str(data), epochs=args.epochs, imgsz=IMGSZ, batch=BATCH, workers=0, device="cpu", amp=False,
            plots=False, seed=SEED, deterministic=True, project=str(Path(tmp) / "runs"), name="train",
            exist_ok=True, verbose=False, pretrained=False,
        )  # fmt: skip
        trained = time.monotonic() - started
        best = Path(model.trainer.best)
        check = YOLO(str(best))
        metrics = check.val(data=str(data), imgsz=IMGSZ, batch=BATCH, device="cpu", plots=False, verbose=False)
        _save_weights(best, args.out, tmp)
        info = {
            "parameters": sum(p.numel() for p in model.model.parameters()),
            "top1": float(metrics.top1),
            "top5": float(metrics.top5),
            "generated": generated,
            "trained": trained,
            "per_class": args.per_class,
            "epochs": args.epochs,
        }
    info["size_kb"] = args.out.stat().st_size // 1024
    info["sha256"] = hashlib.sha256(args.out.read_bytes()).hexdigest()[:16]
    (args.out.parent / "TRAINING.md").write_text(training_md(info))
    print(f"top-1 {info['top1']:.3f}, {info['size_kb']} KB -> {args.out}")
    return 0


def training_md(info: dict) -> str:
    import torch
    import ultralytics

    val = max(4, info["per_class"] // 5)
    rows = {
        "classes": f"{', '.join(SPECIES)} (one per body colour of the generator's palette), `{NO_FISH}`",
        "model": f"`fish-cls.yaml` (YOLOv8-cls layout, depth 0.33, width 0.125), {info['parameters']:,} parameters",
        "weights": f"`fish-cls.pt`, {info['size_kb']} KB, sha256 `{info['sha256']}…`",
        "dataset": (
            f"{info['per_class']} train + {val} val crops per class, seed {SEED}: fish of the species' colour "
            "(jittered; any pattern, size, angle, tint) on generated water with 3-30% margin; `no-fish`: "
            "windows of fish-free generated scenes"
        ),
        "training": f"{info['epochs']} epochs, imgsz {IMGSZ}, batch {BATCH}, seed {SEED}, deterministic, CPU, 1 thread",
        "val top-1 / top-5 accuracy": f"{info['top1']:.3f} / {info['top5']:.3f}",
        "time": f"dataset {info['generated']:.0f} s, training {info['trained']:.0f} s",
        "versions": (
            f"python {platform.python_version()}, torch {torch.__version__}, "
            f"ultralytics {ultralytics.__version__}, {platform.machine()}"
        ),
    }
    lines = [
        "# Fish classifier weights: how they were trained",
        "",
        "`fish-cls.pt` is trained by ReefLab itself on crops it draws with the fish detector's generator",
        "(`reeflab/modules/fish_detector/synth.py`); no pretrained weights or external data are used.",
        "",
        "Reproduce (from the repository root, CPU, offline, gently on a shared machine):",
        "",
        "```",
        "nice -n 10 python -m reeflab.modules.fish_classifier.train_weights",
        "```",
        "",
        "| | |",
        "|---|---|",
        *(f"| {name} | {value} |" for name, value in rows.items()),
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
