"""Generic YOLO object detector (Ultralytics): boxes as JSON or an annotated PNG; trainable."""

from ..ultra import UltralyticsModule

model = UltralyticsModule(package=__name__, task="detect", model="yolov8n.yaml", imgsz=640)
