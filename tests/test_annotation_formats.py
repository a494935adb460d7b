"""Other tools' detection datasets read as training data: six generated images with known boxes, written as COCO
(CVAT's COCO 1.0 layout), Pascal VOC, CVAT for images 1.1 and Ultralytics YOLO exports write them, converted
through POST /reeflab/api/annotation/datasets of a real Jupyter server with ReefLab into Ultralytics YOLO
datasets; every box comes back (within a pixel), clipped to its image, and Ultralytics accepts the data.yaml.
No Label Studio: converting needs none."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import random
import shutil
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from PIL import Image, ImageDraw
from tornado.httpclient import HTTPClientError

pytestmark = pytest.mark.timeout(120)

NAMES = ["fish", "coral"]
# (name, size, boxes as the annotator drew them: label, x1, y1, x2, y2 in pixels)
SCENES = [
    ("scene_0.jpg", (320, 240), [("fish", 20, 30, 120, 110), ("coral", 150, 100, 300, 230), ("fish", 50, 50, 50, 90)]),
    ("scene_1.jpg", (240, 320), [("fish", -10, 20, 80, 90), ("coral", 100, 200, 250, 330)]),  # past the edges
    ("scene_2.jpg", (300, 200), [("fish", 10, 10, 60, 50), ("fish", 200, 120, 290, 190)]),
    ("scene_3.jpg", (256, 256), [("coral", 30, 40, 220, 250)]),
    ("scene_4.jpg", (320, 180), [("fish", 100, 50, 180, 120)]),
    ("scene_5.jpg", (200, 200), []),  # nothing on it: a background image
]
GHOST = ("ghost.jpg", (100, 100), [("fish", 1, 1, 20, 20)])  # annotated, but the image is not there
EXPECTED = {"images": 6, "boxes": 8, "background": 1, "dropped": 1, "missing": 1, "train": 4, "val": 2}
SPLIT = {"val_fraction": 0.34, "seed": 7}


def clipped(size, boxes):
    """The boxes a YOLO dataset should hold: clipped to the image, those under a pixel wide dropped."""
    width, height = size
    kept = []
    for label, x1, y1, x2, y2 in boxes:
        x1, x2, y1, y2 = max(x1, 0), min(x2, width), max(y1, 0), min(y2, height)
        if x2 - x1 >= 1 and y2 - y1 >= 1:
            kept.append((label, x1, y1, x2, y2))
    return sorted(kept)


@pytest.fixture(scope="module")
def scenes() -> dict[str, bytes]:
    """Each scene's JPEG: its boxes drawn in colour on a noisy background."""
    made = {}
    for number, (name, size, boxes) in enumerate(SCENES):
        rng = random.Random(number)
        image = Image.new("RGB", size, (rng.randrange(256), rng.randrange(256), rng.randrange(256)))
        draw = ImageDraw.Draw(image)
        for label, x1, y1, x2, y2 in clipped(size, boxes):
            draw.rectangle((x1, y1, x2 - 1, y2 - 1), fill=(255, 120, 0) if label == "fish" else (200, 0, 200))
        out = io.BytesIO()
        image.save(out, "JPEG", quality=90)
        made[name] = out.getvalue()
    return made


def by_content(scenes) -> dict[str, tuple]:
    """Ground truth by the image's bytes (a dataset may rename an image): its size and expected boxes."""
    return {hashlib.sha256(scenes[name]).hexdigest(): (size, clipped(size, boxes)) for name, size, boxes in SCENES}


def write_coco(folder: Path, scenes) -> None:
    """As CVAT's 'COCO 1.0' export: annotations/instances_default.json and images/default/ (the subset's);
    one image without its size."""
    (folder / "images" / "default").mkdir(parents=True)
    data = {
        "licenses": [{"name": "", "id": 0, "url": ""}],
        "info": {"contributor": "", "date_created": "", "description": "", "url": "", "version": "", "year": ""},
        "categories": [{"id": i + 1, "name": n, "supercategory": ""} for i, n in enumerate(NAMES)],
        "images": [],
        "annotations": [],
    }
    for number, (name, (width, height), boxes) in enumerate([*SCENES, GHOST], 1):
        image = {"id": number, "file_name": name, "license": 0, "flickr_url": "", "coco_url": "", "date_captured": 0}
        if name != "scene_3.jpg":
            image.update(width=width, height=height)
        data["images"].append(image)
        for label, x1, y1, x2, y2 in boxes:
            data["annotations"].append(
                {
                    "id": len(data["annotations"]) + 1,
                    "image_id": number,
                    "category_id": NAMES.index(label) + 1,
                    "segmentation": [],
                    "area": float((x2 - x1) * (y2 - y1)),
                    "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)],
                    "iscrowd": 0,
                    "attributes": {"occluded": False, "rotation": 0.0},
                }
            )
        if name in scenes:
            (folder / "images" / "default" / name).write_bytes(scenes[name])
    (folder / "annotations").mkdir()
    (folder / "annotations" / "instances_default.json").write_text(json.dumps(data))


