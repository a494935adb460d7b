"""Deterministic synthetic underwater scenes with fish, for training the demo detector and for its samples.

Each scene is blue-green gradient water with caustics, light rays and noise, a sandy bottom, rocks, seaweed
and bubbles as distractors, and 1-4 procedurally drawn fish (elliptical body, tail, fins, eye; varied
colour, size, orientation and opacity, sometimes overlapping slightly). Every image is drawn from its own
random generator seeded by ``(seed, split, index)``, so the same seed gives the same bytes and labels.

Labels are YOLO format (``class cx cy w h``, normalised), class 0 = fish; a box is the tight extent of the
fish's drawn pixels.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from PIL import Image, ImageDraw, ImageFilter

from .evaluate import iou

FISH_CLASS = 0
NAMES = {FISH_CLASS: "fish"}
# the random stream of each kind of image: fish-free scenes and the held-out check never reuse a training image's
SPLITS = {"train": 0, "val": 1, "samples": 2, "train-empty": 3, "val-empty": 4, "check": 5, "check-empty": 6}
SAMPLE_SIZE = (384, 288)
HARD = 0.25  # fraction of camouflaged fish near the bottom in the training data

Box = tuple[float, float, float, float]  # pixel x1, y1, x2, y2

# body colours of the fish (RGB), jittered per fish
_FISH_PALETTE = [
    (250, 120, 30),  # orange
    (245, 210, 40),  # yellow
    (200, 205, 215),  # silver
    (230, 60, 50),  # red
    (60, 110, 230),  # blue
    (150, 80, 200),  # purple
    (240, 150, 170),  # pink
    (120, 190, 80),  # green-yellow
]


@dataclass
class Scene:
    """One rendered scene: the RGB image and the fish boxes in pixel xyxy."""

    image: Image.Image
    boxes: list[Box] = field(default_factory=list)


def _rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, SPLITS[split], index])


def _colour(rng: np.random.Generator, base, jitter: float) -> tuple[int, int, int]:
    c = np.asarray(base, dtype=float) + rng.normal(0, jitter, 3)
    return tuple(int(v) for v in np.clip(c, 0, 255))


def _water(rng: np.random.Generator, w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    """Float RGB water (h, w, 3) and the per-row water colour used to tint what lies in it."""
    top = rng.uniform([30, 140, 160], [110, 215, 235])
    bottom = rng.uniform([0, 35, 60], [25, 105, 125])
    t = np.linspace(0, 1, h)[:, None] ** rng.uniform(0.7, 1.4)
    rows = top * (1 - t) + bottom * t  # (h, 3)
    img = np.repeat(rows[:, None, :], w, axis=1)

    yy, xx = np.mgrid[0:h, 0:w].astype(float)
    scale = min(w, h)
    # caustics: bright thin lines where a sum of warped waves crosses zero
    wave = np.zeros((h, w))
    for _ in range(3):
        ang = rng.uniform(0, math.pi)
        freq = rng.uniform(6, 14) * 2 * math.pi / scale
        warp = rng.uniform(0.5, 2.0) * np.sin(yy * freq * 0.7 + xx * freq * 0.3 + rng.uniform(0, 6.3))
        wave += np.sin(freq * (xx * math.cos(ang) + yy * math.sin(ang)) + warp + rng.uniform(0, 6.3))
    caustic = np.exp(-(wave**2) * rng.uniform(4, 10))
    strength = rng.uniform(15, 45) * (1 - t[:, :1]) ** 1.5
    img += caustic[..., None] * strength[..., None] * np.array([0.8, 1.0, 1.0])

    # light rays from the surface
    for _ in range(int(rng.integers(0, 4))):
        x0 = rng.uniform(0, w)
        slope = rng.uniform(-0.4, 0.4)
        width = rng.uniform(0.03, 0.1) * w
        d = np.abs(xx - (x0 + slope * yy))
        img += (np.exp(-((d / width) ** 2)) * (1 - t) * rng.uniform(10, 30))[..., None]

    img += rng.normal(0, rng.uniform(2, 7), (h, w, 1))
    return img, rows


def _sand(rng: np.random.Generator, img: np.ndarray, rows: np.ndarray) -> int:
    """Paint a sandy bottom with a wavy edge in place; returns the mean row of its top edge."""
    h, w, _ = img.shape
    y0 = rng.uniform(0.68, 0.9) * h
    xs = np.arange(w)
    edge = y0 + rng.uniform(2, 0.06 * h) * np.sin(xs * rng.uniform(0.01, 0.05) + rng.uniform(0, 6.3))
    yy = np.arange(h)[:, None]
    mask = yy >= edge[None, :]
    base = np.array(_colour(rng, (190, 175, 130), 15), dtype=float)
    sand = base * 0.65 + rows[:, None, :] * 0.35 + rng.normal(0, 9, (h, w, 1))
    ripples = np.sin(yy * rng.uniform(0.5, 0.9) + np.sin(xs[None, :] * 0.05) * 3) * 6
    sand = sand + ripples[..., None]
    img[mask] = sand[mask]
    return int(y0)


def _rocks(rng: np.random.Generator, draw: ImageDraw.ImageDraw, w: int, h: int, ground: int) -> None:
    for _ in range(int(rng.integers(0, 4))):
        cx = rng.uniform(0, w)
        cy = rng.uniform(ground - 0.05 * h, h)
        r = rng.uniform(0.04, 0.13) * min(w, h)
        n = int(rng.integers(7, 12))
        angles = np.sort(rng.uniform(0, 2 * math.pi, n))
        radii = r * rng.uniform(0.6, 1.15, n)
        pts = [(cx + rr * math.cos(a), cy + rr * math.sin(a) * 0.7) for a, rr in zip(angles, radii, strict=True)]
        grey = rng.uniform(60, 130)
        tone = _colour(rng, (grey, grey * 0.95, grey * 0.85), 12)
        draw.polygon(pts, fill=tone)
        # a lit top and a few speckles
        hi = tuple(min(255, c + 25) for c in tone)
        draw.ellipse([cx - r * 0.5, cy - r * 0.55, cx + r * 0.3, cy - r * 0.25], fill=hi)
        for _ in range(4):
            sx, sy = cx + rng.uniform(-r, r) * 0.6, cy + rng.uniform(-r, r) * 0.4
            draw.ellipse([sx - 1.5, sy - 1.5, sx + 1.5, sy + 1.5], fill=tuple(max(0, c - 30) for c in tone))


def _plants(rng: np.random.Generator, draw: ImageDraw.ImageDraw, w: int, h: int, ground: int) -> None:
    for _ in range(int(rng.integers(0, 5))):
        x = rng.uniform(0, w)
        y = rng.uniform(ground, h)
        height = rng.uniform(0.2, 0.55) * h
        green = _colour(rng, (rng.uniform(30, 110), rng.uniform(110, 170), rng.uniform(40, 90)), 12)
        width = max(2, int(rng.uniform(0.008, 0.025) * min(w, h)))
        sway, freq, phase = rng.uniform(4, 15), rng.uniform(0.02, 0.06), rng.uniform(0, 6.3)
        steps = 20
        pts = []
        for i in range(steps + 1):
            yy = y - height * i / steps
            pts.append((x + sway * math.sin((y - yy) * freq + phase) * i / steps, yy))
        draw.line(pts, fill=green, width=width, joint="curve")
        for i in range(3, steps, 4):  # small leaves along the stem
            px, py = pts[i]
            side = 1 if i % 8 == 3 else -1
            lw = width * 2.5
            xa, xb = sorted((px, px + side * lw * 1.6))
            draw.ellipse([xa, py - lw * 0.4, xb, py + lw * 0.4], fill=green)


def _bubbles(rng: np.random.Generator, draw: ImageDraw.ImageDraw, w: int, h: int) -> None:
    for _ in range(int(rng.integers(0, 8))):
        x, y = rng.uniform(0, w), rng.uniform(0, h * 0.8)
        r = rng.uniform(1.5, 4.5)
        draw.ellipse([x - r, y - r, x + r, y + r], outline=(200, 235, 245), width=1)


def _fish_sprite(rng: np.random.Generator, length: float, body: tuple[int, int, int] | None = None) -> Image.Image:
    """An RGBA fish facing right, `length` pixels long (tail included), drawn 4x and downsampled.

    `body` fixes the body colour (camouflaged fish); by default it comes from the palette.
    """
    s = 4
    L = length * s
    body_h = L * 0.72 * rng.uniform(0.36, 0.62)
    tail_h = body_h * rng.uniform(0.8, 1.25)
    fin = rng.random() < 0.7
    hgt = max(body_h * (1.45 if fin else 1.1), tail_h * 1.05)
    W, H = int(L + 2 * s), int(hgt + 2 * s)
    cy = H / 2 + (body_h * 0.12 if fin else 0)
    x0 = s  # tail end

    if body is None:
        body = _colour(rng, _FISH_PALETTE[int(rng.integers(len(_FISH_PALETTE)))], 22)
    fin_col = _colour(rng, tuple(c * rng.uniform(0.6, 0.9) for c in body), 10)
    belly = tuple(min(255, int(c + (255 - c) * 0.45)) for c in body)

    sprite = Image.new("RGBA", (W, H), (0, 0, 0, 0))
    d = ImageDraw.Draw(sprite)
    body_box = [x0 + 0.24 * L, cy - body_h / 2, x0 + L, cy + body_h / 2]
    # tail (forked or straight), then dorsal and pelvic fins, then body on top
    tail_root = (x0 + 0.32 * L, cy)
    notch = 0.1 * L if rng.random() < 0.6 else 0.0
    d.polygon(
        [tail_root, (x0, cy - tail_h / 2), (x0 + notch, cy), (x0, cy + tail_h / 2)],
        fill=fin_col,
    )
    if fin:
        d.polygon(
            [
                (x0 + 0.42 * L, cy - body_h * 0.35),
                (x0 + 0.55 * L, cy - body_h * rng.uniform(0.75, 0.95)),
                (x0 + 0.78 * L, cy - body_h * 0.38),
            ],
            fill=fin_col,
        )
        d.polygon(
            [
                (x0 + 0.5 * L, cy + body_h * 0.35),
                (x0 + 0.56 * L, cy + body_h * 0.62),
                (x0 + 0.68 * L, cy + body_h * 0.38),
            ],
            fill=fin_col,
        )
    d.ellipse(body_box, fill=body)

    # belly, stripes and gill line are drawn on a layer clipped to the body
    deco = Image.new("RGBA", (W, H), (0, 0, 0, 0))
    dd = ImageDraw.Draw(deco)
    dd.ellipse([x0 + 0.3 * L, cy, x0 + 0.95 * L, cy + body_h * 0.55], fill=belly)
    style = rng.random()
    if style < 0.35:  # vertical bands
        band = (255, 255, 255) if rng.random() < 0.5 else tuple(int(c * 0.4) for c in body)
        for bx in rng.choice([0.42, 0.58, 0.74], size=int(rng.integers(1, 4)), replace=False):
            bw = L * rng.uniform(0.03, 0.06)
            dd.rectangle([x0 + bx * L - bw, 0, x0 + bx * L + bw, H], fill=band)
    elif style < 0.55:  # a horizontal stripe
        stripe = tuple(int(c * 0.45) for c in body)
        dd.rectangle([x0, cy - body_h * 0.1, x0 + L, cy + body_h * 0.02], fill=stripe)
    elif style < 0.75:  # spots
        spot = tuple(int(c * 0.5) for c in body)
        for _ in range(int(rng.integers(3, 8))):
            sx = x0 + L * rng.uniform(0.35, 0.85)
            sy = cy + body_h * rng.uniform(-0.35, 0.25)
            r = body_h * rng.uniform(0.04, 0.08)
            dd.ellipse([sx - r, sy - r, sx + r, sy + r], fill=spot)
    gx = x0 + 0.78 * L
    dd.arc(
        [gx - body_h * 0.3, cy - body_h * 0.35, gx + body_h * 0.05, cy + body_h * 0.35], 300, 60, fill=fin_col, width=s
    )
    clip = Image.new("L", (W, H), 0)
    ImageDraw.Draw(clip).ellipse(body_box, fill=255)
    deco.putalpha(Image.fromarray(np.minimum(np.asarray(deco.getchannel("A")), np.asarray(clip))))
    sprite.alpha_composite(deco)

    # eye
    ex, ey, er = x0 + 0.87 * L, cy - body_h * 0.12, body_h * rng.uniform(0.08, 0.12)
    d = ImageDraw.Draw(sprite)
    d.ellipse([ex - er, ey - er, ex + er, ey + er], fill=(245, 245, 245))
    d.ellipse([ex - er * 0.55, ey - er * 0.55, ex + er * 0.55, ey + er * 0.55], fill=(10, 10, 15))
    return sprite.resize((max(1, W // s), max(1, H // s)), Image.LANCZOS)


def _cover(a: Box, b: Box) -> float:
    """Fraction of the smaller box covered by the intersection."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    small = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return ix * iy / small if small > 0 else 0.0


