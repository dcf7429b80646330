"""Sampling to disk: streamed shards, the merged file, exact resumption, stale shards (kept until
their replacement is written), the memory check, and sample.seed.

The energy is a Gaussian, E(x) = |x - mu|^2 / 2, so chains compile in a second and the samples'
law is known.
"""

import hashlib
import json
import logging
import os
import pathlib
import re
import signal
import subprocess
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebmjax import chains, memory, parallel, samplers
from ebmjax.apps import sample
from ebmjax.config import load_config
from ebmjax.errors import ConfigError, Interrupted
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
    return mdsm.annealed_sampler(jax.tree_util.Partial(gaussian_apply, params), SHAPE, cfg.mdsm, cfg.mdsm.sigma0)


def write(cfg, workdir, params=PARAMS):
    return sample.sample_to_workdir(cfg, sampler(cfg, params), Source(), workdir, progress=False)


def draw(cfg, n, key, params=PARAMS):
    return chains.draw(sampler(cfg, params), n, key, batch_size=cfg.sample.batch_size,
                         chunk_steps=cfg.sample.chunk_steps, progress=False)


ANNEALING = ("n_hot", "n_anneal", "n_cool", "step_size", "t_max", "t_min", "init_mean", "init_std", "denoise",
             "schedule")  # the mdsm group's sampler settings; the others are the sample group's


def config(**sample):
    overrides = {"n": 10, "batch_size": 4, "n_hot": 4, "n_anneal": 12, "n_cool": 4, "chunk_steps": 4,
                 "step_size": 0.1, **sample}
    return load_config(DIGITS, [(f"{'mdsm' if k in ANNEALING else 'sample'}.{k}", str(v))
                                for k, v in overrides.items()])


def images(workdir, folder="samples"):
    return np.load(workdir / folder / "samples.npz")["images"]


def shard_dirs(workdir, folder="samples"):
    """The shard directories (shards/<key>/, one per sampling setup) of a workdir's samples."""
    root = workdir / folder / "shards"
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def shard_dir(workdir, folder="samples"):
    """The one shard directory of a workdir's samples."""
    dirs = shard_dirs(workdir, folder)
    assert len(dirs) == 1, dirs
    return dirs[0]


def test_streams_shards_and_merges_what_annealed_samples_returns(tmp_path):
    cfg = config()
    summary = write(cfg, tmp_path)
    out = tmp_path / "samples"
    # 10 samples in batches of 4: three shards, each holding a whole batch of chains.
    shards = sorted(shard_dir(tmp_path).glob("shard_*.npz"))
    assert [p.name for p in shards] == ["shard_00000.npz", "shard_00001.npz", "shard_00002.npz"]
    for p in shards:
        with np.load(p) as f:
            assert f["images"].shape == (4, *SHAPE) and f["energy"].shape == (20,)
    assert not list(shard_dir(tmp_path).glob("chains_*"))  # no in-flight state once a batch is done
    assert json.loads((shard_dir(tmp_path) / "manifest.json").read_text())["batch"] == 4
    x = images(tmp_path)
    assert x.shape == (10, *SHAPE) and x.dtype == np.float32
    # Same key, same samples, whether streamed to disk or returned in memory.
    ref, trace = draw(cfg, 10, sample.sampling_key(cfg))
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
    eps, a, v = 0.5, 1 - 0.5**2 / 2, cfg.mdsm.init_std**2
    for t in np.asarray(mdsm.annealing_temperatures(cfg.mdsm), np.float64):
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
    shards = shard_dir(wd)
    assert [p.name for p in sorted(shards.glob("*.npz"))] == ["chains_00001.npz", "shard_00000.npz"]
    with np.load(shards / "chains_00001.npz") as f:
        assert int(f["step"]) == 8 and f["energy"].shape == (8,)
    first = (shards / "shard_00000.npz").stat().st_mtime_ns

    summary = write(cfg, wd)
    assert summary["batches_reused"] == 1 and summary["batches_run"] == 2
    assert (shards / "shard_00000.npz").stat().st_mtime_ns == first  # finished shard not redone
    assert not list(shards.glob("chains_*"))
    # Bit for bit what an uninterrupted run draws, energy trace of the resumed batch included.
    np.testing.assert_array_equal(images(wd), images(tmp_path / "ref"))
    assert shard_dir(tmp_path / "ref").name == shards.name  # same settings, same shard directory
    for b in range(3):
        with np.load(shards / f"shard_{b:05d}.npz") as f, \
                np.load(shard_dir(tmp_path / "ref") / f"shard_{b:05d}.npz") as g:
            np.testing.assert_array_equal(f["energy"], g["energy"])


