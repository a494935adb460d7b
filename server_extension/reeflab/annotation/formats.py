"""Detection datasets on disk: other tools' exports read as training data, and Ultralytics YOLO datasets written.

`read(folder, format, root)` reads a folder of the user's workspace in one of the formats annotation tools export:

- **COCO**: an instances JSON (`images` with `file_name`, `width`, `height`; `annotations` with `image_id`,
  `category_id`, `bbox` [x, y, width, height] in pixels; `categories`), anywhere in the folder (CVAT puts it in
  `annotations/`, Roboflow beside the images); images found by `file_name` beside the JSON, in the folder, or in
  its `images/`.
- **Pascal VOC**: one XML an image (`<annotation>` with `<filename>`, `<size>`, `<object><name><bndbox>`), in
  `Annotations/` or beside the images; images by `<filename>` beside it, in the folder, `JPEGImages/` or `images/`.
  Coordinates are taken as written (CVAT, Roboflow and LabelImg write pixel edges).
- **CVAT for images 1.1**: `annotations.xml` (`<image name width height><box label xtl ytl xbr ybr>`, the labels
  in its `<meta>`), images in `images/` or the folder.
- **YOLO**: label files (`class cx cy w h` as fractions of the image; a polygon's points become its box) in
  `labels/` beside `images/` (Ultralytics) or beside the images (CVAT's YOLO 1.1), the class names in the folder's
  `data.yaml` (`names`), `classes.txt` or `obj.names`; checked line by line.

`format="auto"` tells them apart by their files. XML is parsed with defusedxml (entity declarations, the
"billion laughs", and external references are refused). Image sizes come from the annotation file where it
gives them, else from the image's header (PIL reads no pixels for it).

Boxes become YOLO labels (class, centre and size as fractions of the image), clipped to the image; boxes less
than a pixel wide or high after clipping are dropped and counted, as are images the annotations name that are not
there; annotated images without boxes are kept as background images (empty label files). `write_yolo` writes a
dataset as Ultralytics trains from (images/{train,val}, labels/{train,val}, data.yaml), in a seeded train/val
split: the export of annotation projects (service.py) writes through it too.
"""

from __future__ import annotations

import json
import math
import random
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

import yaml
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError
from defusedxml.ElementTree import parse as parse_xml

from ..errors import BadRequest

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
FORMATS = {"coco": "COCO", "voc": "Pascal VOC", "cvat": "CVAT for images 1.1", "yolo": "YOLO"}
NEEDS = (
    "COCO: an instances JSON (images, annotations, categories) and its images; Pascal VOC: one XML an image "
    "(<annotation>) and the images; CVAT for images 1.1: an annotations.xml and an images/ folder; YOLO: label "
    "files (labels/*.txt) with a data.yaml that has names, or a classes.txt"
)
YOLO_NAMES = ("data.yaml", "data.yml", "dataset.yaml", "classes.txt", "obj.names")
YOLO_LISTS = ("train.txt", "val.txt", "valid.txt", "test.txt")  # CVAT's and darknet's lists of image paths
MAX_IMAGES = 10000
MAX_FILES = 100000  # files looked at in a folder


class Split(Protocol):
    val_fraction: float
    seed: int


@dataclass
class Image:
    """An image as the annotations name it: where it is (None: not there), its size if they give it, and its
    boxes (label, x1, y1, x2, y2) in pixels."""

    name: str
    path: Path | None
    size: tuple[float, float] | None = None
    boxes: list[tuple[str, float, float, float, float]] = field(default_factory=list)


@dataclass
class Dataset:
    """A dataset read from a folder: its format, class names in order, and images by their path in the folder."""

    format: str
    names: list[str]
    images: dict[str, Image] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)


# -- reading --------------------------------------------------------------------------------


def _shown(path: Path, folder: Path) -> str:
    """A file as the user sees it: its path in the dataset's folder."""
    try:
        return path.relative_to(folder).as_posix()
    except ValueError:
        return path.name


def _files(folder: Path) -> list[Path]:
    """The folder's files, recursively (hidden ones left out), in order; a clear 400 past MAX_FILES."""
    found = []
    for path in folder.rglob("*"):
        if any(part.startswith(".") for part in path.relative_to(folder).parts) or not path.is_file():
            continue
        found.append(path)
        if len(found) > MAX_FILES:
            raise BadRequest(f"'{folder.name}' holds more than {MAX_FILES} files: give the dataset's own folder")
    return sorted(found)


