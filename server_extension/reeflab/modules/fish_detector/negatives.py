"""Fish-free images that ship inside installed packages, as negatives for the fish detector.

Photos (a portrait, people, a street, a flower, a temple) and scientific rasters (an elevation map, an MRI
slice) that scikit-learn, matplotlib and Ultralytics install with ReefLab's requirements. The ones marked
"train" are cut into random crops (flipped, recoloured, some with a blue-green water cast) that the
detector is trained on with empty labels; the "held-out" ones are never trained on and only measure how
often it sees fish where there are none (weights/TRAINING.md).
"""

from __future__ import annotations

import gzip
import importlib.util
import io
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

# (package, file inside it, use); a file missing from an install is skipped
SOURCES = (
    ("sklearn", "datasets/images/china.jpg", "train"),
    ("ultralytics", "assets/zidane.jpg", "train"),
    ("matplotlib", "mpl-data/sample_data/Minduka_Present_Blue_Pack.png", "train"),
    ("matplotlib", "mpl-data/sample_data/jacksboro_fault_dem.npz", "train"),
    ("matplotlib", "mpl-data/sample_data/s1045.ima.gz", "train"),
    ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg", "held-out"),
    ("sklearn", "datasets/images/flower.jpg", "held-out"),
    ("ultralytics", "assets/bus.jpg", "held-out"),
)
_NEGATIVE_SPLIT = 10  # random streams of the crops: [seed, 10 + source index, crop index]


def _package_file(package: str, name: str) -> Path | None:
    spec = importlib.util.find_spec(package)  # locates without importing
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / name
        if path.is_file():
            return path
    return None


def _load(path: Path) -> Image.Image:
    """An RGB image of a photo, or of a raster drawn with a colour map (elevation: terrain; MRI: grey)."""
    if path.suffix == ".npz":
        from matplotlib import colormaps

        values = np.load(path)["elevation"].astype(float)
        norm = (values - values.min()) / max(1e-9, np.ptp(values))
        return Image.fromarray((colormaps["terrain"](norm)[..., :3] * 255).astype(np.uint8))
    if path.name.endswith(".ima.gz"):  # 256 x 256 big-endian 16-bit MRI slice
        values = np.frombuffer(gzip.decompress(path.read_bytes()), ">u2").reshape(256, 256).astype(float)
        return Image.fromarray((values / max(1.0, values.max()) * 255).astype(np.uint8)).convert("RGB")
    with Image.open(path) as image:
        return image.convert("RGB")


def fish_free_images(use: str) -> dict[str, Image.Image]:
    """The installed fish-free images marked `use` ("train" or "held-out"), by file name."""
    found = {}
    for package, name, their_use in SOURCES:
        path = _package_file(package, name)
        if their_use == use and path is not None:
            found[path.name] = _load(path)
    return found


def _crop(image: Image.Image, rng: np.random.Generator, imgsz: int, whole: bool) -> Image.Image:
    width, height = image.size
    if not whole:  # 15-100% of the area, aspect 3:4 to 4:3
        area = rng.uniform(0.15, 1.0) * width * height
        aspect = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        w, h = min(width, int(math.sqrt(area * aspect))), min(height, int(math.sqrt(area / aspect)))
        x, y = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
        image = image.crop((x, y, x + w, y + h))
    if rng.random() < 0.5:
        image = ImageOps.mirror(image)
    for enhance in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        image = enhance(image).enhance(rng.uniform(0.7, 1.3))
    if rng.random() < 0.35:  # the colours of water over a scene that still holds no fish
        water = Image.new("RGB", image.size, tuple(int(v) for v in rng.uniform([0, 60, 90], [60, 170, 200])))
        image = Image.blend(image, water, rng.uniform(0.2, 0.5))
    scale = imgsz / max(image.size)
    return image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.LANCZOS)


def write_negatives(out_dir: str | Path, per_image: int, imgsz: int = 256, seed: int = 0) -> int:
    """Write `per_image` crops of each "train" image (the first one whole) with empty YOLO labels into
    `out_dir`/images/train and labels/train; returns how many were written."""
    images, labels = Path(out_dir) / "images" / "train", Path(out_dir) / "labels" / "train"
    images.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    count = 0
    for index, (package, name, use) in enumerate(SOURCES):
        path = _package_file(package, name)
        if use != "train" or path is None:
            continue
        source = _load(path)
        for k in range(per_image):
            rng = np.random.default_rng([seed, _NEGATIVE_SPLIT + index, k])
            buf = io.BytesIO()
            _crop(source, rng, imgsz, whole=k == 0).save(buf, format="JPEG", quality=int(rng.integers(70, 93)))
            stem = f"negative_{path.name.split('.')[0]}_{k:03d}"
            (images / f"{stem}.jpg").write_bytes(buf.getvalue())
            (labels / f"{stem}.txt").write_text("")
            count += 1
    return count