def test_sigterm_stops_sampling_where_its_work_is_saved(tmp_path, monkeypatch):
    """SIGTERM (a cluster's time limit, a pre-emption) during sampling becomes a flag (io.StopSignal):
    the run stops after the chunk in flight, once its chains are saved, and the rerun resumes exactly."""
    cfg = config()
    write(cfg, tmp_path / "ref")
    original = samplers.run_chain_chunked
    calls = {"n": 0}

    def wrapped(*args, on_chunk=None, **kwargs):
        this = calls["n"]
        calls["n"] += 1

        def cb(steps_done, state, trace):
            if this == 1 and steps_done == 4:
                signal.raise_signal(signal.SIGTERM)
            on_chunk(steps_done, state, trace)

        return original(*args, on_chunk=cb, **kwargs)

    before = signal.getsignal(signal.SIGTERM)
    with monkeypatch.context() as m:
        m.setattr(samplers, "run_chain_chunked", wrapped)
        with pytest.raises(Interrupted, match="after 1 of 3 batches.*Rerun the same command to resume"):
            write(cfg, tmp_path / "run")
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is put back
    with np.load(shard_dir(tmp_path / "run") / "chains_00001.npz") as f:
        assert int(f["step"]) == 4  # the chunk in flight finished and was saved
    summary = write(cfg, tmp_path / "run")
    assert summary["batches_reused"] == 1
    np.testing.assert_array_equal(images(tmp_path / "run"), images(tmp_path / "ref"))


def test_more_samples_reuse_finished_shards(tmp_path):
    first = write(config(n=8), tmp_path)
    summary = write(config(n=10), tmp_path)
    assert summary["batches_reused"] == 2 and summary["batches_run"] == 1
    # The drawing time counts the reused batches at the seconds they took when drawn.
    assert first["drawing_seconds"] == pytest.approx(first["seconds"], rel=0.2)
    assert summary["drawing_seconds"] > first["drawing_seconds"] > 0
    ref = tmp_path / "ref"
    write(config(n=10), ref)
    np.testing.assert_array_equal(images(tmp_path), images(ref))


def test_other_settings_or_parameters_discard_old_shards(tmp_path, caplog):
    write(config(), tmp_path)
    old_dir = shard_dir(tmp_path)
    other = {"mu": PARAMS["mu"] + 1.0}
    with caplog.at_level("WARNING"):
        summary = write(config(), tmp_path, other)
    assert summary["batches_reused"] == 0 and "Discarding 3 sample shards" in caplog.text
    assert not old_dir.exists() and shard_dir(tmp_path) != old_dir  # only the new setup's shards are left
    fresh = tmp_path / "fresh"
    write(config(), fresh, other)
    np.testing.assert_array_equal(images(tmp_path), images(fresh))  # nothing of the old parameters left
    summary = write(config(step_size=0.05), tmp_path, other)
    assert summary["batches_reused"] == 0
    summary = write(config(step_size=0.05, resume=False), tmp_path, other)
    assert summary["batches_reused"] == 0 and summary["batches_run"] == 3


def test_finished_samples_survive_until_their_replacement_is_written(tmp_path, monkeypatch, caplog):
    """A run with new parameters that dies half way (here: interrupted) deletes nothing of the old
    run's results; rerun, it resumes in its own shard directory and only then drops the old one."""
    write(config(), tmp_path)
    old_dir = shard_dir(tmp_path)
    before = {p: p.read_bytes() for p in sorted((tmp_path / "samples").rglob("*")) if p.is_file()}
    other = {"mu": PARAMS["mu"] + 1.0}
    with monkeypatch.context() as m:
        interrupt_after(m, batch_index=1, chunks=2)
        with pytest.raises(Interrupted):
            write(config(), tmp_path, other)
    for p, data in before.items():  # old shards, samples.npz, grid, summary: all there, unchanged
        assert p.read_bytes() == data, p
    new_dir = next(d for d in shard_dirs(tmp_path) if d != old_dir)
    assert [p.name for p in sorted(new_dir.glob("*.npz"))] == ["chains_00001.npz", "shard_00000.npz"]

    with caplog.at_level("INFO"):
        summary = write(config(), tmp_path, other)
    assert summary["batches_reused"] == 1 and summary["batches_run"] == 2  # resumed in its own directory
    assert shard_dirs(tmp_path) == [new_dir] and "Discarding 3 sample shards" in caplog.text
    write(config(), tmp_path / "ref", other)
    np.testing.assert_array_equal(images(tmp_path), images(tmp_path / "ref"))