def render_scene(
    rng: np.random.Generator, width: int, height: int, n_fish: int | None = None, hard: float = 0.0
) -> Scene:
    """Draw one underwater scene with `n_fish` fish (1-4 at random when None).

    A fraction `hard` of the fish are hard cases: near the bottom, over sand, rocks and plants, and
    coloured like what lies behind them, so that only their shape, fins and eye give them away. With
    `hard` 0 no random numbers are spent on them (the bundled samples do not depend on this option).
    """
    img, rows = _water(rng, width, height)
    ground = _sand(rng, img, rows) if rng.random() < 0.85 else height
    canvas = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB").convert("RGBA")
    draw = ImageDraw.Draw(canvas)
    _rocks(rng, draw, width, height, ground)
    _plants(rng, draw, width, height, ground)

    n = int(rng.integers(1, 5)) if n_fish is None else n_fish
    boxes: list[Box] = []
    side = min(width, height)
    for _ in range(n):
        for _attempt in range(60):
            low = hard > 0 and rng.random() < hard
            camo = None
            if low:  # aim at the bottom band and take the colour found there
                target_y = rng.uniform(max(0.0, min(ground, 0.85 * height) - 0.1 * height), height)
                here = np.asarray(canvas)[int(min(target_y, height - 1)), int(rng.uniform(0, width - 1)), :3]
                camo = _colour(rng, here.astype(float) * rng.uniform(0.75, 1.3), 18)
            sprite = _fish_sprite(rng, rng.uniform(0.16, 0.42) * side, body=camo)
            if rng.random() < 0.5:
                sprite = sprite.transpose(Image.FLIP_LEFT_RIGHT)
            sprite = sprite.rotate(rng.uniform(-35, 35), resample=Image.BICUBIC, expand=True)
            alpha = np.asarray(sprite.getchannel("A"))
            ys, xs = np.nonzero(alpha > 96)
            if len(xs) == 0:
                continue
            sx0, sy0, sx1, sy1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
            sw, sh = sx1 - sx0, sy1 - sy0
            if sw >= width - 4 or sh >= height - 4:
                continue
            px = int(rng.integers(2, width - sw - 2)) - sx0
            if low:
                py = int(np.clip(target_y - sh / 2, 2, height - sh - 3)) - sy0
            else:
                py = int(rng.integers(2, height - sh - 2)) - sy0
            box = (float(px + sx0), float(py + sy0), float(px + sx1), float(py + sy1))
            if any(iou(box, b) > 0.15 or _cover(box, b) > 0.3 for b in boxes):
                continue
            # water tint grows with depth, and some fish are a little see-through
            row = rows[min(height - 1, int((box[1] + box[3]) / 2))]
            tint = rng.uniform(0.08, 0.3)
            arr = np.asarray(sprite).astype(float)
            arr[..., :3] = arr[..., :3] * (1 - tint) + row * tint
            arr[..., 3] *= rng.uniform(0.7, 1.0) if rng.random() < 0.4 else 1.0
            sprite = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGBA")
            layer = Image.new("RGBA", canvas.size, (0, 0, 0, 0))
            layer.paste(sprite, (px, py))
            canvas.alpha_composite(layer)
            boxes.append(box)
            break

    _bubbles(rng, ImageDraw.Draw(canvas), width, height)
    image = canvas.convert("RGB")
    blur = rng.uniform(0, 0.9)
    if blur > 0.3:
        image = image.filter(ImageFilter.GaussianBlur(blur))
    return Scene(image=image, boxes=boxes)


