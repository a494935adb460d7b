"""The default federated task shipped with ReefLab: a tiny torch classifier on generated data.

It exists so that a federated server can be started and tried without any dataset: each site
generates its own partition (a different seed gives a shifted, non-identical distribution, as real
sites have), trains locally, and only weights travel. Replace `make_data` with your own loader to
federate a real dataset; the Flower client below does not change.
"""

from __future__ import annotations

import numpy as np
import torch
from flwr.client import NumPyClient
from torch import nn

FEATURES = 8
CLASSES = 3


def make_model() -> nn.Module:
    torch.manual_seed(0)  # every site and the server start from the same weights
    return nn.Sequential(nn.Linear(FEATURES, 16), nn.ReLU(), nn.Linear(16, CLASSES))


def initial_weights() -> list[np.ndarray]:
    return get_weights(make_model())


def get_weights(model: nn.Module) -> list[np.ndarray]:
    return [value.detach().cpu().numpy().copy() for value in model.state_dict().values()]


def set_weights(model: nn.Module, weights: list[np.ndarray]) -> None:
    keys = list(model.state_dict())
    model.load_state_dict({key: torch.tensor(value) for key, value in zip(keys, weights, strict=True)})


def make_data(site: int, samples: int = 256) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One site's train/test split: three Gaussian classes, the site's shift added to every sample."""
    rng = np.random.default_rng(1000 + site)
    centres = np.random.default_rng(7).normal(0, 2.0, size=(CLASSES, FEATURES))  # shared by all sites
    labels = rng.integers(0, CLASSES, size=samples)
    shift = rng.normal(0, 0.5, size=FEATURES)
    x = centres[labels] + shift + rng.normal(0, 1.0, size=(samples, FEATURES))
    x, y = torch.tensor(x, dtype=torch.float32), torch.tensor(labels, dtype=torch.long)
    cut = samples * 3 // 4
    return x[:cut], y[:cut], x[cut:], y[cut:]


def train(model: nn.Module, x, y, epochs: int, lr: float, proximal_mu: float = 0.0) -> float:
    """Local SGD; with proximal_mu > 0 the FedProx term keeps the weights near the global ones."""
    global_weights = [p.detach().clone() for p in model.parameters()]
    optimiser = torch.optim.SGD(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    loss = torch.tensor(0.0)
    for _ in range(epochs):
        for start in range(0, len(x), 32):
            optimiser.zero_grad()
            loss = loss_fn(model(x[start : start + 32]), y[start : start + 32])
            if proximal_mu > 0:
                loss = loss + proximal_mu / 2 * sum(
                    (p - g).pow(2).sum() for p, g in zip(model.parameters(), global_weights, strict=True)
                )
            loss.backward()
            optimiser.step()
    return loss.item()


def evaluate(model: nn.Module, x, y) -> tuple[float, float]:
    model.eval()
    with torch.no_grad():
        logits = model(x)
        loss = nn.CrossEntropyLoss()(logits, y).item()
        accuracy = (logits.argmax(1) == y).float().mean().item()
    return loss, accuracy


class TaskClient(NumPyClient):
    """A Flower client for the default task (the same class the client notebook uses)."""

    def __init__(self, site: int = 0, epochs: int = 2, lr: float = 0.05, samples: int = 256):
        torch.set_num_threads(1)
        self.model = make_model()
        self.x, self.y, self.x_test, self.y_test = make_data(site, samples)
        self.epochs, self.lr = epochs, lr

    def get_parameters(self, config):
        return get_weights(self.model)

    def fit(self, parameters, config):
        set_weights(self.model, parameters)
        mu = float(config.get("proximal_mu", 0.0))
        loss = train(self.model, self.x, self.y, int(config.get("epochs", self.epochs)), self.lr, mu)
        return get_weights(self.model), len(self.x), {"train_loss": loss}

    def evaluate(self, parameters, config):
        set_weights(self.model, parameters)
        loss, accuracy = evaluate(self.model, self.x_test, self.y_test)
        return loss, len(self.x_test), {"accuracy": accuracy}
