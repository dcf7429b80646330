"""Shared fixtures: a small MDSM energy trained once on the bundled digits, for tests that need a
model that has learned something (restoration, evaluation); and one JAX compilation cache for the
whole run, so that the many command-line subprocesses (a killed run and its resumption, every mode
of a workdir) compile each program once rather than once per process."""

import os
import pathlib
import shutil
import tempfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DIGITS_CONFIG = str(ROOT / "configs" / "mdsm_digits.py")
# About 30 s on 2 CPU cores; enough for the energy to prefer digits over noise by a wide margin.
# The learning rate and the sampling schedule are pinned to the values these tests were sized with
# (the demo's own recipe trains and anneals longer).
TRAINED_DIGITS_OVERRIDES = (("model.width", "8"), ("train.steps", "400"), ("train.log_every", "100"),
                            ("train.checkpoint_every", "400"), ("sample.n", "0"), ("train.lr", "1e-3"),
                            ("train.warmup_steps", "0"),
                            ("mdsm.n_hot", "50"), ("mdsm.n_anneal", "200"), ("mdsm.n_cool", "50"),
                            ("mdsm.t_min", "1.0"), ("sample.chunk_steps", "50"))


def pytest_configure(config):
    """Before any test imports JAX: a fresh, empty compilation cache for this run, inherited by the
    xdist workers and by every subprocess. Each run starts cold (nothing carries over between runs),
    so a run times and tests what a fresh checkout gets. JAX_COMPILATION_CACHE_DIR set by the user wins."""
    if hasattr(config, "workerinput") or "JAX_COMPILATION_CACHE_DIR" in os.environ:
        return
    cache = tempfile.mkdtemp(prefix="ebmjax-tests-jax-cache-")
    config._ebmjax_jax_cache = cache
    os.environ["JAX_COMPILATION_CACHE_DIR"] = cache
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
    # The tests' networks are tiny and their runs short, so compiling costs them more than running:
    # XLA's CPU backend at optimisation level 0 compiles in about half the time (the shrunk CF-EBM run
    # of test_mnist: 66 s of compiling -> 32 s, 87 s -> 52 s in all) and runs slower, which the suite
    # hardly notices (docs/getting-started.md has the suite's time). Every test compares runs compiled
    # alike, so no tolerance depends on it. An XLA_FLAGS that already sets the level wins.
    if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0".strip()


def pytest_unconfigure(config):
    cache = getattr(config, "_ebmjax_jax_cache", None)
    if cache is not None:
        os.environ.pop("JAX_COMPILATION_CACHE_DIR", None)
        shutil.rmtree(cache, ignore_errors=True)


@pytest.fixture(scope="session")
def trained_digits(tmp_path_factory):
    """(cfg, workdir, state, method, source) of an MDSM energy trained on digits for a few hundred steps."""
    from ebmjax.config import load_config
    from ebmjax.train import loop

    cfg = load_config(DIGITS_CONFIG, TRAINED_DIGITS_OVERRIDES)
    workdir = tmp_path_factory.mktemp("trained_digits")
    state, method, source = loop.train(cfg, workdir, progress=False)
    return cfg, workdir, state, method, source