def write_voc(folder: Path, scenes) -> None:
    """As CVAT's 'PASCAL VOC 1.1' export: Annotations/*.xml, JPEGImages/, ImageSets/Main, labelmap.txt; one XML
    with a size of 0 (the image's header gives it)."""
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (folder / sub).mkdir(parents=True)
    for name, (width, height), boxes in [*SCENES, GHOST]:
        root = ET.Element("annotation")
        ET.SubElement(root, "folder").text = ""
        ET.SubElement(root, "filename").text = name
        source = ET.SubElement(root, "source")
        ET.SubElement(source, "database").text = "Unknown"
        size = ET.SubElement(root, "size")
        known = name != "scene_4.jpg"
        ET.SubElement(size, "width").text = str(width if known else 0)
        ET.SubElement(size, "height").text = str(height if known else 0)
        ET.SubElement(size, "depth").text = "3"
        ET.SubElement(root, "segmented").text = "0"
        for label, x1, y1, x2, y2 in boxes:
            item = ET.SubElement(root, "object")
            ET.SubElement(item, "name").text = label
            ET.SubElement(item, "pose").text = "Unspecified"
            ET.SubElement(item, "truncated").text = "0"
            ET.SubElement(item, "difficult").text = "0"
            box = ET.SubElement(item, "bndbox")
            for key, value in zip(("xmin", "ymin", "xmax", "ymax"), (x1, y1, x2, y2), strict=True):
                ET.SubElement(box, key).text = str(value)
        ET.ElementTree(root).write(folder / "Annotations" / f"{Path(name).stem}.xml", encoding="utf-8")
        if name in scenes:
            (folder / "JPEGImages" / name).write_bytes(scenes[name])
    stems = "".join(f"{Path(name).stem}\n" for name, _, _ in [*SCENES, GHOST])
    (folder / "ImageSets" / "Main" / "default.txt").write_text(stems)
    (folder / "labelmap.txt").write_text("# label:color_rgb:parts:actions\nbackground:0,0,0::\nfish:::\ncoral:::\n")


def write_cvat(folder: Path, scenes) -> None:
    """As CVAT's 'CVAT for images 1.1' export: annotations.xml (labels in its meta) and images/."""
    (folder / "images").mkdir(parents=True)
    root = ET.Element("annotations")
    ET.SubElement(root, "version").text = "1.1"
    task = ET.SubElement(ET.SubElement(root, "meta"), "task")
    ET.SubElement(task, "name").text = "reef"
    labels = ET.SubElement(task, "labels")
    for name in NAMES:
        label = ET.SubElement(labels, "label")
        ET.SubElement(label, "name").text = name
        ET.SubElement(label, "type").text = "rectangle"
    for number, (name, (width, height), boxes) in enumerate([*SCENES, GHOST]):
        image = ET.SubElement(root, "image", id=str(number), name=name, width=str(width), height=str(height))
        for label, x1, y1, x2, y2 in boxes:
            corners = {k: f"{v:.2f}" for k, v in zip(("xtl", "ytl", "xbr", "ybr"), (x1, y1, x2, y2), strict=True)}
            ET.SubElement(image, "box", label=label, source="manual", occluded="0", z_order="0", **corners)
        if name in scenes:
            (folder / "images" / name).write_bytes(scenes[name])
    ET.ElementTree(root).write(folder / "annotations.xml", encoding="utf-8", xml_declaration=True)


