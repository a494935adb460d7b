"""Train the fish detector's shipped weights on synthetic scenes, reproducibly, on CPU.

    python -m reeflab.modules.fish_detector.train_weights [--epochs N] [--out PATH]

Generates the training set (seeded) in a temporary folder: fish scenes and, when asked (``--n-empty``,
``--negative-crops``), fish-free scenes and crops of the fish-free photos and rasters installed packages ship
(``negatives.py``), both with empty labels. Trains the small YOLO of ``fish-yolo.yaml`` from scratch, or
fine-tunes given weights (``--init``) (seed fixed, deterministic, CPU, no AMP, no plots, no MLflow or other
loggers, offline), saves the best checkpoint (optimizer stripped, FP16) to ``weights/fish-yolo.pt``,
regenerates the bundled ``samples/`` (their own seed), measures the previous and the new weights on held-out
images (``evaluate.precision_report``) and records everything in ``weights/TRAINING.md``. Nothing is written
outside the temporary folder, the weights folder and the samples folder.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

from . import synth

PACKAGE = Path(__file__).resolve().parent
MODEL_YAML = PACKAGE / "fish-yolo.yaml"
WEIGHTS = PACKAGE / "weights" / "fish-yolo.pt"
SAMPLES = PACKAGE / "samples"

SEED = 0  # dataset and training
SAMPLES_SEED = 1234  # bundled samples: a seed the training set never uses (its split index differs too)
IMGSZ = 256
EPOCHS = 45
N_TRAIN = 700
N_VAL = 100
# negatives (the shipped weights' fine-tune sets them, see `make fish-weights`): fish-free generated scenes in
# train and val, and crops of each installed fish-free image (negatives.SOURCES marked "train") in train
N_EMPTY = 0
N_EMPTY_VAL = 0
NEGATIVE_CROPS = 0
BATCH = 16
WORKERS = 0  # Ultralytics uses 0 on CPU whatever is asked
THREADS = 1  # torch threads (Ultralytics' own choice on a 2-core machine)
N_SAMPLES = 6

_INTEGRATIONS = ("clearml", "comet", "dvc", "mlflow", "raytune", "tensorboard", "wandb")


def _find_font() -> Path | None:
    """A TTF shipped in the environment (Ultralytics wants Arial.ttf and would download it)."""
    try:
        import matplotlib

        font = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
        if font.is_file():
            return font
    except ImportError:
        pass
    return next(iter(sorted(Path(sys.prefix).rglob("*.ttf"))), None)


def offline_ultralytics(config_dir: Path) -> None:
    """Point Ultralytics at a private, offline config dir with a font and every logger integration off.

    Must run before ``ultralytics`` is first imported, which reads YOLO_CONFIG_DIR once.
    """
    if "ultralytics" in sys.modules and os.environ.get("YOLO_CONFIG_DIR") != str(config_dir):
        raise RuntimeError("ultralytics is already imported; run train_weights in its own process")
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_CONFIG_DIR"] = str(config_dir)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    fonts = config_dir / "Ultralytics"
    fonts.mkdir(parents=True, exist_ok=True)
    font = _find_font()
    if font is not None and not (fonts / "Arial.ttf").exists():
        shutil.copyfile(font, fonts / "Arial.ttf")

    from ultralytics import settings

    # the settings file lives in config_dir, so this changes nothing outside the run
    settings.update({**dict.fromkeys(_INTEGRATIONS, False), "sync": False})


def _sanitize(args: dict, tmp: str) -> dict:
    return {k: v.replace(tmp, "<tmp>") if isinstance(v, str) else v for k, v in dict(args).items()}


def _save_weights(best: Path, out: Path, tmp: str) -> None:
    """Copy the stripped best checkpoint to `out`, without the temporary paths in its recorded args."""
    import torch
    from ultralytics.utils.patches import torch_load

    ckpt = torch_load(best, map_location="cpu")
    ckpt["train_args"] = _sanitize(ckpt.get("train_args", {}), tmp)
    if hasattr(ckpt["model"], "args"):
        ckpt["model"].args = _sanitize(ckpt["model"].args, tmp)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, out)


def _cell(tally: dict | None) -> str:
    """One measured set in a table cell: precision and recall where it has fish, else its false alarms."""
    if tally is None:
        return "n/a"
    if tally["fish"]:
        return f"precision {tally['precision']:.3f}, recall {tally['recall']:.3f} ({tally['detections']} boxes)"
    text = f"{tally['detections']} false detection(s), {tally['clean_images']}/{tally['images']} images without any"
    if tally["images"] <= 10:
        text += ": " + ", ".join(f"{name} {n}" for name, n in tally["by_image"].items())
    return text


def _training_md(info: dict) -> str:
    s = info
    intro = [
        "`fish-yolo.pt` is trained by ReefLab itself on synthetic underwater scenes",
        "(`reeflab/modules/fish_detector/synth.py`); no pretrained weights or external data are used.",
    ]
    if s["n_empty"] or s["n_negatives"]:
        intro = [
            "`fish-yolo.pt` is trained by ReefLab itself on synthetic underwater scenes",
            "(`reeflab/modules/fish_detector/synth.py`) and on fish-free images: generated scenes without fish and",
            "crops of photos and rasters that installed packages ship (`negatives.py`), all with empty labels, so",
            'that it answers "no fish" on what is not a fish. No pretrained weights or downloaded data are used.',
        ]
    lines: list[str] = [
        "# Fish detector weights: how they were trained",
        "",
        *intro,
        "",
        "Reproduce (from the repository root, CPU, offline):",
        *(
            [
                "`make fish-weights` trains the starting weights from scratch (this script without arguments:",
                "generated fish scenes only), then fine-tunes them with negatives:",
            ]
            if s["init_sha256"]
            else []
        ),
        "",
        "```",
        s["command"],
        "```",
        "",
        "| | |",
        "|---|---|",
        f"| model | `fish-yolo.yaml` (YOLOv8 layout, depth 0.33, width 0.125, 1 class), {s['params']:,} parameters |",
        f"| weights | `fish-yolo.pt`, {s['size_kb']:.0f} KB (FP16, optimizer stripped), sha256 `{s['sha256'][:16]}…` |",
        (
            f"| dataset | train: {s['n_train']} fish scenes, {s['n_empty']} fish-free scenes, {s['n_negatives']} "
            f"crops of {s['negative_sources']}; val: {s['n_val']} fish + {s['n_empty_val']} fish-free scenes; "
            f"long side {s['imgsz']}, seed {s['seed']} |"
        ),
        f"| training | {s['epochs']} epochs, imgsz {s['imgsz']}, batch {s['batch']}, seed {s['seed']}, deterministic, "
        + (
            f"fine-tuned (AdamW, lr0 0.001, no warm-up) from weights sha256 `{s['init_sha256'][:16]}…` |"
            if s["init_sha256"]
            else "from scratch |"
        ),
        f"| settings | workers {s['workers']}, amp off, device cpu, plots off, loggers off, no pretrained weights |",
        f"| val mAP50 | {s['map50']:.3f} |",
        f"| val mAP50-95 | {s['map']:.3f} |",
        f"| precision / recall (val) | {s['precision']:.3f} / {s['recall']:.3f} |",
        f"| best epoch | {s['best_epoch']} |",
        f"| dataset generation time | {s['gen_s']:.0f} s |",
        f"| training time | {s['train_s'] / 60:.1f} min ({s['train_s']:.0f} s, incl. per-epoch validation) |",
        f"| host | {s['host']} |",
        f"| versions | {s['versions']} |",
        "",
        "## How far its boxes can be trusted",
        "",
        "Measured as the module answers (conf 0.25, imgsz 256, boxes covering more than 80% of the image dropped)",
        "by `evaluate.precision_report` on images no training run draws: generated scenes from their own random",
        "streams, and fish-free photos that installed packages ship but training never sees; the fish-free",
        "images it was trained on are listed apart. A box is a found fish when its IoU with one is >= 0.5;",
        "precision = found / boxes, recall = found / fish.",
        f"*Before*: the weights this run replaced (sha256 `{s['before_sha256'][:16]}…`), measured the same way."
        if s["before"]
        else "*Before*: none (no weights were there).",
        "Re-measure any weights with `python bench/fish_precision.py <weights.pt> ...`.",
        "",
        "| images | before | now |",
        "|---|---|---|",
    ]
    before, after = s["before"] or {}, s["after"]
    for name, tally in after.items():
        lines.append(f"| {name} ({tally['images']}) | {_cell(before.get(name))} | {_cell(tally)} |")
    large = [sum(t["large_boxes"] for t in r.values()) if r else "n/a" for r in (before or None, after)]
    lines += [
        f"| boxes over 80% of the image, before dropping them | {large[0]} | {large[1]} |",
        "",
        f"## Bundled samples (`samples/`, seed {s['samples_seed']}) at conf 0.25",
        "",
        "A fish counts as found when a predicted box has IoU >= 0.5 with it (PASCAL VOC / mAP50 convention);",
        "greedy matching, highest confidence first.",
        "",
        "| image | fish | matched IoUs | false positives |",
        "|---|---|---|---|",
    ]
    report = s["samples"]
    for name, entry in report["images"].items():
        ious = ", ".join("miss" if v is None else f"{v:.2f}" for v in entry["ious"])
        fps = "; ".join(f"{b[:4]} conf {b[4]:.2f}" for b in entry["false_positives"]) or "none"
        lines.append(f"| {name} | {len(entry['ious'])} | {ious} | {fps} |")
    lines += [
        "",
        f"Found {report['found']}/{report['fish']} fish, {report['false_positives']} false positive(s).",
        "",
    ]
    return "\n".join(lines)


def train(
    epochs: int = EPOCHS,
    out: Path = WEIGHTS,
    n_train: int = N_TRAIN,
    n_val: int = N_VAL,
    n_empty: int = N_EMPTY,
    n_empty_val: int = N_EMPTY_VAL,
    negative_crops: int = NEGATIVE_CROPS,
    imgsz: int = IMGSZ,
    batch: int = BATCH,
    workers: int = WORKERS,
    threads: int = THREADS,
    samples_dir: Path = SAMPLES,
    init: Path | None = None,
    command: str = "",
) -> dict:
    """Generate data, train, save the weights and TRAINING.md next to them; returns the recorded facts.

    `init`: weights to fine-tune (lower learning rate, no warm-up) instead of training from scratch.
    """
    out = Path(out)
    init_sha = hashlib.sha256(Path(init).read_bytes()).hexdigest() if init else ""
    with tempfile.TemporaryDirectory(prefix="fish-train-") as tmp_name:
        tmp = Path(tmp_name)
        offline_ultralytics(tmp / "yolo-config")

        import torch
        import ultralytics
        from ultralytics import YOLO
        from ultralytics.utils import torch_utils

        from . import negatives
        from .evaluate import evaluate_samples, precision_report

        torch_utils.NUM_THREADS = threads  # what Ultralytics sets torch to on CPU

        before, before_sha = None, ""
        if out.is_file():  # the weights this run replaces, measured as the new ones will be
            before, before_sha = precision_report(out), hashlib.sha256(out.read_bytes()).hexdigest()

        t0 = time.monotonic()
        data_yaml = synth.generate_dataset(
            tmp / "data", n_train, n_val, imgsz=imgsz, seed=SEED, n_empty=n_empty, n_empty_val=n_empty_val
        )
        n_negatives = negatives.write_negatives(tmp / "data", negative_crops, imgsz=imgsz, seed=SEED)
        gen_s = time.monotonic() - t0
        print(
            f"dataset: {n_train} + {n_empty} fish-free + {n_negatives} negative crops train, "
            f"{n_val} + {n_empty_val} val images in {gen_s:.0f} s",
            flush=True,
        )

        model = YOLO(str(init or MODEL_YAML), task="detect")
        # a fine-tune: a warm-up's high bias learning rate would undo what the weights know
        tune = {"optimizer": "AdamW", "lr0": 0.001, "warmup_epochs": 0} if init else {}
        t0 = time.monotonic()
        metrics = model.train(
            data=str(data_yaml),
            epochs=epochs,
            imgsz=imgsz,
            batch=batch,
            workers=workers,
            device="cpu",
            seed=SEED,
            deterministic=True,
            amp=False,
            plots=False,
            cache=False,  # cache="ram" is not deterministic; the images are small JPEGs
            patience=epochs,
            project=str(tmp / "runs"),
            name="fish",
            exist_ok=True,
            close_mosaic=min(10, max(1, epochs // 4)),  # mosaic mixes fish scenes and negatives in one image
            **tune,
        )
        train_s = time.monotonic() - t0
        trainer = model.trainer
        _save_weights(Path(trainer.best), out, str(tmp))
        best_epoch = _best_epoch(Path(trainer.csv))

        synth.generate_samples(samples_dir, N_SAMPLES, seed=SAMPLES_SEED)
        report = evaluate_samples(out, samples_dir)
        after = precision_report(out)

    sources = [name for _, name, use in negatives.SOURCES if use == "train"]
    info = {
        "command": command,
        "params": sum(p.numel() for p in model.model.parameters()),
        "size_kb": out.stat().st_size / 1024,
        "sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
        "n_train": n_train,
        "n_val": n_val,
        "n_empty": n_empty,
        "n_empty_val": n_empty_val,
        "n_negatives": n_negatives,
        "negative_sources": ", ".join(Path(name).name for name in sources),
        "seed": SEED,
        "samples_seed": SAMPLES_SEED,
        "imgsz": imgsz,
        "epochs": epochs,
        "init_sha256": init_sha,
        "batch": batch,
        "workers": workers,
        "map50": float(metrics.box.map50),
        "map": float(metrics.box.map),
        "precision": float(metrics.box.mp),
        "recall": float(metrics.box.mr),
        "best_epoch": best_epoch,
        "gen_s": gen_s,
        "train_s": train_s,
        "host": f"{platform.machine()}, {os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()}",
        "versions": f"python {platform.python_version()}, torch {torch.__version__}, "
        f"ultralytics {ultralytics.__version__}",
        "samples": report,
        "before": before,
        "before_sha256": before_sha,
        "after": after,
    }
    (out.parent / "TRAINING.md").write_text(_training_md(info))
    return info


def _best_epoch(csv: Path) -> int | str:
    """Epoch (1-based) with the best fitness (0.1 mAP50 + 0.9 mAP50-95), read from results.csv."""
    try:
        rows = [line.split(",") for line in csv.read_text().splitlines()]
        head = [h.strip() for h in rows[0]]
        i50, i95 = head.index("metrics/mAP50(B)"), head.index("metrics/mAP50-95(B)")
        fit = [0.1 * float(r[i50]) + 0.9 * float(r[i95]) for r in rows[1:]]
        return fit.index(max(fit)) + 1
    except (OSError, ValueError, IndexError):
        return "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reeflab.modules.fish_detector.train_weights", description=__doc__)
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--out", type=Path, default=WEIGHTS, help="weights file (TRAINING.md goes next to it)")
    parser.add_argument("--n-train", type=int, default=N_TRAIN)
    parser.add_argument("--n-val", type=int, default=N_VAL)
    parser.add_argument("--n-empty", type=int, default=N_EMPTY, help="fish-free generated scenes in train")
    parser.add_argument("--n-empty-val", type=int, default=N_EMPTY_VAL, help="fish-free generated scenes in val")
    parser.add_argument("--negative-crops", type=int, default=NEGATIVE_CROPS, help="crops per installed image")
    parser.add_argument("--threads", type=int, default=THREADS, help="torch threads")
    parser.add_argument("--init", type=Path, default=None, help="weights to fine-tune; default: from scratch")
    parser.add_argument("--imgsz", type=int, default=IMGSZ)
    parser.add_argument("--batch", type=int, default=BATCH)
    parser.add_argument("--workers", type=int, default=WORKERS)
    parser.add_argument("--samples-dir", type=Path, default=SAMPLES)
    args = parser.parse_args(argv)
    command = " ".join(["python -m reeflab.modules.fish_detector.train_weights", *(argv or sys.argv[1:])])
    info = train(
        epochs=args.epochs,
        out=args.out,
        n_train=args.n_train,
        n_val=args.n_val,
        n_empty=args.n_empty,
        n_empty_val=args.n_empty_val,
        negative_crops=args.negative_crops,
        threads=args.threads,
        init=args.init,
        imgsz=args.imgsz,
        batch=args.batch,
        workers=args.workers,
        samples_dir=args.samples_dir,
        command=command,
    )
    report, scenes = info["samples"], info["after"]["fish scenes"]
    photos = info["after"]["fish-free photos (held out)"]
    print(
        f"saved {args.out} ({info['size_kb']:.0f} KB): val mAP50 {info['map50']:.3f}, mAP50-95 {info['map']:.3f}; "
        f"samples: {report['found']}/{report['fish']} fish found, {report['false_positives']} false positive(s); "
        f"held-out scenes: precision {scenes['precision']:.3f}, recall {scenes['recall']:.3f}; "
        f"held-out fish-free photos: {photos['detections']} detection(s); "
        f"training {info['train_s'] / 60:.1f} min"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
