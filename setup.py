"""ReefLab: the `reeflab` Python package (jupyter-server extension, services, client, CLI).

The prebuilt JupyterLab extension, the server-extension config, the kernel specs and the
hardware profiles are installed as data files under the environment's prefix.
"""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
LABEXT = Path("server_extension/reeflab/labextension")


def tree(source: Path, target: str, skip: frozenset[str] = frozenset()) -> list[tuple[str, list[str]]]:
    """data_files entries that copy the directory `source` to `target`, keeping its layout (folders named in
    `skip` left out)."""
    entries = []
    kept = [p for p in (HERE / source).rglob("*") if p.is_file() and not skip.intersection(p.relative_to(HERE).parts)]
    for folder in sorted({p.parent for p in kept}):
        rel = folder.relative_to(HERE / source)
        files = [str(p.relative_to(HERE)) for p in sorted(folder.iterdir()) if p.is_file()]
        entries.append((str(Path(target) / rel), files))
    return entries


data_files = [
    ("etc/jupyter/jupyter_server_config.d", ["server_extension/jupyter-config/jupyter_server_config.d/reeflab.json"]),
    ("etc/reeflab", ["hub_config/profiles.yaml"]),
    *tree(Path("kernels/reeflab-python"), "share/jupyter/kernels/reeflab-python"),
    *tree(LABEXT, "share/jupyter/labextensions/reeflab"),
    # the example notebooks and pipelines every user gets in their files (reeflab.examples), without run outputs
    *tree(Path("notebooks"), "share/reeflab/examples", skip=frozenset({"work", "report", ".ipynb_checkpoints"})),
]

setup(
    name="reeflab",
    version="0.1.0",
    description="AI platform for scientists on JupyterHub: marketplace, deployments, serverless, storage, training",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="BSD-3-Clause",
    python_requires=">=3.11",
    package_dir={"": "server_extension"},
    packages=find_packages("server_extension"),
    data_files=data_files,
    install_requires=[
        "jupyter_server>=2.14",
        "jupyterlab>=4.2,<5",
        "pydantic>=2",
        "pyyaml",
        "traitlets",
        "tornado",
    ],
    package_data={
        "reeflab": [
            "modules/*/ai4-metadata.yml",
            "modules/*/*.yaml",
            "modules/*/weights/*",
            "modules/*/samples/*",
            "modules/template/package/**/*",
            "hub/templates/*.html",
            # the built-in Flower App (`flwr run` builds it from this folder)
            "training/flower_app/pyproject.toml",
            "training/flower_app/reeflab_fedtask/*.py",
        ]
    },
    entry_points={
        "console_scripts": ["reeflab = reeflab.cli:main"],
        # built-in modules: any package exposing this entry point is a ReefLab module
        "deepaas.v2.model": [
            "yolo-detector = reeflab.modules.yolo_detector:model",
            "image-classifier = reeflab.modules.image_classifier:model",
            "fish-detector = reeflab.modules.fish_detector:model",
            "fish-classifier = reeflab.modules.fish_classifier:model",
        ],
    },
    zip_safe=False,
)
