"""Fish detector: ReefLab's aquatic demo module.

A small YOLO detector (one class, ``fish``) whose weights the project trains itself on synthetic
underwater scenes (``synth.py``, ``train_weights.py``); the trained weights live in ``weights/`` and
the bundled sample images with their ground truth in ``samples/``.
"""

from ..ultra import UltralyticsModule

# imgsz: the size it was trained at; conf: its operating point (weights/TRAINING.md); max_box_area: its
# training fish never cover more than 14% of an image, so a box over 80% of it is never a fish (whole-image
# boxes are what a detector answers on images unlike any it saw): those are dropped; iou 0.5: a second box
# over most of a fish is that fish again (precision 0.921 -> 0.951 on held-out scenes, recall unchanged)
model = UltralyticsModule(
    package=__name__,
    task="detect",
    model="weights/fish-yolo.pt",
    imgsz=256,
    conf=0.25,
    max_box_area=0.8,
    iou=0.5,
)
