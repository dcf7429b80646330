"""The README's research-API example runs as written, and does what it says."""

import pathlib
import re

import numpy as np

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


import pytest


@pytest.mark.slow
def test_readme_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    example = next(b for b in blocks if "def train_step" in b)
    ns: dict = {}
    exec(compile(example, "README.md", "exec"), ns)
    assert np.isfinite(float(ns["loss"]))
    assert ns["x"].shape == (16, 8, 8, 1) and np.all(np.isfinite(ns["x"]))
    mask = np.asarray(ns["mask"]).astype(bool)
    x0, xi = np.asarray(ns["x0"]), np.asarray(ns["x_inpainted"])
    np.testing.assert_array_equal(xi[:, ~mask[0, ..., 0]], x0[:, ~mask[0, ..., 0]])
    assert np.any(xi[:, mask[0, ..., 0]] != x0[:, mask[0, ..., 0]])


@pytest.mark.slow
def test_readme_maximum_likelihood_example_runs():
    """The persistent-chain example, run after the MDSM one (it reuses its model and optimiser)."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    first = next(b for b in blocks if "def train_step" in b)
    second = next(b for b in blocks if "def ml_step" in b)
    ns: dict = {}
    exec(compile(first, "README.md", "exec"), ns)
    exec(compile(second, "README.md", "exec"), ns)
    assert np.isfinite(float(ns["ml"]))
    buffer = np.asarray(ns["buffer"])
    # 32 rows were drawn, run and written back: some rows changed, all stay in the clamped range.
    assert buffer.shape == (1000, 8, 8, 1) and buffer.min() >= 0.0 and buffer.max() <= 1.0
    start = np.asarray(__import__("jax").random.uniform(ns["key"], (1000, 8, 8, 1)))
    changed = np.any(buffer != start, axis=(1, 2, 3)).sum()
    assert 1 <= changed <= 32
