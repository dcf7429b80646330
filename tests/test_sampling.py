"""Sampling to disk: streamed shards, the merged file, exact resumption, and stale shards.

The energy is a Gaussian, E(x) = |x - mu|^2 / 2, so chains compile in a second and the samples'
law is known.
"""

import json
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebmjax import sampling, samplers
from ebmjax.config import load_config
from ebmjax.errors import Interrupted
from ebmjax.methods import mdsm

ROOT = pathlib.Path(__file__).resolve().parents[1]
DIGITS = str(ROOT / "configs" / "mdsm_digits.py")
SHAPE = (4, 4, 1)
PARAMS = {"mu": jnp.full(SHAPE, 0.5, jnp.float32)}


def gaussian_apply(params, x):
    return 0.5 * jnp.sum((x - params["mu"]) ** 2, axis=(1, 2, 3))


class Source:
    shape = SHAPE


def sampler(cfg, params=PARAMS):
    """MDSM's annealed sampler (with the denoising jump) on the Gaussian energy."""
    return mdsm.annealed_sampler(jax.tree_util.Partial(gaussian_apply, params), SHAPE, cfg.sample, cfg.mdsm.sigma0)


def write(cfg, workdir, params=PARAMS):
    return sampling.sample_to_workdir(cfg, sampler(cfg, params), Source(), workdir, progress=False)


def draw(cfg, n, key, params=PARAMS):
    return sampling.draw(sampler(cfg, params), n, key, batch_size=cfg.sample.batch_size,
                         chunk_steps=cfg.sample.chunk_steps, progress=False)


def config(**sample):
    overrides = {"n": 10, "batch_size": 4, "n_hot": 4, "n_anneal": 12, "n_cool": 4, "chunk_steps": 4,
                 "step_size": 0.1, **sample}
    return load_config(DIGITS, [(f"sample.{k}", str(v)) for k, v in overrides.items()])


def images(workdir):
    return np.load(workdir / "samples" / "samples.npz")["images"]


def test_streams_shards_and_merges_what_annealed_samples_returns(tmp_path):
    cfg = config()
    summary = write(cfg, tmp_path)
    out = tmp_path / "samples"
    # 10 samples in batches of 4: three shards, each holding a whole batch of chains.
    shards = sorted((out / "shards").glob("shard_*.npz"))
    assert [p.name for p in shards] == ["shard_00000.npz", "shard_00001.npz", "shard_00002.npz"]
    for p in shards:
        with np.load(p) as f:
            assert f["images"].shape == (4, *SHAPE) and f["energy"].shape == (20,)
    assert not list((out / "shards").glob("chains_*"))  # no in-flight state once a batch is done
    x = images(tmp_path)
    assert x.shape == (10, *SHAPE) and x.dtype == np.float32
    # Same key, same samples, whether streamed to disk or returned in memory.
    ref, trace = draw(cfg, 10, sampling.sampling_key(cfg))
    np.testing.assert_array_equal(x, ref)
    with np.load(shards[0]) as f:
        np.testing.assert_allclose(f["energy"], trace)
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    assert summary["n"] == 10 and summary["n_batches"] == 3 and summary["batches_run"] == 3
    assert summary["min"] == pytest.approx(float(x.min())) and summary["max"] == pytest.approx(float(x.max()))
    assert summary["img_steps_per_s"] > 0 and summary["merged"] is True
    assert {"samples.npz", "grid.png", "energy_trace.png"} <= set(summary["files"])
    assert all((out / f).exists() for f in summary["files"])
    assert "peak_memory_bytes" in summary and summary["peak_memory_note"]


def test_samples_have_the_exact_law_of_ula_on_a_gaussian():
    """ULA on E = |x - mu|^2 / 2 is an AR(1) process per coordinate: x' - mu = a (x - mu) + eps sqrt(T) z
    with a = 1 - eps^2 / 2, so the variance follows v' = a^2 v + eps^2 T exactly from v0 = init_std^2;
    the denoising jump then scales x - mu by 1 - sigma0^2. The samples must have that variance."""
    cfg = config(n=256, batch_size=128, step_size=0.5)
    x, trace = draw(cfg, 256, jax.random.PRNGKey(0))
    eps, a, v = 0.5, 1 - 0.5**2 / 2, cfg.sample.init_std**2
    for t in np.asarray(mdsm.annealing_temperatures(cfg.sample), np.float64):
        v = a**2 * v + eps**2 * t
    v *= (1 - cfg.mdsm.sigma0**2) ** 2
    d = (np.asarray(x, np.float64) - 0.5).ravel()  # 4096 independent coordinates, mean mu = init_mean
    assert abs(d.mean()) < 4 * np.sqrt(v / d.size)
    assert abs(d.var() - v) < 4 * v * np.sqrt(2 / d.size)
    assert trace.shape == (20,)