def test_shards_of_the_flat_layout_are_kept_until_new_ones_are_written(tmp_path):
    """Older versions wrote shards straight into samples/shards/: they count as another setup's."""
    flat = tmp_path / "samples" / "shards"
    flat.mkdir(parents=True)
    np.savez(flat / "shard_00000.npz", images=np.zeros((4, *SHAPE), np.float32), energy=np.zeros(20, np.float32))
    (flat / "manifest.json").write_text("{}")
    write(config(), tmp_path)
    assert not (flat / "shard_00000.npz").exists() and not (flat / "manifest.json").exists()
    assert len(list(shard_dir(tmp_path).glob("shard_*.npz"))) == 3


def test_too_large_to_merge_keeps_only_shards(tmp_path):
    write(config(), tmp_path)
    summary = write(config(merge_max_gb=0.0), tmp_path)
    assert summary["merged"] is False and "samples.npz" not in summary["files"]
    assert not (tmp_path / "samples" / "samples.npz").exists()  # no stale merged file either
    assert len(summary["shards"]) == 3 and (tmp_path / "samples" / "grid.png").exists()


def snapshot(directory):
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def test_a_batch_too_large_for_memory_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    """The issue's command: sample.n=3000000 with sample.batch_size=100000000. The check compiles one
    chunk for the batch (cheap) instead of running it, and names a batch size that fits."""
    write(config(), tmp_path)
    before = snapshot(tmp_path)
    cfg = config(n=3_000_000, batch_size=100_000_000)
    mesh = parallel.make_mesh()
    plan = chains.make_plan(cfg.sample.batch_size, cfg.sample.n, mesh.devices.size, sampler(cfg).steps)
    need = chains.batch_memory_bytes(sampler(cfg), plan.batch, cfg.sample.chunk_steps, mesh)
    small = chains.batch_memory_bytes(sampler(cfg), 1000, cfg.sample.chunk_steps, mesh)
    assert need > 1000 * small  # 3,000,000 chains need far more than 1000 (roughly linear)
    free = need // 10  # the same verdict whatever machine runs the test
    monkeypatch.setattr(memory, "available_memory_bytes", lambda mesh: (free, "host memory"))
    with pytest.raises(ConfigError) as e:
        write(cfg, tmp_path)
    msg = str(e.value)
    assert f"needs about {need / 1e9:.1f} GB of host memory" in msg and f"{free / 1e9:.1f} GB are free" in msg
    assert "Nothing was written" in msg
    best = int(re.search(r"--config\.sample\.batch_size to (\d+) or less", msg).group(1))
    # It fits, and is close to the largest that does: 10% more does not.
    assert chains.batch_memory_bytes(sampler(cfg), best, 4, mesh) <= chains.MEMORY_SHARE * free
    assert chains.batch_memory_bytes(sampler(cfg), int(best * 1.1), 4, mesh) > chains.MEMORY_SHARE * free
    assert 0.05 * plan.batch < best < 0.1 * plan.batch
    assert snapshot(tmp_path) == before  # the earlier samples and shards are untouched
    # With that batch size the check passes.
    chains.check_memory(sampler(cfg), chains.make_plan(best, cfg.sample.n, mesh.devices.size, 20), 4, mesh)


def test_the_memory_check_is_skipped_where_memory_is_unknown(tmp_path, monkeypatch):
    monkeypatch.setattr(memory, "available_memory_bytes", lambda mesh: (None, "TPU memory per device"))
    assert write(config(), tmp_path)["n"] == 10
    assert memory.host_available_bytes() > 0  # this machine does say