def write_yolo(folder: Path, scenes) -> None:
    """As Ultralytics lays a dataset out: data.yaml, images/{train,val}, labels/{train,val}. The val image
    scene_4 is named scene_0.jpg there too (two images of one name in two splits), the background image has no
    label file, and ghost's label file has no image."""
    for sub in ("images/train", "images/val", "labels/train", "labels/val"):
        (folder / sub).mkdir(parents=True)
    (folder / "data.yaml").write_text(
        yaml.safe_dump({"path": ".", "train": "images/train", "val": "images/val", "names": dict(enumerate(NAMES))})
    )
    for number, (name, (width, height), boxes) in enumerate([*SCENES, GHOST]):
        split = "train" if number < 4 else "val"
        stored = "scene_0.jpg" if name == "scene_4.jpg" else name
        lines = [
            f"{NAMES.index(label)} {(x1 + x2) / 2 / width:.6f} {(y1 + y2) / 2 / height:.6f} "
            f"{(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f}\n"
            for label, x1, y1, x2, y2 in boxes
        ]
        if boxes:
            (folder / "labels" / split / f"{Path(stored).stem}.txt").write_text("".join(lines))
        if name in scenes:
            (folder / "images" / split / stored).write_bytes(scenes[name])


WRITERS = {"coco": write_coco, "voc": write_voc, "cvat": write_cvat, "yolo": write_yolo}


