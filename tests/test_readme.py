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
