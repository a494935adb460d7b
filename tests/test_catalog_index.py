"""Marketplace search: free text, facet filters and counts, sorting, pages and the errors users see."""

from __future__ import annotations

import random

import pytest
from reeflab.catalog.index import MAX_QUERY_CHARS, SORTS, CatalogIndex, words
from reeflab.catalog.models import FACETS, ModuleEntry
from reeflab.errors import BadRequest


def module(
    id: str,
    title: str,
    summary: str = "",
    description: str = "",
    tags: tuple[str, ...] = (),
    tasks: tuple[str, ...] = (),
    libraries: tuple[str, ...] = (),
    categories: tuple[str, ...] = (),
    data_type: tuple[str, ...] = (),
    updated: str | None = "2024-01-01",
    valid: bool = True,
) -> ModuleEntry:
    metadata = {
        "metadata_version": "2.3.0",
        "title": title,
        "summary": summary,
        "description": description,
        "tags": list(tags),
        "tasks": list(tasks),
        "libraries": list(libraries),
        "categories": list(categories),
        "data-type": list(data_type),
    }
    if updated:
        metadata["dates"] = {"created": "2020-01-01", "updated": updated}
    return ModuleEntry(id=id, source="remote", metadata=metadata, valid=valid)


CATALOGUE = [
    module(
        "fish-detector",
        "Fish detector",
        summary="Finds fish in underwater video.",
        tags=("YOLO", "fish"),
        tasks=("Computer Vision", "Object Detection"),
        libraries=("PyTorch",),
        categories=("AI4 pre trained",),
        data_type=("Video", "Image"),
        updated="2024-05-01",
    ),
    module(
        "plankton-classifier",
        "Plankton classifier",
        summary="Classifies zooplankton images from a FlowCam.",
        tags=("plankton",),
        tasks=("Computer Vision", "Classification"),
        libraries=("TensorFlow", "Keras"),
        categories=("AI4 trainable",),
        data_type=("Image",),
        updated="2025-01-10",
    ),
    module(
        "coral-segmentation",
        "Coral reef segmentation",
        summary="Segments coral cover in reef photos.",
        description="# Coral\n\nTrained on fish-free quadrats from the **Great Barrier Reef**.",
        tags=("coral", "reef"),
        tasks=("Computer Vision",),
        libraries=("pytorch",),  # spelled differently from the others
        categories=("AI4 trainable",),
        data_type=("Image",),
        updated="2023-07-15",
    ),
    module(
        "ecologie-marine",
        "Écologie marine",
        summary="Indicateurs de biodiversité côtière.",
        tasks=("Regression",),
        libraries=("Scikit-learn",),
        categories=("AI4 inference",),
        data_type=("Tabular",),
        updated="2024-05-01",
    ),
    module(
        "litter-counter",
        "Beach litter counter",
        summary="Counts plastic litter on beaches from drone images.",
        description="Uses a YOLO model; see [the code](https://github.com/reeflab/litter).",
        tags=("litter", "plastic"),
        tasks=("Computer Vision", "Classification"),
        libraries=("PyTorch",),
        categories=("AI4 pre trained",),
        data_type=("Image",),
        updated=None,
        valid=False,
    ),
    module(
        "fisheries-dashboard",
        "Fisheries dashboard",
        summary="Time series of catches.",
        tasks=("Time Series",),
        libraries=("XGBoost",),
        categories=("AI4 tools",),
        data_type=("Tabular", "Time Series"),
        updated="2022-03-01",
    ),
]
BY_TITLE = [
    "litter-counter",
    "coral-segmentation",
    "ecologie-marine",
    "fish-detector",
    "fisheries-dashboard",
    "plankton-classifier",
]


@pytest.fixture(scope="module")
def index() -> CatalogIndex:
    return CatalogIndex(CATALOGUE)


def ids(result) -> list[str]:
    return [entry.id for entry in result.items]


def counts(result, facet: str) -> list[tuple[str, int]]:
    return [(row["value"], row["count"]) for row in result.facets[facet]]