@pytest.fixture(scope="module")
def ultralytics_offline(tmp_path_factory):
    """Ultralytics' dataset checks, offline, its settings in a temporary folder when this test imports it first,
    with the font it would otherwise download."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("YOLO_OFFLINE", "1")
        if "ultralytics" not in sys.modules:
            mp.setenv("YOLO_CONFIG_DIR", str(tmp_path_factory.mktemp("yolo-config")))
        import matplotlib
        from ultralytics.data import utils
        from ultralytics.utils import USER_CONFIG_DIR

        font = Path(USER_CONFIG_DIR) / "Arial.ttf"
        if not font.exists():
            font.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf", font)
        yield utils


async def post(jp_fetch, body: dict) -> dict:
    answer = await jp_fetch(
        "reeflab", "api", "annotation", "datasets", method="POST", body=json.dumps(body), request_timeout=60
    )
    assert answer.code == 201
    return json.loads(answer.body)


async def refused(jp_fetch, body: dict) -> tuple[int, str]:
    with pytest.raises(HTTPClientError) as err:
        await jp_fetch(
            "reeflab", "api", "annotation", "datasets", method="POST", body=json.dumps(body), request_timeout=60
        )
    return err.value.code, json.loads(err.value.response.body)["message"]


def read_back(target: Path, names: list[str]) -> dict[str, tuple]:
    """The converted dataset by its images' bytes: (split, size, boxes in pixels from its YOLO labels)."""
    found = {}
    for split in ("train", "val"):
        for image in sorted((target / "images" / split).iterdir()):
            with Image.open(image) as opened:
                width, height = opened.size
            boxes = []
            for line in (target / "labels" / split / f"{image.stem}.txt").read_text().splitlines():
                index, cx, cy, w, h = line.split()
                cx, cy, w, h = float(cx) * width, float(cy) * height, float(w) * width, float(h) * height
                boxes.append((names[int(index)], cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
            found[hashlib.sha256(image.read_bytes()).hexdigest()] = (split, (width, height), sorted(boxes))
    return found


@pytest.mark.parametrize("kind", ["coco", "voc", "cvat", "yolo"])
async def test_a_dataset_comes_back_as_yolo_box_for_box(kind, scenes, jp_fetch, jp_root_dir, ultralytics_offline):
    WRITERS[kind](jp_root_dir / "downloads" / kind, scenes)
    answer = await post(jp_fetch, {"source": f"downloads/{kind}", "folder": f"datasets/{kind}", **SPLIT})

    assert answer["format"] == kind  # told apart by its files ("auto")
    assert {k: answer[k] for k in EXPECTED} == EXPECTED, answer
    assert sorted(answer["classes"]) == sorted(NAMES)
    assert answer["missing_files"] == (["labels/val/ghost.txt"] if kind == "yolo" else ["ghost.jpg"])
    assert answer["folder"] == f"datasets/{kind}" and answer["data"] == f"datasets/{kind}/data.yaml"

    target = jp_root_dir / "datasets" / kind
    data = ultralytics_offline.check_det_dataset(str(target / "data.yaml"), autodownload=False)
    assert data["nc"] == 2 and sorted(data["names"].values()) == sorted(NAMES)
    names = [data["names"][i] for i in range(2)]
    truth = by_content(scenes)
    converted = read_back(target, names)
    assert converted.keys() == truth.keys()  # every image once, under whatever name
    assert sorted(split for split, _, _ in converted.values()) == ["train"] * 4 + ["val"] * 2
    for digest, (split, size, boxes) in converted.items():
        expected_size, expected = truth[digest]
        assert size == expected_size
        assert [b[0] for b in boxes] == [b[0] for b in expected], (split, boxes, expected)
        for got, want in zip(boxes, expected, strict=True):
            assert all(abs(g - w) <= 1 for g, w in zip(got[1:], want[1:], strict=True)), (got, want)
    # and each image with its label file as Ultralytics reads them: no corrupt label, the background one empty
    for split in ("train", "val"):
        for image in (target / "images" / split).iterdir():
            label = target / "labels" / split / f"{image.stem}.txt"
            *_, nm, nf, ne, nc, message = ultralytics_offline.verify_image_label(
                (str(image), str(label), "", False, 2, 0, 0, False)
            )
            assert (nm, nc) == (0, 0), message


async def test_bad_datasets_and_folders_are_refused_with_what_to_fix(scenes, jp_fetch, jp_root_dir):
    root = jp_root_dir
    write_cvat(root / "cvat", scenes)
    (root / "empty").mkdir()
    (root / "only-images").mkdir()
    (root / "only-images" / "a.jpg").write_bytes(scenes["scene_0.jpg"])

    code, message = await refused(jp_fetch, {"source": "../outside", "folder": "out"})
    assert code == 400 and "outside your workspace" in message
    code, message = await refused(jp_fetch, {"source": "cvat", "folder": "../../escaped"})
    assert code == 400 and "outside your workspace" in message
    code, message = await refused(jp_fetch, {"source": "/etc", "folder": "out"})
    assert code == 400 and "not a folder of your workspace" in message
    code, message = await refused(jp_fetch, {"source": "cvat", "folder": "out", "format": "labelme"})
    assert code == 400 and "format" in message and "coco" in message
    code, message = await refused(jp_fetch, {"source": "empty", "folder": "out"})
    assert code == 400 and "no dataset found" in message and "data.yaml" in message and "annotations.xml" in message
    code, message = await refused(jp_fetch, {"source": "only-images", "folder": "out"})
    assert code == 400 and "no dataset found in 'only-images'" in message and "instances JSON" in message
    # the wrong format named: what that format needs
    code, message = await refused(jp_fetch, {"source": "cvat", "folder": "out", "format": "coco"})
    assert code == 400 and "no COCO instances JSON" in message

    # a malformed XML: the file and the line
    write_voc(root / "voc", scenes)
    broken = root / "voc" / "Annotations" / "scene_2.xml"
    broken.write_text("<annotation>\n  <filename>scene_2.jpg</filename>\n  <size><width>3</size>\n</annotation>\n")
    code, message = await refused(jp_fetch, {"source": "voc", "folder": "out"})
    assert code == 400 and "'Annotations/scene_2.xml' is not well-formed XML (line 3" in message

    # a malformed JSON: the file and the line
    write_coco(root / "coco", scenes)
    instances = root / "coco" / "annotations" / "instances_default.json"
    instances.write_text('{\n  "images": [],\n  "annotations": [,]\n}\n')
    code, message = await refused(jp_fetch, {"source": "coco", "folder": "out"})
    assert code == 400 and "'annotations/instances_default.json' is not valid JSON (line 3" in message

    # an entity-expansion bomb ("billion laughs") is refused, not expanded
    bomb = root / "bomb"
    bomb.mkdir()
    entities = "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10))
    bomb.joinpath("annotations.xml").write_text(
        f'<?xml version="1.0"?><!DOCTYPE annotations [<!ENTITY l0 "lol">{entities}]>'
        '<annotations><image id="0" name="a.jpg" width="10" height="10"><box label="&l9;" xtl="0" ytl="0" '
        'xbr="5" ybr="5"/></image></annotations>'
    )
    code, message = await refused(jp_fetch, {"source": "bomb", "folder": "out"})
    assert code == 400 and "'annotations.xml' declares XML entities" in message

    # a box whose label is not among the dataset's labels
    annotations = root / "cvat" / "annotations.xml"
    annotations.write_text(annotations.read_text().replace('label="coral"', 'label="sponge"', 1))
    code, message = await refused(jp_fetch, {"source": "cvat", "folder": "out"})
    assert code == 400 and "'sponge' is not among the labels" in message and "fish, coral" in message

    # a YOLO class number past its names
    write_yolo(root / "yolo", scenes)
    (root / "yolo" / "labels" / "train" / "scene_2.txt").write_text("0 0.5 0.5 0.1 0.1\n5 0.5 0.5 0.2 0.2\n")
    code, message = await refused(jp_fetch, {"source": "yolo", "folder": "out"})
    assert code == 400 and "'labels/train/scene_2.txt' line 2: class 5 is not among the 2 classes" in message

    # the destination: not inside the source, and new or empty (409 as export's)
    code, message = await refused(jp_fetch, {"source": "voc", "folder": "voc/yolo"})
    assert code == 400 and "inside 'voc'" in message
    (root / "taken").mkdir()
    (root / "taken" / "notes.txt").write_text("mine")
    code, message = await refused(jp_fetch, {"source": "cvat", "folder": "taken"})
    assert code == 409 and "not empty" in message
    assert (root / "taken" / "notes.txt").read_text() == "mine" and not (root / "out").exists()


async def test_the_route_wants_a_login(http_server_client, jp_base_url):
    answer = await http_server_client.fetch(
        f"{jp_base_url}reeflab/api/annotation/datasets",
        method="POST",
        body=json.dumps({"source": "a", "folder": "b"}),
        raise_error=False,
    )
    assert answer.code in (401, 403)


async def test_export_writes_through_the_same_dataset_writer(scenes, jp_serverapp, jp_root_dir):
    """A project's export (its Label Studio JSON export's latest boxes, here as Label Studio writes them) goes
    through the writer conversion uses: same layout, same split of the same images, and the boxes."""
    from reeflab.annotation.models import ExportRequest

    (jp_root_dir / "scenes").mkdir()
    tasks = []
    for number, (name, (width, height), boxes) in enumerate(SCENES[:5]):
        (jp_root_dir / "scenes" / name).write_bytes(scenes[name])
        result = [
            {
                "type": "rectanglelabels",
                "original_width": width,
                "original_height": height,
                "value": {
                    "x": 100 * x1 / width,
                    "y": 100 * y1 / height,
                    "width": 100 * (x2 - x1) / width,
                    "height": 100 * (y2 - y1) / height,
                    "rectanglelabels": [label],
                },
            }
            for label, x1, y1, x2, y2 in clipped((width, height), boxes)
        ]
        annotation = {"id": number, "result": result, "was_cancelled": False, "updated_at": "2026-12-06T10:00:00Z"}
        tasks.append({"id": number, "data": {"file": f"scenes/{name}"}, "annotations": [annotation]})
    service = jp_serverapp.web_app.settings["reeflab"].annotation
    target = jp_root_dir / "datasets" / "exported"
    exported = service._write_yolo(tasks, NAMES, target, ExportRequest(folder="datasets/exported", **SPLIT), "")
    assert (exported["train"], exported["val"]) == (3, 2)
    truth = by_content(scenes)
    for digest, (_, size, boxes) in read_back(target, NAMES).items():
        assert size == truth[digest][0] and [b[0] for b in boxes] == [b[0] for b in truth[digest][1]]
        for got, want in zip(boxes, truth[digest][1], strict=True):
            assert all(abs(g - w) <= 1 for g, w in zip(got[1:], want[1:], strict=True)), (got, want)
    written = sorted(p.name for p in (target / "images").glob("*/*"))
    assert written == [name for name, _, _ in SCENES[:5]]  # the images keep their names


async def test_the_python_client_converts(scenes, connection, jp_root_dir):
    from reeflab.client import annotation

    write_cvat(jp_root_dir / "downloads" / "cvat", scenes)
    answer = await asyncio.get_running_loop().run_in_executor(  # the client is synchronous: off the server's loop
        None, lambda: annotation.convert("downloads/cvat", "datasets/cvat", format="cvat", connection=connection)
    )
    assert answer["format"] == "cvat" and answer["boxes"] == 8 and (answer["train"], answer["val"]) == (5, 1)
    assert (jp_root_dir / "datasets" / "cvat" / "data.yaml").is_file()