def _by_name(files: list[Path]) -> dict[str, list[Path]]:
    """The folder's images by their file name."""
    named: dict[str, list[Path]] = {}
    for path in files:
        if path.suffix.lower() in IMAGE_SUFFIXES:
            named.setdefault(path.name, []).append(path)
    return named


def _inside(path: Path, root: Path, name: str, where: str) -> Path:
    resolved = path.resolve()
    if resolved != root and root not in resolved.parents:
        raise BadRequest(f"'{name}' in {where} is outside your workspace: datasets read only your own files")
    return resolved


def _find(name: str, places: Iterable[Path], root: Path, where: str, named: dict[str, list[Path]]) -> Path | None:
    """The image a file names: a path relative to one of `places`, else the folder's only image of that file name
    (tools put images in subset folders: images/default/); inside the workspace; None if not there."""
    name = name.replace("\\", "/").strip()
    if not name:
        return None
    if PurePosixPath(name).is_absolute():
        raise BadRequest(f"'{name}' in {where} is an absolute path: a dataset names its images relative to it")
    for place in places:
        path = _inside(place / name, root, name, where)
        if path.is_file():
            return path
    same = named.get(PurePosixPath(name).name, [])
    return _inside(same[0], root, name, where) if len(same) == 1 else None


def _key(path: Path, folder: Path) -> str:
    try:
        return path.relative_to(folder).as_posix()
    except ValueError:  # an image beside the folder (a COCO JSON naming '../images/x.jpg')
        return path.name


def _add(dataset: Dataset, image: Image, folder: Path) -> None:
    if image.path is None:
        dataset.missing.append(image.name)
        return
    key = _key(image.path, folder)
    known = dataset.images.get(key)
    if known is None:
        dataset.images[key] = image
    else:  # named twice (two JSONs): its boxes together
        known.boxes.extend(image.boxes)
        known.size = known.size or image.size


