"""Marketplace search latency at 10,000 modules (one run, pure Python, no server).

Generates a seeded catalogue of realistic ai4-metadata v2 documents (aquatic and machine-learning
vocabulary, facet values from the ai4-metadata v2.3.0 enums, markdown descriptions), builds a
CatalogIndex and runs mixed faceted searches: free text (last word often unfinished), 0-2 facet
filters, a sort and a page. The index starts cold: its caches fill only as the queries run.
Prints the build time, p50/p95/max latency and the ratio of p95 to the 20 ms target, and the
latency of a few hard cases (searches matching most of the catalogue).

    .venv/bin/python bench/catalog_search.py [--modules 10000] [--queries 500] [--seed 7]
"""

from __future__ import annotations

import argparse
import gc
import math
import random
import statistics
import time
from datetime import date, timedelta
from pathlib import Path

from reeflab.catalog.index import CatalogIndex
from reeflab.catalog.models import ModuleEntry

TARGET_MS = 20.0

# ai4-metadata v2.3.0 enums (ai4_metadata/assets/schemata/ai4-apps-v2.3.0.json)
LIBRARIES = ["TensorFlow", "PyTorch", "Keras", "Scikit-learn", "XGBoost", "LightGBM", "CatBoost", "Other"]
TASKS = [
    "Computer Vision", "Natural Language Processing", "Time Series", "Recommender Systems", "Anomaly Detection",
    "Regression", "Classification", "Clustering", "Dimensionality Reduction", "Generative Models",
    "Graph Neural Networks", "Optimization", "Reinforcement Learning", "Transfer Learning",
    "Uncertainty Estimation", "Other",
]  # fmt: skip
CATEGORIES = ["AI4 pre trained", "AI4 trainable", "AI4 inference", "AI4 tools"]
DATA_TYPES = ["Image", "Text", "Time Series", "Tabular", "Graph", "Audio", "Video", "Other"]

SUBJECTS = """fish plankton zooplankton phytoplankton diatom coral reef seagrass kelp algae jellyfish salmon trout
cod tuna herring sardine shark ray whale dolphin seal turtle crab lobster shrimp mussel oyster sponge seabird
mangrove estuary lagoon river lake wetland ocean coast seafloor sediment litter plastic microplastic debris
bycatch eDNA larvae otolith scale fin gill""".split()
SETTINGS = """underwater marine freshwater benthic pelagic coastal deep-sea intertidal tropical arctic
Méditerranée estuarine riverine""".split()
ACTIONS = """detection segmentation classification counting tracking identification estimation forecasting
monitoring mapping assessment recognition localisation denoising""".split()
ARCHS = """YOLOv8 YOLOv5 ResNet50 EfficientNet U-Net Mask-RCNN Faster-RCNN ViT DINOv2 Swin ConvNeXt LSTM
Transformer Random-Forest XGBoost Autoencoder CLIP SAM MobileNet DeepLabV3""".split()
SENSORS = """camera video sonar hydrophone acoustic satellite Sentinel-2 drone ROV AUV glider FlowCam
microscope trap trawl buoy CTD""".split()
MEASURES = """abundance biomass length size species diversity turbidity salinity temperature oxygen chlorophyll
bleaching cover health occupancy behaviour migration spawning""".split()
FILLER = """the a of and to in with for on from by using this that is are was be we our model dataset data
trained images annotated labels training inference pipeline results accuracy mAP recall precision
validation test split augmentation batch epochs learning rate weights pretrained fine-tuned transfer
collected survey station season year project partners open source licence citation please cite paper
preprocessing normalisation resolution frames per second GPU CPU memory deployment API endpoint docker
container input output JSON prediction confidence threshold bounding boxes masks""".split()
SYLLABLES = "ca ri no ma pe lo ta si cu mo ra ne phy lla bra chi the stra gon dus pis ce lus tho".split()


def species(rng: random.Random) -> str:
    genus = "".join(rng.choices(SYLLABLES, k=rng.randint(2, 3))).capitalize()
    return f"{genus} {''.join(rng.choices(SYLLABLES, k=rng.randint(2, 3)))}us"


def sentence(rng: random.Random, words: list[str], n: int) -> str:
    return " ".join(rng.choice(words) for _ in range(n)).capitalize() + "."