@pytest.mark.parametrize(
    "query, expected",
    [
        ("plankton", ["plankton-classifier"]),
        ("plank", ["plankton-classifier"]),  # the last word may be unfinished
        ("PLANKTON", ["plankton-classifier"]),
        ("zoo", ["plankton-classifier"]),  # found in the summary
        ("plankton flowcam", ["plankton-classifier"]),  # every word, in any field
        ("ecologie", ["ecologie-marine"]),
        ("Écologie", ["ecologie-marine"]),
        ("cotiere", ["ecologie-marine"]),  # "côtière" in the summary
        ("fish", ["coral-segmentation", "fish-detector", "fisheries-dashboard"]),  # description, title, prefix
        ("fish video", ["fish-detector"]),
        ("video fish", ["fish-detector"]),
        ("fish det", ["fish-detector"]),
        ("fish zebra", []),
        ("fish dashboard", []),  # only the last word matches longer words: "fish" is not "fisheries"
        ("yolo", ["litter-counter", "fish-detector"]),  # a tag, and a word of the description
        ("detectors", ["fish-detector"]),  # plural and singular match
        ("counts litter", ["litter-counter"]),
        ("classifier for plankton", ["plankton-classifier"]),  # "for" need not be found
        ("fish-detector", ["fish-detector"]),  # the module id, as typed
        ("github", []),  # addresses of links in descriptions are not searched
        ("", BY_TITLE),
        ("  !? ", BY_TITLE),  # no words: no text condition
    ],
)
def test_free_text(index, query, expected):
    assert ids(index.search(query, sort="title", per_page=100)) == expected


@pytest.mark.parametrize(
    "entries, query, expected",
    [
        # the same word counts for most in the title, then tags, summary, description (titles in reverse order)
        (
            [
                module("d", "Alpha", description="kelp"),
                module("c", "Beta", summary="kelp"),
                module("b", "Gamma", tags=("kelp",)),
                module("a", "Zeta kelp"),
            ],
            "kelp",
            ["a", "b", "c", "d"],
        ),
        # the word itself ranks above longer words it starts, in the same field
        ([module("a", "Fisheries counter"), module("b", "Zebra fish counter")], "fish", ["b", "a"]),
        # in the title, a longer word beats the word itself in the description
        (CATALOGUE, "fish", ["fish-detector", "fisheries-dashboard", "coral-segmentation"]),
        # equal scores: by title
        ([module("z", "Reef b"), module("y", "Reef a"), module("x", "Reef c")], "reef", ["y", "z", "x"]),
    ],
)
def test_relevance_order(entries, query, expected):
    assert ids(CatalogIndex(entries).search(query, per_page=100)) == expected


@pytest.mark.parametrize(
    "filters, expected",
    [
        ({"tasks": ["Classification"]}, ["litter-counter", "plankton-classifier"]),
        ({"tasks": ["classification"]}, ["litter-counter", "plankton-classifier"]),
        ({"tasks": ["Classification", "Regression"]}, ["litter-counter", "ecologie-marine", "plankton-classifier"]),
        (
            {"tasks": ["Computer Vision"], "libraries": ["PyTorch"]},
            ["litter-counter", "coral-segmentation", "fish-detector"],
        ),
        ({"tasks": ["Computer Vision"], "libraries": ["Keras", "XGBoost"]}, ["plankton-classifier"]),
        ({"data-type": ["Time Series"]}, ["fisheries-dashboard"]),
        ({"tags": ["REEF"]}, ["coral-segmentation"]),
        ({"categories": ["ai4  trainable"]}, ["coral-segmentation", "plankton-classifier"]),  # spacing ignored
        ({"tasks": ["Quantum computing"]}, []),
        ({"tasks": []}, BY_TITLE),
        ({"libraries": "pytorch"}, ["litter-counter", "coral-segmentation", "fish-detector"]),  # one value as text
    ],
)
def test_facet_filters(index, filters, expected):
    assert ids(index.search(filters=filters, sort="title", per_page=100)) == expected


def test_text_and_filters_together(index):
    assert ids(index.search("fish", {"data-type": ["video"]})) == ["fish-detector"]