def _number(value: Any, what: str, where: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BadRequest(f"{where}: {what} is {value!r}, not a number: fix it or export the dataset again") from None
    if not math.isfinite(number):
        raise BadRequest(f"{where}: {what} is {value!r}, not a number: fix it or export the dataset again")
    return number


def _load_json(path: Path, folder: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except json.JSONDecodeError as err:
        raise BadRequest(
            f"'{_shown(path, folder)}' is not valid JSON (line {err.lineno}, column {err.colno}: {err.msg}): "
            "fix it or export the dataset again"
        ) from None
    except UnicodeDecodeError:
        raise BadRequest(f"'{_shown(path, folder)}' is not UTF-8 JSON: export the dataset again") from None


def _load_xml(path: Path, folder: Path) -> Any:
    shown = _shown(path, folder)
    try:
        return parse_xml(path).getroot()
    except ParseError as err:
        line, column = err.position
        raise BadRequest(
            f"'{shown}' is not well-formed XML (line {line}, column {column + 1}): fix it or export the dataset again"
        ) from None
    except DefusedXmlException as err:
        raise BadRequest(
            f"'{shown}' declares XML entities or external references ({type(err).__name__}), which are refused "
            "(they can expand without bound or read other files): export it again without a DTD"
        ) from None


def _coco_files(files: list[Path], folder: Path) -> list[Path]:
    """The folder's COCO instances JSONs (objects with images, annotations and categories)."""
    found = []
    for path in files:
        if path.suffix.lower() == ".json":
            data = _load_json(path, folder)
            if isinstance(data, dict) and {"images", "annotations", "categories"} <= data.keys():
                found.append(path)
    return found


def _read_coco(folder: Path, files: list[Path], root: Path) -> Dataset:
    sources = _coco_files(files, folder)
    if not sources:
        raise BadRequest(f"'{folder.name}' holds no COCO instances JSON (with images, annotations and categories)")
    dataset = Dataset("coco", [])
    for source in sources:
        shown = _shown(source, folder)
        data = _load_json(source, folder)
        if not all(isinstance(data[k], list) for k in ("images", "annotations", "categories")):
            raise BadRequest(f"'{shown}': images, annotations and categories must be lists: export the dataset again")
        categories: dict[Any, str] = {}
        for category in data["categories"]:
            if not isinstance(category, dict) or "id" not in category or not str(category.get("name", "")).strip():
                raise BadRequest(f"'{shown}': every category needs an id and a name: export the dataset again")
            categories[category["id"]] = str(category["name"]).strip()
            if categories[category["id"]] not in dataset.names:
                dataset.names.append(categories[category["id"]])
        images: dict[Any, Image] = {}
        places = [source.parent, folder, folder / "images", source.parent.parent / "images"]
        named = _by_name(files)
        for entry in data["images"]:
            if not isinstance(entry, dict) or "id" not in entry or not entry.get("file_name"):
                raise BadRequest(f"'{shown}': every image needs an id and a file_name: export the dataset again")
            where = f"'{shown}' (image {entry['id']})"
            size = None
            if entry.get("width") and entry.get("height"):
                size = (_number(entry["width"], "width", where), _number(entry["height"], "height", where))
            name = str(entry["file_name"])
            images[entry["id"]] = Image(name, _find(name, places, root, f"'{shown}'", named), size)
        for annotation in data["annotations"]:
            if not isinstance(annotation, dict):
                raise BadRequest(f"'{shown}': an annotation is not an object: export the dataset again")
            where = f"'{shown}' (annotation {annotation.get('id', '?')})"
            if annotation.get("image_id") not in images:
                raise BadRequest(f"{where}: image_id {annotation.get('image_id')!r} is not among its images")
            if annotation.get("category_id") not in categories:
                raise BadRequest(
                    f"{where}: category_id {annotation.get('category_id')!r} is not among its categories "
                    f"({', '.join(str(k) for k in categories)})"
                )
            bbox = annotation.get("bbox")
            if not isinstance(bbox, list) or len(bbox) != 4:
                if annotation.get("segmentation") and not bbox:
                    continue  # a segmentation without a box: not a detection
                raise BadRequest(f"{where}: bbox must be [x, y, width, height] in pixels, not {bbox!r}")
            x, y, w, h = (_number(v, "bbox", where) for v in bbox)
            images[annotation["image_id"]].boxes.append((categories[annotation["category_id"]], x, y, x + w, y + h))
        for image in images.values():
            _add(dataset, image, folder)
    return dataset


def _text(element: Any, path: str) -> str | None:
    found = element.find(path)
    return found.text.strip() if found is not None and found.text and found.text.strip() else None


def _voc_files(files: list[Path], folder: Path) -> list[Path]:
    return [p for p in files if p.suffix.lower() == ".xml" and p != folder / "annotations.xml"]


def _read_voc(folder: Path, files: list[Path], root: Path) -> Dataset:
    sources = _voc_files(files, folder)
    if not sources:
        raise BadRequest(f"'{folder.name}' holds no Pascal VOC XML (one <annotation> an image)")
    dataset = Dataset("voc", [])
    labels: set[str] = set()
    named = _by_name(files)
    for source in sources:
        shown = _shown(source, folder)
        xml = _load_xml(source, folder)
        if xml.tag != "annotation":
            raise BadRequest(f"'{shown}' is not a Pascal VOC annotation (its root is <{xml.tag}>, not <annotation>)")
        name = _text(xml, "filename")
        places = [source.parent, folder, folder / "JPEGImages", folder / "images", source.parent.parent / "JPEGImages"]
        if name is None:  # no <filename>: the image of the XML's own name
            found = [p for p in (d / (source.stem + s) for d in places for s in IMAGE_SUFFIXES) if p.is_file()]
            path = _inside(found[0], root, found[0].name, f"'{shown}'") if found else None
            name = source.stem
        else:
            path = _find(name, places, root, f"'{shown}'", named)
        size = None
        width, height = _text(xml, "size/width"), _text(xml, "size/height")
        if width and height:  # 0 where the tool did not know it: the image's header then
            size = (_number(width, "width", f"'{shown}'"), _number(height, "height", f"'{shown}'"))
        image = Image(name, path, size)
        for number, element in enumerate(xml.findall("object"), 1):
            where = f"'{shown}' (object {number})"
            label = _text(element, "name")
            box = element.find("bndbox")
            if not label or box is None:
                raise BadRequest(f"{where} needs a <name> and a <bndbox>: export the dataset again")
            corners = [_text(box, k) for k in ("xmin", "ymin", "xmax", "ymax")]
            if None in corners:
                raise BadRequest(f"{where}: <bndbox> needs xmin, ymin, xmax and ymax")
            image.boxes.append((label, *(_number(v, "a <bndbox> corner", where) for v in corners)))
            labels.add(label)
        _add(dataset, image, folder)
    dataset.names = sorted(labels)
    return dataset


def _read_cvat(folder: Path, files: list[Path], root: Path) -> Dataset:
    source = folder / "annotations.xml"
    if not source.is_file():
        raise BadRequest(f"'{folder.name}' holds no annotations.xml (CVAT for images 1.1) at its top")
    xml = _load_xml(source, folder)
    if xml.tag != "annotations":
        raise BadRequest(
            f"'annotations.xml' is not CVAT for images 1.1 (its root is <{xml.tag}>, not <annotations>): "
            "export 'CVAT for images 1.1' from CVAT"
        )
    names: list[str] = []
    for label in xml.iterfind("meta//labels/label"):
        name = _text(label, "name")
        if name and name not in names:
            names.append(name)
    dataset = Dataset("cvat", names)
    places = [folder / "images", folder]
    named = _by_name(files)
    for number, element in enumerate(xml.iterfind("image"), 1):
        name = element.get("name")
        where = f"'annotations.xml' (image {element.get('id', number)})"
        if not name:
            raise BadRequest(f"{where} has no name: export the dataset again")
        size = None
        if element.get("width") and element.get("height"):
            size = (_number(element.get("width"), "width", where), _number(element.get("height"), "height", where))
        image = Image(name, _find(name, places, root, "'annotations.xml'", named), size)
        for box in element.iterfind("box"):
            label = box.get("label")
            if names and label not in names:
                raise BadRequest(
                    f"{where}: a box's label {label!r} is not among the labels of its <meta> ({', '.join(names)})"
                )
            corners = (box.get(k) for k in ("xtl", "ytl", "xbr", "ybr"))
            image.boxes.append((str(label), *(_number(v, "a box corner", where) for v in corners)))
        _add(dataset, image, folder)
    if not names:  # no <meta> labels: those the boxes use
        dataset.names = sorted({box[0] for image in dataset.images.values() for box in image.boxes})
    return dataset


def _yolo_names(folder: Path) -> tuple[list[str], str]:
    """The class names of a YOLO dataset and the file they are in."""
    for file in YOLO_NAMES:
        path = folder / file
        if not path.is_file():
            continue
        if path.suffix in (".yaml", ".yml"):
            try:
                data = yaml.safe_load(path.read_text(encoding="utf-8-sig", errors="replace"))
            except yaml.MarkedYAMLError as err:
                line = err.problem_mark.line + 1 if err.problem_mark else "?"
                raise BadRequest(f"'{file}' is not valid YAML (line {line}: {err.problem}): fix it") from None
            except yaml.YAMLError as err:
                raise BadRequest(f"'{file}' is not valid YAML ({err}): fix it") from None
            names = data.get("names") if isinstance(data, dict) else None
            if isinstance(names, dict):
                try:
                    ordered = sorted((int(k), str(v)) for k, v in names.items())
                except ValueError:
                    raise BadRequest(f"'{file}': names must be numbered 0, 1, ...: {list(names)}") from None
                if [k for k, _ in ordered] != list(range(len(ordered))):
                    raise BadRequest(f"'{file}': names must be numbered 0, 1, ... without gaps: {list(names)}")
                names = [v for _, v in ordered]
            if not isinstance(names, list) or not names:
                raise BadRequest(f"'{file}' has no names: add the class names, e.g. names: [fish, coral]")
            return [str(n) for n in names], file
        names = [line.strip() for line in path.read_text("utf-8-sig", errors="replace").splitlines() if line.strip()]
        if not names:
            raise BadRequest(f"'{file}' names no classes: write one class name a line")
        return names, file
    raise BadRequest(
        f"'{folder.name}' has no class names for its YOLO labels: add a data.yaml with names (or a classes.txt)"
    )


def _label_files(image: Path, folder: Path) -> list[Path]:
    """Where a YOLO image's label file may be: images/ -> labels/ (Ultralytics), or beside it."""
    relative = image.relative_to(folder)
    parts = list(relative.parts)
    candidates = []
    if "images" in parts[:-1]:
        at = len(parts) - 2 - parts[:-1][::-1].index("images")
        parts[at] = "labels"
        candidates.append(folder.joinpath(*parts).with_suffix(".txt"))
    candidates.append(image.with_suffix(".txt"))
    return candidates


def _read_yolo(folder: Path, files: list[Path], root: Path) -> Dataset:
    names, names_file = _yolo_names(folder)
    dataset = Dataset("yolo", names)
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    image_dirs = {p.parent for p in images}
    labels = {  # label files: in a labels/ folder, or beside images; not the names or lists at the top
        p
        for p in files
        if p.suffix == ".txt"
        and ("labels" in p.relative_to(folder).parts[:-1] or p.parent in image_dirs)
        and not (p.parent == folder and p.name in (*YOLO_NAMES, *YOLO_LISTS))
    }
    if not labels:
        raise BadRequest(f"'{folder.name}' holds no YOLO label files: put them in labels/ (as labels/<image>.txt)")
    claimed = set()
    for path in images:
        _inside(path, root, _shown(path, folder), f"'{folder.name}'")
        image = Image(_shown(path, folder), path)
        label = next((p for p in _label_files(path, folder) if p in labels), None)
        if label is not None:
            claimed.add(label)
            image.boxes = _yolo_boxes(label, folder, names, names_file)
        dataset.images[_key(path, folder)] = image
    dataset.missing = sorted(_shown(p, folder) for p in labels - claimed)
    return dataset


def _yolo_boxes(label: Path, folder: Path, names: list[str], names_file: str) -> list:
    """A YOLO label file's boxes, still as fractions of the image: ('<class index>', x1, y1, x2, y2)."""
    shown = _shown(label, folder)
    boxes = []
    for number, line in enumerate(label.read_text("utf-8-sig", errors="replace").splitlines(), 1):
        values = line.split()
        if not values:
            continue
        where = f"'{shown}' line {number}"
        if len(values) < 5 or (len(values) > 5 and len(values) % 2 == 0):
            raise BadRequest(f"{where}: a label is 'class x_center y_center width height' (or a polygon), not {line!r}")
        try:
            index = int(values[0])
        except ValueError:
            raise BadRequest(f"{where}: the class is {values[0]!r}, not a class number") from None
        if not 0 <= index < len(names):
            raise BadRequest(f"{where}: class {index} is not among the {len(names)} classes of {names_file}")
        numbers = [_number(v, "a coordinate", where) for v in values[1:]]
        if len(numbers) == 4:
            cx, cy, w, h = numbers
            boxes.append((str(index), cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
        else:  # a segment's points: its box
            xs, ys = numbers[0::2], numbers[1::2]
            boxes.append((str(index), min(xs), min(ys), max(xs), max(ys)))
    return boxes


READERS: dict[str, Callable[[Path, list[Path], Path], Dataset]] = {
    "coco": _read_coco,
    "voc": _read_voc,
    "cvat": _read_cvat,
    "yolo": _read_yolo,
}


def detect(folder: Path, files: list[Path]) -> str:
    """The format of a dataset folder, told apart by its files; a 400 saying what each needs when it is none, or
    which ones it holds when it looks like several."""
    found = []
    if (folder / "annotations.xml").is_file():
        found.append("cvat")
    if _voc_files(files, folder):
        found.append("voc")
    if _coco_files(files, folder):
        found.append("coco")
    if any((folder / name).is_file() for name in YOLO_NAMES):
        found.append("yolo")
    if not found:
        raise BadRequest(f"no dataset found in '{folder.name}': it needs, for {NEEDS}")
    if len(found) > 1:
        raise BadRequest(
            f"'{folder.name}' looks like {' and '.join(FORMATS[f] for f in found)}: give the format "
            f"({', '.join(found)})"
        )
    return found[0]


def read(folder: Path, format: str, root: Path) -> Dataset:
    """The dataset in `folder` (a folder of the workspace `root`, which its images must be in)."""
    files = _files(folder)
    if not files:
        raise BadRequest(f"'{folder.name}' is empty: no dataset found; it needs, for {NEEDS}")
    format = detect(folder, files) if format == "auto" else format
    dataset = READERS[format](folder, files, root)
    if not dataset.images:
        missing = f" (none of the {len(dataset.missing)} images it names is there)" if dataset.missing else ""
        raise BadRequest(f"no image of the {FORMATS[format]} dataset in '{folder.name}' found{missing}: add them")
    if len(dataset.images) > MAX_IMAGES:
        raise BadRequest(f"'{folder.name}' holds {len(dataset.images)} images, more than {MAX_IMAGES}: split it")
    return dataset


def _size(image: Image, folder: Path) -> tuple[float, float]:
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    if image.size and image.size[0] > 0 and image.size[1] > 0:
        return image.size
    try:
        with PILImage.open(image.path) as opened:  # reads the header only
            return opened.size
    except (UnidentifiedImageError, OSError):
        raise BadRequest(f"'{_shown(image.path, folder)}' is not a readable image: remove or replace it") from None


def yolo_labels(dataset: Dataset, folder: Path) -> tuple[dict[str, str], dict[str, int]]:
    """Each image's YOLO label file's text (by its key), and counts: boxes kept, dropped, background images."""
    labels: dict[str, str] = {}
    counts = {"boxes": 0, "dropped": 0, "background": 0}
    normalized = dataset.format == "yolo"
    for key, image in dataset.images.items():
        width, height = _size(image, folder)
        lines = []
        for label, x1, y1, x2, y2 in image.boxes:
            index = int(label) if normalized else dataset.names.index(label)
            if normalized:
                x1, y1, x2, y2 = x1 * width, y1 * height, x2 * width, y2 * height
            x1, x2 = sorted((min(max(x1, 0), width), min(max(x2, 0), width)))
            y1, y2 = sorted((min(max(y1, 0), height), min(max(y2, 0), height)))
            if x2 - x1 < 1 or y2 - y1 < 1:  # less than a pixel on the image
                counts["dropped"] += 1
                continue
            cx, cy, w, h = (x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height
            lines.append(f"{index} {cx:.6g} {cy:.6g} {w:.6g} {h:.6g}\n")
        counts["boxes"] += len(lines)
        counts["background"] += not lines
        labels[key] = "".join(lines)
    return labels, counts


# -- writing --------------------------------------------------------------------------------


def split_files(files: list[str], request: Split) -> dict[str, list[str]]:
    """{"train": ..., "val": ...}: a seeded shuffle, `val_fraction` held out (at least one image, if any is asked
    for and there are two or more)."""
    files = list(files)
    random.Random(request.seed).shuffle(files)
    n_val = round(len(files) * request.val_fraction)
    if request.val_fraction > 0 and len(files) > 1:
        n_val = min(max(n_val, 1), len(files) - 1)
    return {"train": files[n_val:], "val": files[:n_val]}


def file_names(keys: list[str]) -> dict[str, str]:
    """A file name in the dataset for each image (a path, or a connection's 'name:path'): its own name, unless two
    share a stem (their label files would be one): then its path with '__' for '/', and its suffix in the stem."""

    def clashing(names: dict[str, str]) -> set[str]:
        stems: dict[str, int] = {}
        for name in names.values():
            stem = PurePosixPath(name).stem.lower()
            stems[stem] = stems.get(stem, 0) + 1
        return {key for key, name in names.items() if stems[PurePosixPath(name).stem.lower()] > 1}

    names = {key: PurePosixPath(key).name for key in keys}
    for key in clashing(names):
        names[key] = key.replace("/", "__")
    for key in clashing(names):
        path = PurePosixPath(names[key])
        names[key] = f"{path.stem}_{path.suffix.lstrip('.')}{path.suffix}"
    return names


def write_yolo(
    target: Path, labels: dict[str, str], names: list[str], request: Split, copy: Callable[[str, Path], None]
) -> dict[str, int]:
    """An Ultralytics YOLO dataset in `target`: each image (`copy(key, destination)` puts it there) and its label
    file's text (`labels[key]`), split into train/val, and a data.yaml with the class names; the split's sizes."""
    files = sorted(labels)
    named = file_names(files)
    counts = {}
    for split, chosen in split_files(files, request).items():
        (target / "images" / split).mkdir(parents=True, exist_ok=True)
        (target / "labels" / split).mkdir(parents=True, exist_ok=True)
        for key in chosen:
            copy(key, target / "images" / split / named[key])
            (target / "labels" / split / f"{PurePosixPath(named[key]).stem}.txt").write_text(labels[key])
        counts[split] = len(chosen)
    data = {
        "path": str(target),
        "train": "images/train",
        "val": "images/val" if counts["val"] else "images/train",
        "names": dict(enumerate(names)),
    }
    (target / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return counts


def convert(source: Path, format: str, target: Path, request: Split, root: Path) -> dict[str, Any]:
    """Read the dataset in `source` and write it to `target` as Ultralytics YOLO; what was converted."""
    dataset = read(source, format, root)
    labels, counts = yolo_labels(dataset, source)
    split = write_yolo(
        target, labels, dataset.names, request, lambda key, to: shutil.copyfile(dataset.images[key].path, to)
    )
    return {
        "format": dataset.format,
        "images": len(labels),
        **counts,
        "classes": dataset.names,
        **split,
        "missing": len(dataset.missing),
        "missing_files": dataset.missing[:20],
        "folder": target.relative_to(root).as_posix(),
        "data": (target / "data.yaml").relative_to(root).as_posix(),
    }