def _jpeg(image: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality, optimize=True)
    return buf.getvalue()


def yolo_label(boxes: list[Box], width: int, height: int) -> str:
    """YOLO label text (`0 cx cy w h` normalised, one line per box)."""
    lines = []
    for x1, y1, x2, y2 in boxes:
        cx, cy = (x1 + x2) / 2 / width, (y1 + y2) / 2 / height
        bw, bh = (x2 - x1) / width, (y2 - y1) / height
        lines.append(f"{FISH_CLASS} {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}")
    return "\n".join(lines) + ("\n" if lines else "")


def _train_size(rng: np.random.Generator, imgsz: int) -> tuple[int, int]:
    """Square or 4:3 frames (landscape more often), long side `imgsz`."""
    short = int(round(imgsz * 0.75))
    return [(imgsz, imgsz), (imgsz, short), (imgsz, short), (short, imgsz)][int(rng.integers(4))]


def generate_dataset(
    out_dir: str | Path,
    n_train: int,
    n_val: int,
    imgsz: int = 256,
    seed: int = 0,
    hard: float = HARD,
    n_empty: int = 0,
    n_empty_val: int = 0,
) -> Path:
    """Write an Ultralytics detection dataset under `out_dir`; returns the path of its data.yaml.

    `hard` is the fraction of camouflaged fish near the bottom (see `render_scene`). `n_empty` and
    `n_empty_val` fish-free scenes (water, sand, rocks, plants, bubbles; empty labels) are added to the
    train and val splits as negatives.
    """
    out = Path(out_dir)
    for split, count, empty in (("train", n_train, n_empty), ("val", n_val, n_empty_val)):
        images, labels = out / "images" / split, out / "labels" / split
        images.mkdir(parents=True, exist_ok=True)
        labels.mkdir(parents=True, exist_ok=True)
        scenes = [(f"{split}_{i:05d}", _rng(seed, split, i), None) for i in range(count)]
        scenes += [(f"{split}_empty_{i:05d}", _rng(seed, f"{split}-empty", i), 0) for i in range(empty)]
        for stem, rng, n_fish in scenes:
            w, h = _train_size(rng, imgsz)
            scene = render_scene(rng, w, h, n_fish=n_fish, hard=hard)
            (images / f"{stem}.jpg").write_bytes(_jpeg(scene.image, int(rng.integers(70, 93))))
            (labels / f"{stem}.txt").write_text(yolo_label(scene.boxes, w, h))
    data = {
        "path": str(out.resolve()),
        "train": "images/train",
        "val": "images/val",
        "names": dict(NAMES),
    }
    data_yaml = out / "data.yaml"
    data_yaml.write_text(yaml.safe_dump(data, sort_keys=False))
    return data_yaml