def test_facet_counts_without_filters(index):
    result = index.search()
    # by count, then value; one spelling per value, the most common one ("PyTorch", not "pytorch")
    assert counts(result, "libraries") == [
        ("PyTorch", 3),
        ("Keras", 1),
        ("Scikit-learn", 1),
        ("TensorFlow", 1),
        ("XGBoost", 1),
    ]
    assert counts(result, "tasks") == [
        ("Computer Vision", 4),
        ("Classification", 2),
        ("Object Detection", 1),
        ("Regression", 1),
        ("Time Series", 1),
    ]
    assert set(result.facets) == set(FACETS)


def test_facet_counts_leave_out_their_own_filter(index):
    everything = counts(index.search(), "tasks")
    result = index.search(filters={"tasks": ["Classification"]})
    assert counts(result, "tasks") == everything  # other tasks can still be added
    assert counts(result, "libraries") == [("Keras", 1), ("PyTorch", 1), ("TensorFlow", 1)]

    result = index.search(filters={"tasks": ["Classification"], "libraries": ["PyTorch"]})
    assert ids(result) == ["litter-counter"]
    assert counts(result, "tasks") == [("Computer Vision", 3), ("Classification", 1), ("Object Detection", 1)]
    assert counts(result, "libraries") == [("Keras", 1), ("PyTorch", 1), ("TensorFlow", 1)]
    assert counts(result, "data-type") == [("Image", 1)]


def test_facet_counts_follow_the_query(index):
    result = index.search("fish")
    assert counts(result, "libraries") == [("PyTorch", 2), ("XGBoost", 1)]
    assert counts(result, "data-type") == [("Image", 2), ("Tabular", 1), ("Time Series", 1), ("Video", 1)]


def test_selected_values_stay_listed(index):
    result = index.search(filters={"tasks": ["computer vision", "Quantum computing"]})
    assert counts(result, "tasks")[0] == ("Computer Vision", 4)  # the catalogue's spelling
    assert counts(result, "tasks")[-1] == ("Quantum computing", 0)  # nothing has it: still there to unselect
    result = index.search("plankton", {"libraries": ["XGBoost"]})
    assert result.total == 0
    assert counts(result, "libraries") == [("Keras", 1), ("TensorFlow", 1), ("XGBoost", 0)]


def test_facet_limit_keeps_the_top_values_and_the_selected_ones(index):
    result = index.search(filters={"tasks": ["Time Series"]}, facet_limit=2)
    assert counts(result, "tasks") == [("Computer Vision", 4), ("Classification", 2), ("Time Series", 1)]
    assert counts(result, "libraries") == [("XGBoost", 1)]


@pytest.mark.parametrize(
    "sort, expected",
    [
        ("title", BY_TITLE),  # case and accents do not matter: "Écologie" between "Coral" and "Fish"
        ("relevance", BY_TITLE),  # no query: by title
        # newest first; same day by title; undated last
        (
            "updated",
            [
                "plankton-classifier",
                "ecologie-marine",
                "fish-detector",
                "coral-segmentation",
                "fisheries-dashboard",
                "litter-counter",
            ],
        ),
    ],
)
def test_sorts(index, sort, expected):
    assert ids(index.search(sort=sort)) == expected


@pytest.mark.parametrize("query", ["", "fish", "i", "image", "reef"])
@pytest.mark.parametrize("sort", SORTS)
def test_same_results_whatever_the_catalogue_order(index, query, sort):
    shuffled = list(CATALOGUE)
    random.Random(3).shuffle(shuffled)
    assert ids(CatalogIndex(shuffled).search(query, sort=sort)) == ids(index.search(query, sort=sort))


