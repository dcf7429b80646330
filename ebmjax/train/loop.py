"""The training loop: data order, jitted steps over a device mesh, metrics, checkpoints, resume.

Everything random derives from ``cfg.seed`` and the step number: the data order of epoch e is a
permutation seeded by (seed, e), and the noise of step s is ``fold_in(key, s)``. A run resumed from
a checkpoint therefore continues exactly as if it had never stopped.
"""

from __future__ import annotations

import json
import logging
import pathlib
import signal
import time
from typing import Any, Callable

import jax
import ml_collections
import numpy as np
from tqdm.auto import tqdm

from ebmjax import data, models, parallel
from ebmjax.errors import CheckpointError, DataError, EbmjaxError
from ebmjax.train import mdsm
from ebmjax.train import state as train_state
from ebmjax.train.checkpoint import Checkpoints, abstract

log = logging.getLogger(__name__)


class Interrupted(EbmjaxError):
    """SIGTERM or SIGINT arrived; a checkpoint was written and the run stopped cleanly."""


class Diverged(EbmjaxError):
    """Every update of a whole logging window was skipped for a non-finite loss or gradient."""


def batch_indices(seed: int, step: int, n: int, batch_size: int) -> np.ndarray:
    """Indices of the examples of training step ``step``: epochs are seeded permutations of
    range(n); the last partial batch of an epoch is dropped so every batch is full."""
    if batch_size > n:
        raise DataError(f"train.batch_size = {batch_size} is larger than the dataset ({n} examples); lower it.")
    per_epoch = n // batch_size
    epoch, pos = divmod(step, per_epoch)
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    return perm[pos * batch_size:(pos + 1) * batch_size]


def training_batch(source, cfg: ml_collections.ConfigDict, step: int) -> np.ndarray:
    """The host batch of ``step``: deterministic in (seed, step), finite-checked, flipped if asked."""
    idx = batch_indices(cfg.seed, step, len(source), cfg.train.batch_size)
    batch = np.asarray(source.get(idx), dtype=np.float32)
    if not np.all(np.isfinite(batch)):
        bad = idx[~np.isfinite(batch.reshape(len(idx), -1)).all(axis=1)]
        raise DataError(f"Dataset {source.name!r} holds non-finite values (examples {bad[:5].tolist()}); "
                        "clean the data before training.")
    if cfg.data.random_flip:
        batch = data.random_flip(batch, np.random.default_rng([cfg.seed, step, 1]))
    return batch


class MetricsWriter:
    """Appends JSON lines to ``<workdir>/metrics.jsonl`` (process 0 only)."""

    def __init__(self, workdir: pathlib.Path):
        self.path = workdir / "metrics.jsonl"
        self.enabled = jax.process_index() == 0

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")


class _StopSignal:
    """Turns SIGTERM / SIGINT into a flag the loop checks between steps, so it can checkpoint."""

    def __init__(self):
        self.received: int | None = None
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum, frame):
        self.received = signum

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def setup(cfg: ml_collections.ConfigDict, workdir: str | pathlib.Path, split: str = "train"):
    """Builds what both training and sampling need: source, model, mesh, and the train state
    (restored from the latest checkpoint in ``workdir`` when there is one)."""
    source = data.load_source(cfg.data, split)
    model = models.build_model(cfg.model)
    mesh = parallel.make_mesh()
    parallel.check_divisible(cfg.train.batch_size, mesh, "train.batch_size")
    # An "rbg" key compiles the many uniform initialisers several times faster than threefry on CPU.
    init_key = jax.random.key(cfg.seed, impl="rbg")
    params = models.init_params(model, init_key, tuple(source.shape))
    optimizer = train_state.make_optimizer(cfg.train)
    state = train_state.create(params, optimizer)
    ckpts = Checkpoints(workdir, cfg, keep=cfg.train.keep_checkpoints)
    restored = ckpts.restore(abstract(state))
    if restored is not None:
        state = restored
    return source, model, mesh, optimizer, parallel.put_replicated(state, mesh), ckpts


