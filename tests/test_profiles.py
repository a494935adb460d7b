"""Hardware profiles file: parsing, validation messages and group gating."""

from __future__ import annotations

import pytest
from reeflab.errors import BadRequest, Forbidden
from reeflab.hub.config import REPO
from reeflab.profiles import load_profiles, memory_bytes


@pytest.mark.parametrize(
    "text, expected",
    [
        ("4G", 4 * 10**9),
        ("512Mi", 512 * 2**20),
        ("16Gi", 16 * 2**30),
        ("1.5G", 1_500_000_000),
        (1024, 1024),
        ("2GB", 2 * 10**9),
    ],
)
def test_memory_sizes(text, expected):
    assert memory_bytes(text) == expected


@pytest.mark.parametrize("text", ["lots", "4X", "-1G", ""])
def test_bad_memory_sizes_say_what_is_expected(text):
    with pytest.raises(ValueError, match="is not a size such as"):
        memory_bytes(text)


def test_shipped_profiles_file_is_valid():
    catalog = load_profiles(REPO / "hub_config" / "profiles.yaml")
    slugs = [p.slug for p in catalog.profiles]
    assert "cpu-small" in slugs and any(p.gpu_count for p in catalog.profiles)
    assert catalog.choose(None, []).slug == "cpu-small"


def write(tmp_path, text: str):
    path = tmp_path / "profiles.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "text, message",
    [
        ("image: i\nprofiles: []\n", "profiles: List should have at least 1 item"),
        ("image: i\nprofiles:\n  - {slug: a, display_name: A, cpu: 1, memory: 1G, colour: red}\n", "profiles.0.colour"),
        ("image: i\nprofiles:\n  - {slug: A_B, display_name: A, cpu: 1, memory: 1G}\n", "profiles.0.slug"),
        ("image: i\nprofiles:\n  - {slug: a, display_name: A, cpu: 0, memory: 1G}\n", "profiles.0.cpu"),
        (
            (
                "image: i\nprofiles:\n  - {slug: a, display_name: A, cpu: 1, memory: 1G}\n"
                "  - {slug: a, display_name: B, cpu: 1, memory: 1G}\n"
            ),
            "repeated: a",
        ),
        (
            "image: i\nprofiles:\n  - {slug: a, display_name: A, cpu: 1, memory: 1G, gpu: {count: -1}}\n",
            "profiles.0.gpu.count",
        ),
        ("image: [unclosed\n", "not valid YAML"),
    ],
)
def test_invalid_files_name_the_field_at_fault(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ValueError) as err:
        load_profiles(path)
    assert message in str(err.value) and str(path) in str(err.value)


GATED = """
image: base
profiles:
  - {slug: open, display_name: Open, cpu: 1, memory: 1G}
  - {slug: vo, display_name: VO, cpu: 2, memory: 2G, default: true, groups: [vo.a]}
"""


@pytest.mark.parametrize(
    "groups, allowed, default",
    [([], ["open"], "open"), (["vo.a"], ["open", "vo"], "vo"), (["vo.b"], ["open"], "open")],
)
def test_gating_by_group(tmp_path, groups, allowed, default):
    catalog = load_profiles(write(tmp_path, GATED))
    assert [p.slug for p in catalog.allowed(groups)] == allowed
    assert catalog.choose(None, groups).slug == default


def test_forbidden_and_unknown_profiles_are_refused_with_reasons(tmp_path):
    catalog = load_profiles(write(tmp_path, GATED))
    with pytest.raises(Forbidden, match="reserved for members of vo.a"):
        catalog.choose("vo", ["vo.b"])
    with pytest.raises(BadRequest, match="Unknown hardware profile 'huge'. Profiles you may use: open."):
        catalog.choose("huge", [])
    assert catalog.choose("vo", ["vo.a"]).cpu == 2
