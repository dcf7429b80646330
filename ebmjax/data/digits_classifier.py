"""The digits classifier: the judge of the bundled 8x8 digits (``ebmjax.data.judges``).

A small Flax CNN trained by ebmjax itself on the bundled scikit-learn digits (train split only, 8x8
grey in [0, 1]), deterministically from a seed, in a few seconds on a CPU. Nothing is downloaded:
the trained parameters are cached as an .npz under ``$EBMJAX_CACHE_DIR`` (default
``~/.cache/ebmjax``; :func:`ebmjax.data.judges.cache_dir`) and retrained when missing or unreadable. Same seed, same training.

Features are the 64 ReLU units before the output layer; probabilities are the softmax of the 10
logits. Numbers computed with them ("digits FID", "digits IS") only compare ebmjax runs on
digits with each other: they are not on the scale of Inception-v3 FID/IS and must never be
reported as such.

The network is trained with light Gaussian input noise (std 0.05) so that the slightly noisy
pixels of model samples do not throw it off.
"""

from __future__ import annotations

import logging
import os
import pathlib
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util

from ebmjax import io
from ebmjax.data.judges import Judge, cache_dir

log = logging.getLogger(__name__)

__all__ = ["DigitsNet", "DigitsClassifier", "train_digits_classifier", "load_digits_classifier"]

IMAGE_SHAPE = (8, 8, 1)
N_CLASSES = 10
FEATURE_DIM = 64
# Bumped whenever the network or its training changes, so an old cache file is never reused.
VERSION = 1
TRAIN_STEPS = 400
BATCH = 128
LEARNING_RATE = 2e-3
INPUT_NOISE = 0.05


class DigitsNet(nn.Module):
    """(B, 8, 8, 1) in [0, 1] -> (logits (B, 10), features (B, 64))."""

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        h = nn.relu(nn.Conv(32, (3, 3), name="conv1")(x))
        h = nn.relu(nn.Conv(64, (3, 3), name="conv2")(h))
        h = nn.avg_pool(h, (2, 2), strides=(2, 2))  # 4x4x64
        h = h.reshape((h.shape[0], -1))
        feats = nn.relu(nn.Dense(FEATURE_DIM, name="features")(h))
        return nn.Dense(N_CLASSES, name="logits")(feats), feats


class DigitsClassifier(Judge):
    """A trained :class:`DigitsNet`. Methods take (n, 8, 8, 1) images in [0, 1] and run in batches."""

    shape = IMAGE_SHAPE
    n_classes = N_CLASSES
    feature_dim = FEATURE_DIM

    def __init__(self, params: Any, *, seed: int, test_accuracy: float):
        self.params = params
        self.seed = int(seed)
        self.test_accuracy = float(test_accuracy)
        self._apply = jax.jit(DigitsNet().apply)

    def describe(self) -> str:
        return f"ebmjax digits classifier (seed {self.seed}, test accuracy {self.test_accuracy:.4f})"

    def feature_space(self) -> str:
        return f"the {FEATURE_DIM} penultimate ReLU units of the ebmjax digits classifier, 10 classes"

    def logits_and_features(self, images: np.ndarray, batch_size: int = 2048) -> tuple[np.ndarray, np.ndarray]:
        """(logits (n, 10), features (n, 64)) as float64 numpy arrays."""
        x = self.check_images(images)
        outs = [self._apply(self.params, jnp.asarray(x[i:i + batch_size])) for i in range(0, len(x), batch_size)]
        logits = np.concatenate([np.asarray(o[0]) for o in outs]) if outs else np.zeros((0, N_CLASSES))
        feats = np.concatenate([np.asarray(o[1]) for o in outs]) if outs else np.zeros((0, FEATURE_DIM))
        return logits.astype(np.float64), feats.astype(np.float64)


def train_digits_classifier(seed: int = 0) -> DigitsClassifier:
    """Trains :class:`DigitsNet` on the digits train split (1442 images); a few seconds on a CPU.

    Deterministic in ``seed``: batches are seeded permutations, input noise comes from the key.
    """
    from ebmjax.data import digits_source

    train = digits_source("train")
    test = digits_source("test")
    x_train = train.get(np.arange(len(train)))
    y_train = train.labels(np.arange(len(train)))
    model = DigitsNet()
    key = jax.random.key(seed)
    params = model.init(jax.random.fold_in(key, 0), jnp.zeros((1, *IMAGE_SHAPE)))
    opt = optax.adamw(optax.cosine_decay_schedule(LEARNING_RATE, TRAIN_STEPS), weight_decay=1e-4)
    opt_state = opt.init(params)

    @jax.jit
    def step(params, opt_state, x, y, k):
        def loss_fn(p):
            noisy = x + INPUT_NOISE * jax.random.normal(k, x.shape)
            logits, _ = model.apply(p, noisy)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    rng = np.random.default_rng(seed)
    order = np.zeros((0,), np.int64)
    for i in range(TRAIN_STEPS):
        if len(order) < BATCH:
            order = np.concatenate([order, rng.permutation(len(x_train))])
        idx, order = order[:BATCH], order[BATCH:]
        params, opt_state, _ = step(params, opt_state, jnp.asarray(x_train[idx]), jnp.asarray(y_train[idx]),
                                    jax.random.fold_in(key, i + 1))
    clf = DigitsClassifier(params, seed=seed, test_accuracy=0.0)
    acc = float(np.mean(clf.predict(test.get(np.arange(len(test)))) == test.labels(np.arange(len(test)))))
    clf.test_accuracy = acc
    return clf


def _cache_file(directory: pathlib.Path, seed: int) -> pathlib.Path:
    return directory / f"digits_classifier_v{VERSION}_seed{seed}.npz"


def load_digits_classifier(seed: int = 0, *, directory: str | os.PathLike | None = None,
                           retrain: bool = False) -> DigitsClassifier:
    """The cached classifier for ``seed`` (see :func:`cache_dir`), trained and cached when missing."""
    path = _cache_file(cache_dir(directory), seed)
    if path.is_file() and not retrain:
        try:
            with np.load(path) as f:
                flat = {tuple(k.split("/")): jnp.asarray(f[k]) for k in f.files if k != "test_accuracy"}
                acc = float(f["test_accuracy"])
            return DigitsClassifier(traverse_util.unflatten_dict(flat), seed=seed, test_accuracy=acc)
        except (OSError, KeyError, ValueError) as e:
            log.warning("Ignoring the unreadable digits classifier cache %s (%s); retraining.", path, e)
    log.info("Training the digits classifier (seed %d); it is cached in %s", seed, path)
    clf = train_digits_classifier(seed)
    flat = {"/".join(k): np.asarray(v) for k, v in traverse_util.flatten_dict(clf.params).items()}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        io.savez_atomic(path, test_accuracy=np.float64(clf.test_accuracy), **flat)  # readers never see half a file
    except OSError as e:
        log.warning("Could not cache the digits classifier in %s (%s); it will be retrained next time.", path, e)
    return clf