def test_sample_seed_draws_fresh_samples_into_their_own_folder(tmp_path, caplog):
    """Sampling is reproducible: the same settings give the same images, and the log says so. With
    sample.seed = N the images are new, and go to samples_seed<N>/ without touching samples/."""
    with caplog.at_level(logging.INFO):
        write(config(), tmp_path)
    assert "These samples are reproducible" in caplog.text and "--config.sample.seed=N" in caplog.text
    before = snapshot(tmp_path / "samples")
    write(config(seed=1), tmp_path)
    write(config(seed=2), tmp_path)
    assert snapshot(tmp_path / "samples") == before
    x, x1, x2 = images(tmp_path), images(tmp_path, "samples_seed1"), images(tmp_path, "samples_seed2")
    assert not np.allclose(x, x1) and not np.allclose(x1, x2) and not np.allclose(x, x2)
    write(config(seed=1), tmp_path / "again")  # reproducible too
    np.testing.assert_array_equal(images(tmp_path / "again", "samples_seed1"), x1)
    summary = json.loads((tmp_path / "samples_seed1" / "summary.json").read_text())
    assert summary["sample_seed"] == 1 and summary["seed"] == 0


MULTI_DEVICE_SCRIPT = """
import sys
import jax, jax.numpy as jnp, numpy as np
sys.path.insert(0, sys.argv[2])
import test_sampling as t
from ebmjax import samplers

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


@pytest.mark.slow  # about 13 s on 2 CPU cores; the whole suite (CI) runs it
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


def test_diverged_chains_are_counted_and_named_and_the_judge_scores_the_finite_ones(tmp_path, caplog):
    """Chains whose energy turns non-finite (here: a barrier at 1.5 in the first pixel, which about 16%
    of chains started at 0.5 + N(0, 1) start beyond) leave non-finite samples: the summary counts them, the log
    says what to do, and the judge scores the finite samples only."""

    def barrier_at(at):
        def energy(params, x):  # a barrier: infinite, with a NaN gradient, past `at` in the first pixel
            return gaussian_apply(params, x) - jnp.log(jnp.maximum(at - x[:, 0, 0, 0], 0.0))
        return energy

    partly_nan = barrier_at(1.5)

    cfg = config(n=40, batch_size=20, t_max=1.0, init_std=1.0)
    draw_nan = mdsm.annealed_sampler(jax.tree_util.Partial(partly_nan, PARAMS), SHAPE, cfg.mdsm, cfg.mdsm.sigma0)
    with caplog.at_level(logging.WARNING):
        summary = sample.sample_to_workdir(cfg, draw_nan, Source(), tmp_path, progress=False)
    x = images(tmp_path)
    bad = int(np.sum(~np.isfinite(x.reshape(len(x), -1)).all(axis=1)))
    assert 0 < bad < len(x)
    assert summary["non_finite"] == bad
    assert np.isfinite(summary["min"]) and np.isfinite(summary["max"])
    assert f"{bad} of 40 samples hold non-finite values" in caplog.text
    every_chain = mdsm.annealed_sampler(jax.tree_util.Partial(barrier_at(-10.0), PARAMS), SHAPE, cfg.mdsm,
                                        cfg.mdsm.sigma0)
    summary = sample.sample_to_workdir(cfg, every_chain, Source(), tmp_path / "all", progress=False)
    assert summary["non_finite"] == 40 and summary["min"] is None and summary["max"] is None
    assert json.loads((tmp_path / "all" / "samples" / "summary.json").read_text())["min"] is None

    digits_cfg = load_config(DIGITS)
    judged = np.random.default_rng(0).uniform(0, 1, (12, 8, 8, 1)).astype(np.float32)
    judged[[1, 5]] = np.nan
    quality = sample.judge_quality(digits_cfg, judged)
    assert quality["n"] == 10
    assert sample.judge_quality(digits_cfg, np.full((3, 8, 8, 1), np.nan, np.float32)) is None


def test_a_grid_shows_nan_pixels_in_the_separators_grey():
    from ebmjax import visualize

    x = np.zeros((2, 4, 4, 1), np.float32)
    x[1] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        grid = visualize.image_grid(x, ncol=2, pad=0, scale=1)
    assert (grid[:, :4] == 0).all()
    assert (grid[:, 4:] == int(visualize.SEPARATOR * 255 + 0.5)).all()
