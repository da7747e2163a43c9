"""Train a small CNN on scikit-learn's bundled 8x8 digits, in NumPy with convcore's layers.

conv(1->32, 3x3) - ReLU - max pool 2 - conv(32->64, 3x3) - ReLU - max pool 2 - linear(256->10),
softmax cross-entropy, Adam with a cosine learning-rate decay. scikit-learn is used only to load the bundled data set
(no download); everything else is NumPy and convcore.

Usage::

    python examples/digits_cnn.py [--epochs 30] [--seed 0]
"""

from __future__ import annotations

import argparse
import math
import os
import time

# Batches of 32 small images make small GEMMs and kernel calls, fastest on one thread each
# (no thread wake-ups per call). Set before NumPy and Numba load; the environment can override.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "CONVCORE_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

import convcore as cc  # noqa: E402


def load_data(seed: int, test_fraction: float = 0.25):
    """Images ``(n, 1, 8, 8)`` scaled to [0, 1] and labels, split at random into train and test."""
    from sklearn.datasets import load_digits

    images, labels = load_digits(return_X_y=True)
    x = (images / 16.0).reshape(-1, 1, 8, 8).astype(np.float32)
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = int(round(test_fraction * len(x)))
    test, train = order[:n_test], order[n_test:]
    return (x[train], labels[train]), (x[test], labels[test])


class Linear:
    """``y = x @ w + b`` with torch's default initialisation, ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``."""

    def __init__(self, n_in: int, n_out: int, rng: np.random.Generator):
        bound = 1 / math.sqrt(n_in)
        self.params = {
            "w": rng.uniform(-bound, bound, (n_in, n_out)).astype(np.float32),
            "b": rng.uniform(-bound, bound, n_out).astype(np.float32),
        }
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}

    def __call__(self, x):
        self.x = x
        return x @ self.params["w"] + self.params["b"]

    def backward(self, dy):
        self.grads["w"] = self.x.T @ dy
        self.grads["b"] = dy.sum(axis=0)
        return dy @ self.params["w"].T


class ReLU:
    params: dict = {}

    def __call__(self, x):
        self.mask = x > 0
        return x * self.mask

    def backward(self, dy):
        return dy * self.mask


class Flatten:
    params: dict = {}

    def __call__(self, x):
        self.shape = x.shape
        return x.reshape(len(x), -1)

    def backward(self, dy):
        return dy.reshape(self.shape)


def softmax_cross_entropy(logits, labels):
    """Mean cross-entropy of ``logits (n, k)`` against integer ``labels`` and its gradient."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    n = len(labels)
    loss = -log_p[np.arange(n), labels].mean()
    grad = np.exp(log_p)
    grad[np.arange(n), labels] -= 1
    return float(loss), grad / n


class Adam:
    """Adam over the ``params`` / ``grads`` dicts of some layers, updating in place."""

    def __init__(self, layers, lr=2e-3, betas=(0.9, 0.999), eps=1e-8):
        self.slots = [(layer, key) for layer in layers for key in layer.params]
        self.lr, self.betas, self.eps, self.t = lr, betas, eps, 0
        self.m = [np.zeros_like(layer.params[k]) for layer, k in self.slots]
        self.v = [np.zeros_like(layer.params[k]) for layer, k in self.slots]

    def step(self):
        self.t += 1
        b1, b2 = self.betas
        scale = self.lr * math.sqrt(1 - b2**self.t) / (1 - b1**self.t)
        for (layer, k), m, v in zip(self.slots, self.m, self.v):
            g = layer.grads[k]
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * g * g
            layer.params[k] -= scale * m / (np.sqrt(v) + self.eps)


def build_model(rng):
    return [
        cc.Conv2D(1, 32, 3, padding=1, rng=rng),  # (n, 32, 8, 8)
        ReLU(),
        cc.MaxPool2D(2),  # (n, 32, 4, 4)
        cc.Conv2D(32, 64, 3, padding=1, rng=rng),  # (n, 64, 4, 4)
        ReLU(),
        cc.MaxPool2D(2),  # (n, 64, 2, 2)
        Flatten(),
        Linear(64 * 2 * 2, 10, rng),
    ]


def forward(model, x):
    for layer in model:
        x = layer(x)
    return x


def accuracy(model, x, labels, batch=500):
    hits = sum(
        int((forward(model, x[i : i + batch]).argmax(axis=1) == labels[i : i + batch]).sum())
        for i in range(0, len(x), batch)
    )
    return hits / len(x)


def train(epochs: int = 30, seed: int = 0, batch: int = 32, lr: float = 3e-3, verbose: bool = True) -> dict:
    """Train and evaluate; returns ``{'test_accuracy', 'train_accuracy', 'loss', 'seconds'}``."""
    rng = np.random.default_rng(seed)
    (x_train, y_train), (x_test, y_test) = load_data(seed)
    model = build_model(rng)
    optimiser = Adam(model, lr=lr)
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        optimiser.lr = lr * 0.5 * (1 + math.cos(math.pi * (epoch - 1) / epochs))  # cosine decay
        order = rng.permutation(len(x_train))
        total = 0.0
        for i in range(0, len(order), batch):
            idx = order[i : i + batch]
            loss, grad = softmax_cross_entropy(forward(model, x_train[idx]), y_train[idx])
            for layer in reversed(model):
                grad = layer.backward(grad)
            optimiser.step()
            total += loss * len(idx)
        result = {
            "loss": total / len(order),
            "train_accuracy": accuracy(model, x_train, y_train),
            "test_accuracy": accuracy(model, x_test, y_test),
            "seconds": time.perf_counter() - start,
        }
        if verbose:
            print(
                f"epoch {epoch:2d}  loss {result['loss']:.4f}  train acc {result['train_accuracy']:.4f}  "
                f"test acc {result['test_accuracy']:.4f}  ({result['seconds']:.1f} s)",
                flush=True,
            )
    return result


def main(argv=None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    result = train(args.epochs, args.seed)
    print(
        f"test accuracy {result['test_accuracy']:.4f} after {args.epochs} epochs in {result['seconds']:.1f} s"
    )
    return result["test_accuracy"]


if __name__ == "__main__":
    main()
