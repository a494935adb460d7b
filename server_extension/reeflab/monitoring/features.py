"""What drift detection keeps of an input image: a few numbers, never the image.

Per-channel mean and standard deviation (brightness, colour cast, contrast), a coarse histogram of each channel
(the shape of its colour distribution), and sharpness (log variance of the Laplacian: blur, focus). Cheap to
compute (an image is shrunk to at most 128 px first) and meaningful for any RGB image module.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, UnidentifiedImageError

BINS = 4  # histogram bins per channel
SIDE = 128  # images are shrunk to at most this many pixels a side before their statistics are taken
NAMES = (
    [f"mean_{c}" for c in "rgb"]
    + [f"std_{c}" for c in "rgb"]
    + [f"hist_{c}{b}" for c in "rgb" for b in range(BINS)]
    + ["sharpness"]
)


def image_features(data: bytes) -> np.ndarray | None:
    """The features of an encoded image (JPEG, PNG, TIFF ...); None when `data` is not an image."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.draft("RGB", (SIDE, SIDE))  # JPEG: decode at a reduced size directly
            image = image.convert("RGB")
            image.thumbnail((SIDE, SIDE))
            pixels = np.asarray(image, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None
    flat = pixels.reshape(-1, 3)
    hist = [np.histogram(flat[:, c], bins=BINS, range=(0.0, 1.0))[0] / len(flat) for c in range(3)]
    gray = pixels.mean(axis=2)
    laplacian = (
        -4 * gray[1:-1, 1:-1] + gray[:-2, 1:-1] + gray[2:, 1:-1] + gray[1:-1, :-2] + gray[1:-1, 2:]
        if min(gray.shape) > 2
        else np.zeros(1)
    )
    sharpness = np.log(laplacian.var() + 1e-6)
    return np.concatenate([flat.mean(axis=0), flat.std(axis=0), *hist, [sharpness]]).astype(np.float64)
