"""Fish classifier: which of the synthetic reef species a fish crop shows (or that it shows no fish).

The second step of ``notebooks/detect_classify.pipeline``: the fish detector finds fish, this names each one.
A small YOLO classifier whose weights the project trains itself (``train_weights.py``) on crops of the fish the
fish detector's generator draws (``fish_detector/synth.py``): one species per body colour of its palette, with
every pattern, size, angle and water tint, plus crops of fish-free water, sand, rock and weed ("no fish").
"""

from ..ultra import UltralyticsModule

# imgsz: the size it was trained at (crops are small); weights/TRAINING.md says how they were made
model = UltralyticsModule(package=__name__, task="classify", model="weights/fish-cls.pt", imgsz=64)