@pytest.mark.parametrize(
    "page, per_page, expected",
    [
        (1, 2, BY_TITLE[:2]),
        (3, 2, BY_TITLE[4:]),
        (2, 4, BY_TITLE[4:]),  # last page, partly filled
        (4, 2, []),  # past the end: nothing, not an error
        (1, 1, BY_TITLE[:1]),
        (6, 1, BY_TITLE[5:]),
        (1, 100, BY_TITLE),
    ],
)
def test_pages(index, page, per_page, expected):
    result = index.search(sort="title", page=page, per_page=per_page)
    assert ids(result) == expected
    assert (result.total, result.page, result.per_page) == (6, page, per_page)
    assert result.pages == -(-6 // per_page)


@pytest.mark.parametrize("query", ["", "fish", "i", "c"])
@pytest.mark.parametrize("sort", SORTS)
@pytest.mark.parametrize("per_page", [1, 2, 4])
def test_pages_put_together_give_the_whole_list(index, query, sort, per_page):
    whole = index.search(query, sort=sort, per_page=100)
    pages = [
        ids(index.search(query, sort=sort, page=p, per_page=per_page)) for p in range(1, whole.total // per_page + 3)
    ]
    assert sum(pages, []) == ids(whole)


def test_invalid_modules_keep_their_place(index):
    result = index.search(sort="title")
    assert ids(result)[0] == "litter-counter"
    assert result.items[0].valid is False
    assert all(entry.valid for entry in result.items[1:])


VALID = "tasks, libraries, categories, data-type, tags"


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"page": 0}, "page must be a whole number of 1 or more (got 0)."),
        ({"page": -3}, "page must be a whole number of 1 or more (got -3)."),
        ({"page": "2"}, "page must be a whole number of 1 or more (got '2')."),
        ({"per_page": 0}, "per_page must be a whole number from 1 to 100 (got 0)."),
        ({"per_page": 101}, "per_page must be a whole number from 1 to 100 (got 101)."),
        ({"sort": "newest"}, "Unknown sort 'newest'. Sort by one of: relevance, title, updated."),
        (
            {"filters": {"task": ["Classification"]}},
            f"Unknown filter 'task'. Did you mean 'tasks'? Filter on one of: {VALID}.",
        ),
        (
            {"filters": {"licence": ["MIT"]}},
            f"Unknown filter 'licence'. Filter on one of: {VALID}.",
        ),
        ({"filters": {"tasks": 3}}, "Filter 'tasks' needs a list of values, e.g. {'tasks': ['a value']}."),
        (
            {"filters": ["tasks"]},
            "Filters must map a facet name to a list of values, e.g. {'tasks': ['Classification']}.",
        ),
        (
            {"query": "x" * (MAX_QUERY_CHARS + 1)},
            f"The search text is too long ({MAX_QUERY_CHARS + 1} characters); use at most {MAX_QUERY_CHARS}.",
        ),
        ({"facet_limit": 0}, "facet_limit must be a whole number of 1 or more (got 0)."),
    ],
)
@pytest.mark.parametrize("entries", [CATALOGUE, []], ids=["catalogue", "empty"])
def test_bad_arguments_say_what_to_fix(entries, arguments, message):
    with pytest.raises(BadRequest) as caught:
        CatalogIndex(entries).search(**arguments)
    assert caught.value.message == message
    assert caught.value.status == 400


@pytest.mark.parametrize(
    "arguments",
    [{}, {"query": "fish"}, {"sort": "updated", "page": 3}, {"filters": {"tasks": ["Classification"]}}],
)
def test_empty_catalogue(arguments):
    result = CatalogIndex([]).search(**arguments)
    assert (result.total, result.pages, result.items) == (0, 0, [])
    selected = arguments.get("filters", {})
    assert result.facets == {f: [{"value": v, "count": 0} for v in selected.get(f, [])] for f in FACETS}


def test_malformed_metadata_is_still_searchable():
    broken = ModuleEntry(
        id="broken",
        source="installed",
        valid=False,
        metadata={"title": "Broken kelp", "tags": {"a": 1}, "dates": "yesterday", "description": ["kelp", "forest"]},
    )
    dated_by_creation = ModuleEntry(
        id="created-only", source="installed", metadata={"title": "Created only", "dates": {"created": "2021-06-01"}}
    )
    index = CatalogIndex([broken, dated_by_creation, module("kelp", "Kelp forest", updated="2020-01-01")])
    assert ids(index.search("forest", sort="title")) == ["broken", "kelp"]
    assert ids(index.search(sort="updated")) == ["created-only", "kelp", "broken"]