def module(rng: random.Random, i: int, taxa: list[str], tags: list[str]) -> ModuleEntry:
    subject, action, arch = rng.choice(SUBJECTS), rng.choice(ACTIONS), rng.choice(ARCHS)
    setting, sensor, measure = rng.choice(SETTINGS), rng.choice(SENSORS), rng.choice(MEASURES)
    title = rng.choice(
        [
            f"{subject.capitalize()} {action} with {arch}",
            f"{setting.capitalize()} {subject} {action}",
            f"{arch} for {subject} {measure} from {sensor}",
            f"{rng.choice(taxa)} {action} ({arch})",
        ]
    )
    topic = [subject, action, arch, setting, sensor, measure, *rng.sample(taxa, 2)]
    pool = FILLER * 2 + topic * 3 + rng.sample(SUBJECTS + MEASURES + SENSORS, 12)
    paragraphs = [sentence(rng, pool, rng.randint(8, 20)) for _ in range(rng.randint(4, 12))]
    description = (
        f"# {title}\n\n{' '.join(paragraphs[:3])}\n\n## Usage\n\n"
        + "\n".join(f"- {p}" for p in paragraphs[3:])
        + f"\n\nSee [the paper](https://doi.org/10.1234/reef.{i}) and https://github.com/reeflab/module-{i}.\n"
    )
    created = date(2019, 1, 1) + timedelta(days=rng.randint(0, 2000))
    updated = created + timedelta(days=rng.randint(0, 600))
    module_tasks = rng.sample(
        TASKS[:8] if action != "forecasting" else ["Time Series", "Regression"], rng.randint(1, 2)
    )
    if sensor in ("camera", "video", "drone", "ROV", "microscope", "FlowCam", "satellite", "Sentinel-2"):
        module_tasks.append("Computer Vision")
    metadata = {
        "metadata_version": "2.3.0",
        "title": title,
        "summary": f"{action.capitalize()} of {subject} {measure} in {setting} {sensor} data with {arch}.",
        "description": description,
        "links": {"source_code": f"https://github.com/reeflab/module-{i}"},
        "dates": {"created": created.isoformat(), "updated": updated.isoformat()},
        "libraries": rng.sample(LIBRARIES, rng.choice([1, 1, 1, 2])),
        "tasks": sorted(set(module_tasks)),
        "categories": rng.sample(CATEGORIES, rng.randint(1, 2)),
        "tags": sorted(set(rng.sample(tags, rng.randint(1, 4)) + [subject, action])),
        "data-type": rng.sample(DATA_TYPES, rng.choice([1, 1, 2])),
        "resources": {"inference": {"cpu": rng.choice([1, 2, 4]), "memory_MB": rng.choice([2000, 4000, 8000])}},
    }
    return ModuleEntry(id=f"module-{i:05d}", source="remote", metadata=metadata, valid=rng.random() > 0.03)


def catalogue(rng: random.Random, n: int) -> list[ModuleEntry]:
    taxa = [species(rng) for _ in range(1500)]
    tags = SUBJECTS + SENSORS + MEASURES + [a.lower() for a in ARCHS] + [f"project-{k}" for k in range(150)]
    return [module(rng, i, taxa, tags) for i in range(n)]


def random_query(rng: random.Random) -> dict:
    text = ""
    if rng.random() < 0.8:
        picks = rng.sample(SUBJECTS + ACTIONS + SETTINGS + SENSORS + MEASURES + ARCHS, rng.choice([1, 1, 2, 2, 3]))
        last = picks[-1]
        if rng.random() < 0.5 and len(last) > 3:  # still typing
            picks[-1] = last[: rng.randint(3, len(last) - 1)]
        text = " ".join(picks)
    filters: dict[str, list[str]] = {}
    for facet in rng.sample(["tasks", "libraries", "categories", "data-type"], rng.choice([0, 1, 1, 2, 2])):
        enum = {"tasks": TASKS, "libraries": LIBRARIES, "categories": CATEGORIES, "data-type": DATA_TYPES}[facet]
        filters[facet] = rng.sample(enum, rng.choice([1, 1, 2]))
    if rng.random() < 0.15:  # a tag clicked on a card
        filters["tags"] = [rng.choice(SUBJECTS + SENSORS + MEASURES)]
    return {
        "query": text,
        "filters": filters,
        "sort": rng.choice(["relevance", "relevance", "title", "updated"]),
        "page": rng.choice([1, 1, 1, 1, 2, 2, 3, 8]),
        "per_page": rng.choice([20, 20, 50]),
    }


# whole-catalogue results: one-letter prefixes (thousands of words start with them), deep pages
HARD = [
    {"query": "s"},
    {"query": "c", "sort": "updated"},
    {"query": "t", "page": 40, "per_page": 100},
    {"query": "", "sort": "updated", "page": 99, "per_page": 100},
    {"query": "model trained data"},
]


def hard_ms(index: CatalogIndex, query: dict) -> float:
    start = time.perf_counter()
    index.search(**query)
    return (time.perf_counter() - start) * 1000


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modules", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    entries = catalogue(rng, args.modules)
    gc.collect()
    rss_before = rss_mb()
    start = time.perf_counter()
    index = CatalogIndex(entries)
    build_s = time.perf_counter() - start
    rss_after = rss_mb()
    queries = [random_query(rng) for _ in range(args.queries)]
    times_ms: list[float] = []
    matched: list[int] = []
    for q in queries:
        start = time.perf_counter()
        result = index.search(**q)
        times_ms.append((time.perf_counter() - start) * 1000)
        matched.append(result.total)
    slowest = queries[max(range(len(queries)), key=times_ms.__getitem__)]
    times_ms.sort()
    p50 = statistics.median(times_ms)
    p95 = times_ms[math.ceil(0.95 * len(times_ms)) - 1]  # nearest rank
    print(f"catalogue: {args.modules} modules (seed {args.seed})")
    print(f"index build: {build_s:.2f} s, resident memory +{rss_after - rss_before:.0f} MB")
    print(
        f"{args.queries} mixed faceted searches (matches per search: median {statistics.median(matched):.0f}, "
        f"max {max(matched)}; {sum(1 for m in matched if m == 0)} with none)"
    )
    print(f"  p50 {p50:.2f} ms  p95 {p95:.2f} ms  max {times_ms[-1]:.2f} ms")
    print(f"  slowest: {slowest}")
    hard = [(q, hard_ms(index, q)) for q in HARD]
    print(
        "  hard cases, alone: "
        + ", ".join(f"{q['query']!r} {q.get('sort', 'relevance')} {ms:.2f} ms" for q, ms in hard)
    )
    print(f"  p95 / {TARGET_MS:.0f} ms target: {p95 / TARGET_MS:.3f}")


if __name__ == "__main__":
    main()