def interrupt_after(monkeypatch, batch_index, chunks):
    """Makes run_chain_chunked raise KeyboardInterrupt after ``chunks`` chunks of the given batch."""
    original = samplers.run_chain_chunked
    calls = {"n": 0}

    def wrapped(*args, on_chunk=None, **kwargs):
        this = calls["n"]
        calls["n"] += 1
        seen = {"n": 0}

        def cb(steps_done, state, trace):
            on_chunk(steps_done, state, trace)
            seen["n"] += 1
            if this == batch_index and seen["n"] == chunks:
                raise KeyboardInterrupt

        return original(*args, on_chunk=cb, **kwargs)

    monkeypatch.setattr(samplers, "run_chain_chunked", wrapped)


def test_interrupted_run_resumes_exactly(tmp_path, monkeypatch):
    cfg = config()
    write(cfg, tmp_path / "ref")

    wd = tmp_path / "run"
    with monkeypatch.context() as m:
        interrupt_after(m, batch_index=1, chunks=2)
        with pytest.raises(Interrupted, match="after 1 of 3 batches.*Rerun the same command"):
            write(cfg, wd)
    shard_dir = wd / "samples" / "shards"
    assert [p.name for p in sorted(shard_dir.glob("*.npz"))] == ["chains_00001.npz", "shard_00000.npz"]
    with np.load(shard_dir / "chains_00001.npz") as f:
        assert int(f["step"]) == 8 and f["energy"].shape == (8,)
    first = (shard_dir / "shard_00000.npz").stat().st_mtime_ns

    summary = write(cfg, wd)
    assert summary["batches_reused"] == 1 and summary["batches_run"] == 2
    assert (shard_dir / "shard_00000.npz").stat().st_mtime_ns == first  # finished shard not redone
    assert not list(shard_dir.glob("chains_*"))
    # Bit for bit what an uninterrupted run draws, energy trace of the resumed batch included.
    np.testing.assert_array_equal(images(wd), images(tmp_path / "ref"))
    for b in range(3):
        with np.load(shard_dir / f"shard_{b:05d}.npz") as f, \
                np.load(tmp_path / "ref" / "samples" / "shards" / f"shard_{b:05d}.npz") as g:
            np.testing.assert_array_equal(f["energy"], g["energy"])


def test_more_samples_reuse_finished_shards(tmp_path):
    write(config(n=8), tmp_path)
    summary = write(config(n=10), tmp_path)
    assert summary["batches_reused"] == 2 and summary["batches_run"] == 1
    ref = tmp_path / "ref"
    write(config(n=10), ref)
    np.testing.assert_array_equal(images(tmp_path), images(ref))


def test_other_settings_or_parameters_discard_old_shards(tmp_path, caplog):
    write(config(), tmp_path)
    other = {"mu": PARAMS["mu"] + 1.0}
    with caplog.at_level("WARNING"):
        summary = write(config(), tmp_path, other)
    assert summary["batches_reused"] == 0 and "Discarding 3 sample shards" in caplog.text
    fresh = tmp_path / "fresh"
    write(config(), fresh, other)
    np.testing.assert_array_equal(images(tmp_path), images(fresh))  # nothing of the old parameters left
    summary = write(config(step_size=0.05), tmp_path, other)
    assert summary["batches_reused"] == 0
    summary = write(config(step_size=0.05, resume=False), tmp_path, other)
    assert summary["batches_reused"] == 0


def test_too_large_to_merge_keeps_only_shards(tmp_path):
    write(config(), tmp_path)
    summary = write(config(merge_max_gb=0.0), tmp_path)
    assert summary["merged"] is False and "samples.npz" not in summary["files"]
    assert not (tmp_path / "samples" / "samples.npz").exists()  # no stale merged file either
    assert len(summary["shards"]) == 3 and (tmp_path / "samples" / "grid.png").exists()


MULTI_DEVICE_SCRIPT = """
import sys
import jax, jax.numpy as jnp, numpy as np
sys.path.insert(0, sys.argv[2])
import test_sampling as t
from ebmjax import parallel, sampling, samplers

assert jax.device_count() == 4
cfg = t.config(batch_size=8, n=8)
seen = []
original = samplers.run_chain_chunked
def spy(kernel, energy, state, *args, **kwargs):
    seen.append(len(state.position.sharding.device_set))
    return original(kernel, energy, state, *args, **kwargs)
samplers.run_chain_chunked = spy
t.write(cfg, sys.argv[1])
assert seen == [4], seen  # one batch of 8 chains, two on each of the 4 devices
"""


def test_chains_are_split_over_devices(tmp_path):
    """With 4 (fake CPU) devices each holds a quarter of the chains, and the samples are those of one
    device: chains are independent, so splitting them changes nothing but where they run."""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", MULTI_DEVICE_SCRIPT, str(tmp_path / "multi"),
                           str(pathlib.Path(__file__).parent)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    write(config(batch_size=8, n=8), tmp_path / "one")
    np.testing.assert_allclose(images(tmp_path / "multi"), images(tmp_path / "one"), rtol=1e-5, atol=1e-5)
