"""The fish classifier's shipped weights name the species of fish crops it has never seen, through DEEPaaS's
predict as a deployment, a serverless worker or a pipeline node calls it."""

from __future__ import annotations

import numpy as np
import pytest
from reeflab.modules.fish_classifier import model
from reeflab.modules.fish_classifier.train_weights import NO_FISH, SPECIES, empty_crop, fish_crop


class Upload:
    """What DEEPaaS hands to predict: a file with its original name."""

    def __init__(self, path):
        self.filename = str(path)
        self.original_filename = path.name


@pytest.fixture(scope="module")
def crops(tmp_path_factory):
    """Two fresh crops per class, from a seed the training never used."""
    folder = tmp_path_factory.mktemp("crops")
    made = []
    for k, name in enumerate([*SPECIES, NO_FISH]):
        for i in range(2):
            rng = np.random.default_rng([99, 2, k, i])
            image = empty_crop(rng) if name == NO_FISH else fish_crop(rng, k)
            path = folder / f"{name}_{i}.jpg"
            image.save(path, quality=85)
            made.append((name, path))
    return made


def test_it_ships_trained_weights_and_names_unseen_fish(crops):
    assert model.trained and model.model_path().endswith("fish-cls.pt")
    answers = [(name, model.predict(files=Upload(path), top_k=3)) for name, path in crops]
    for _name, answer in answers:
        labels = [c["label"] for c in answer["classes"]]
        assert len(labels) == 3 and set(labels) <= {*SPECIES, NO_FISH}
        assert answer["classes"][0]["probability"] >= answer["classes"][1]["probability"]
    right = [name for name, answer in answers if answer["classes"][0]["label"] == name]
    assert len(right) >= 0.8 * len(answers), [(n, a["classes"][0]) for n, a in answers]
