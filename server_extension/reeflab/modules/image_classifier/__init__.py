"""Generic image classifier (Ultralytics YOLO classify): top-k classes; trainable."""

from ..ultra import UltralyticsModule

model = UltralyticsModule(package=__name__, task="classify", model="yolov8n-cls.yaml", imgsz=224)