def train(cfg: ml_collections.ConfigDict, workdir: str | pathlib.Path,
          progress: bool = True) -> tuple[train_state.TrainState, Callable, Any]:
    """Trains to ``cfg.train.steps``, resuming from the workdir; returns (state, apply_fn, source)."""
    workdir = pathlib.Path(workdir).absolute()
    source, model, mesh, optimizer, state, ckpts = setup(cfg, workdir)
    start = int(state.step)
    if start:
        log.info("Resuming from the checkpoint at step %d in %s", start, ckpts.directory)
    step_fn = jax.jit(mdsm.make_train_step(cfg, model.apply, optimizer), donate_argnums=0)
    probe_fn = jax.jit(mdsm.make_energy_probe(cfg, model.apply))
    train_key = jax.random.fold_in(jax.random.PRNGKey(cfg.seed), 1)
    probe_key = jax.random.fold_in(jax.random.PRNGKey(cfg.seed), 2)
    writer = MetricsWriter(workdir)
    t = cfg.train
    window: list = []
    skipped_before = int(state.skipped)
    tick = time.perf_counter()
    bar = tqdm(total=t.steps, initial=start, desc="train", unit="step", disable=not progress,
               dynamic_ncols=True)
    try:
        with _StopSignal() as stop:
            for step in range(start, t.steps):
                batch = parallel.put_batch(training_batch(source, cfg, step), mesh)
                state, metrics = step_fn(state, batch, train_key)
                window.append(metrics)
                bar.update(1)
                done = step + 1
                if done % t.log_every == 0 or done == t.steps:
                    record = _summarise(window, state, skipped_before, time.perf_counter() - tick)
                    record.update({k: float(v) for k, v in probe_fn(state.params, batch, jax.random.fold_in(probe_key, done)).items()})
                    record["lr"] = float(train_state.lr_schedule(t)(done))
                    writer.write(record)
                    bar.set_postfix(loss=f"{record['loss']:.4g}", E_data=f"{record['energy_data']:.3g}",
                                    E_noise=f"{record['energy_noise']:.3g}")
                    if record["skipped_in_window"] == len(window):
                        last = ckpts.latest_step()
                        raise Diverged(
                            f"Training diverged: all {len(window)} updates before step {done} had a non-finite "
                            f"loss or gradient and were skipped. The last good checkpoint is "
                            f"{'step ' + str(last) if last is not None else 'none'} in {ckpts.directory}; "
                            "lower train.lr or check the data, then rerun the same command to resume.")
                    window, skipped_before, tick = [], int(state.skipped), time.perf_counter()
                if done % t.checkpoint_every == 0 or done == t.steps:
                    ckpts.save(state)
                if stop.received is not None:
                    ckpts.save(state, force=True)
                    raise Interrupted(f"Stopped by signal {stop.received} at step {done}; checkpoint saved in "
                                      f"{ckpts.directory}. Rerun the same command to resume.")
    finally:
        bar.close()
        ckpts.close()
    return state, model.apply, source


def _summarise(window: list, state, skipped_before: int, seconds: float) -> dict[str, Any]:
    host = jax.device_get(window)
    skipped_total = int(state.skipped)
    return {
        "step": int(state.step),
        "loss": float(np.nanmean([m["loss"] for m in host])) if host else float("nan"),
        "grad_norm": float(np.nanmean([m["grad_norm"] for m in host])) if host else float("nan"),
        "steps_per_s": len(window) / max(seconds, 1e-9),
        "skipped": skipped_total,
        "skipped_in_window": skipped_total - skipped_before,
    }


def load_trained(cfg: ml_collections.ConfigDict, workdir: str | pathlib.Path):
    """(state, apply_fn, source) from the latest checkpoint in ``workdir``; an error if there is none."""
    workdir = pathlib.Path(workdir).absolute()
    if not (workdir / "checkpoints").is_dir():
        raise CheckpointError(f"No checkpoints in {workdir}: train first (--mode train) or pass the --workdir of a trained run.")
    source, model, mesh, optimizer, state, ckpts = setup(cfg, workdir)
    ckpts.close()
    if int(state.step) == 0:
        raise CheckpointError(f"No checkpoint in {workdir / 'checkpoints'}: train first (--mode train).")
    return state, model.apply, source