def test_lookup_by_id_and_duplicates(index):
    assert index.get("fish-detector").title == "Fish detector"
    assert index.get("nope") is None
    assert len(index) == len(CATALOGUE)
    with pytest.raises(ValueError, match="'fish-detector' appears twice"):
        CatalogIndex([*CATALOGUE, CATALOGUE[0]])


def test_result_serialises_to_json(index):
    data = index.search("fish", {"tasks": ["Computer Vision"]}, per_page=1).model_dump(mode="json")
    assert data["total"] == 2 and data["pages"] == 2 and data["items"][0]["id"] == "fish-detector"
    assert data["facets"]["tasks"][0] == {"value": "Computer Vision", "count": 2}


def test_agrees_with_a_plain_scan_of_a_larger_catalogue():
    """Every way of answering (dense or sparse results, few or many facet values) gives what a scan gives."""
    rng = random.Random(11)
    vocabulary = "fish plankton coral reef kelp sonar video image drone litter trout salmon whale count map".split()
    tags = [f"tag{k}" for k in range(60)]
    entries = [
        module(
            f"m{i:03d}",
            " ".join(rng.sample(vocabulary, 2)).capitalize(),
            summary=" ".join(rng.sample(vocabulary, 3)),
            description=" ".join(rng.choices(vocabulary, k=6)),
            tags=tuple(rng.sample(tags, rng.randint(0, 3))),
            tasks=tuple(rng.sample(["Classification", "Regression", "Computer Vision"], rng.randint(0, 2))),
            libraries=(rng.choice(["PyTorch", "pytorch", "Keras"]),),
            updated=rng.choice([None, "2023-01-01", "2024-02-02", "2025-03-03"]),
        )
        for i in range(400)
    ]
    index = CatalogIndex(entries)
    by_title = sorted(entries, key=lambda e: (e.title.lower(), e.title, e.id))
    by_updated = sorted(by_title, key=lambda e: (e.metadata.get("dates") or {}).get("updated", ""), reverse=True)

    def words_of(entry: ModuleEntry) -> set[str]:
        meta = entry.metadata
        return set(words(" ".join([entry.title, entry.summary, meta["description"], *meta["tags"], entry.id])))

    found_words = {e.id: words_of(e) for e in entries}

    def has(entry: ModuleEntry, facet: str, values: list[str]) -> bool:
        return bool({v.lower() for v in entry.facet_values(facet)} & {v.lower() for v in values})

    for _ in range(150):
        query = " ".join(rng.sample(vocabulary, rng.randint(0, 2)))
        if query and rng.random() < 0.5:
            query = query[: rng.randint(len(query) - 3, len(query))]
        filters = {}
        if rng.random() < 0.5:
            filters["tasks"] = rng.sample(["Classification", "Regression", "Computer Vision"], rng.randint(1, 2))
        if rng.random() < 0.3:
            filters["tags"] = rng.sample(tags, rng.randint(1, 8))
        tokens = words(query)

        def matches_text(entry: ModuleEntry, tokens=tokens) -> bool:
            found = found_words[entry.id]
            return all(t in found for t in tokens[:-1]) and (not tokens or any(w.startswith(tokens[-1]) for w in found))

        matching = [e for e in entries if matches_text(e)]
        expected = [e for e in matching if all(has(e, f, v) for f, v in filters.items())]
        result_title = index.search(query, filters, sort="title", page=2, per_page=7)
        result_updated = index.search(query, filters, sort="updated", per_page=100)
        assert result_title.total == len(expected)
        wanted = {e.id for e in expected}
        assert ids(result_title) == [e.id for e in by_title if e.id in wanted][7:14]
        assert ids(result_updated) == [e.id for e in by_updated if e.id in wanted][:100]
        for facet in ("tasks", "tags", "libraries"):
            base = [e for e in matching if all(has(e, f, v) for f, v in filters.items() if f != facet)]
            tally: dict[str, int] = {}
            for entry in base:
                for value in {v.lower() for v in entry.facet_values(facet)}:
                    tally[value] = tally.get(value, 0) + 1
            listed = {row["value"].lower(): row["count"] for row in result_title.facets[facet] if row["count"]}
            assert listed == tally, (query, filters, facet)
