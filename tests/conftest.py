"""Shared fixtures: a small MDSM energy trained once on the bundled digits, for tests that need a
model that has learned something (restoration, evaluation)."""

import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DIGITS_CONFIG = str(ROOT / "configs" / "mdsm_digits.py")
# About 30 s on 2 CPU cores; enough for the energy to prefer digits over noise by a wide margin.
# The learning rate and the sampling schedule are pinned to the values these tests were sized with
# (the demo's own recipe trains and anneals longer).
TRAINED_DIGITS_OVERRIDES = (("model.width", "8"), ("train.steps", "400"), ("train.log_every", "100"),
                            ("train.checkpoint_every", "400"), ("sample.n", "0"), ("train.lr", "1e-3"),
                            ("train.warmup_steps", "0"),
                            ("sample.n_hot", "50"), ("sample.n_anneal", "200"), ("sample.n_cool", "50"),
                            ("sample.t_min", "1.0"), ("sample.chunk_steps", "50"))


@pytest.fixture(scope="session")
def trained_digits(tmp_path_factory):
    """(cfg, workdir, state, method, source) of an MDSM energy trained on digits for a few hundred steps."""
    from ebmjax.config import load_config
    from ebmjax.train import loop

    cfg = load_config(DIGITS_CONFIG, TRAINED_DIGITS_OVERRIDES)
    workdir = tmp_path_factory.mktemp("trained_digits")
    state, method, source = loop.train(cfg, workdir, progress=False)
    return cfg, workdir, state, method, source
