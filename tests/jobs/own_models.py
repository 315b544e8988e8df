"""Small models of one's own that train in epochs (docs/iterative.md), for the tests' import paths."""

from __future__ import annotations

import json

import numpy as np


class GradientLinear:
    """Linear regression by full-batch gradient descent: one step of ``rate`` an epoch."""

    def __init__(self, rate: float = 0.1, seed: int = 0) -> None:
        self.rate = rate
        self.seed = seed
        self.weights: np.ndarray | None = None
        self.bias = 0.0

    def fit_epoch(self, inputs: np.ndarray, targets: np.ndarray) -> None:
        if self.weights is None:
            self.weights = np.random.default_rng(self.seed).normal(0, 0.01, inputs.shape[1])
            self.bias = float(targets.mean())
        error = inputs @ self.weights + self.bias - targets
        self.weights = self.weights - self.rate * inputs.T @ error / len(targets)
        self.bias -= self.rate * float(error.mean())

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        assert self.weights is not None
        return inputs @ self.weights + self.bias

    def save_state(self) -> bytes:
        weights = None if self.weights is None else self.weights.tolist()
        state = {"rate": self.rate, "seed": self.seed, "weights": weights, "bias": self.bias}
        return json.dumps(state).encode()

    @classmethod
    def load_state(cls, state: bytes) -> GradientLinear:
        saved = json.loads(state)
        model = cls(saved["rate"], saved["seed"])
        model.weights = None if saved["weights"] is None else np.array(saved["weights"])
        model.bias = saved["bias"]
        return model


class Unfinished:
    """Lacks load_state; making one would fail the test (the class is checked, not an instance)."""

    def __init__(self) -> None:
        raise AssertionError("an instance was made")

    def fit_epoch(self, inputs: np.ndarray, targets: np.ndarray) -> None: ...

    def predict(self, inputs: np.ndarray) -> np.ndarray: ...

    def save_state(self) -> bytes: ...