def held_out_scenes(n: int, imgsz: int = 256, seed: int = 0, empty: bool = False) -> Iterator[Scene]:
    """`n` scenes from random streams no training set uses, with fish (as in training) or fish-free."""
    split = "check-empty" if empty else "check"
    for i in range(n):
        rng = _rng(seed, split, i)
        w, h = _train_size(rng, imgsz)
        yield render_scene(rng, w, h, n_fish=0 if empty else None, hard=HARD)


def generate_samples(out_dir: str | Path, n: int = 6, seed: int = 1234) -> Path:
    """Write `n` demo images (`fish_NN.jpg`) and `ground_truth.json` (pixel xyxy boxes); returns the json path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    width, height = SAMPLE_SIZE
    images = {}
    for i in range(n):
        rng = _rng(seed, "samples", i)
        scene = render_scene(rng, width, height, n_fish=1 + (i % 4))
        name = f"fish_{i + 1:02d}.jpg"
        (out / name).write_bytes(_jpeg(scene.image, 85))
        images[name] = {
            "width": width,
            "height": height,
            "boxes": [[round(v, 1) for v in b] for b in scene.boxes],
        }
    truth = {
        "description": "Synthetic underwater scenes; boxes are pixel [x1, y1, x2, y2] of each fish (class 0).",
        "generator": "reeflab.modules.fish_detector.synth.generate_samples",
        "seed": seed,
        "images": images,
    }
    path = out / "ground_truth.json"
    path.write_text(json.dumps(truth, indent=2) + "\n")
    return path
