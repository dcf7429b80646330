"""The training loop: data order, jitted steps over a device mesh, metrics, checkpoints, resume.

Everything random derives from ``cfg.seed`` and the step number: the data order of epoch e is a
permutation seeded by (seed, e), flips of step s are seeded by (seed, s), and the noise of step s is
``fold_in(key, s)``. A run resumed from a checkpoint therefore continues exactly as if it had never
stopped, and the global batch of a step is the same whatever the number of devices or processes.

Reliability: SIGTERM / SIGINT save a checkpoint and stop (every process stops at the same step);
updates with a non-finite loss or gradient (or a metric past the method's bound, e.g. runaway
energies) are skipped and counted, and a whole logging window of
them stops the run naming the last good checkpoint; non-finite data stops the run with a DataError.
"""

from __future__ import annotations

import functools
import json
import logging
import pathlib
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from tqdm.auto import tqdm

from ebmjax import chains, data, io, keys, methods, parallel
from ebmjax.errors import CheckpointError, ConfigError, DataError, Diverged, Interrupted
from ebmjax.methods.base import Method, phase_of, with_phase
from ebmjax.train import state as train_state
from ebmjax.train import step as train_step
from ebmjax.train.checkpoint import DIVERGED_DIR, IDENTITY_FIELDS, Checkpoints, devices_note

log = logging.getLogger(__name__)

# Calls whose stop / data flags may still be unread: the host runs this far ahead of the device.
CONTROL_LAG = 4


# ----------------------------------------------------------------------------------------------
# Data order.


def _stream_seed(seed: int, stream: int, *words: int) -> list[int]:
    # Stream 0 (the data) keeps the seeds it always had; a second domain's are other seed sequences.
    return [seed, *words] if stream == 0 else [seed, *words, 2, stream]


@functools.lru_cache(maxsize=4)
def _epoch_permutation(seed: int, epoch: int, n: int, stream: int = 0) -> np.ndarray:
    perm = np.random.default_rng(_stream_seed(seed, stream, epoch)).permutation(n)
    perm.flags.writeable = False  # shared by every step of the epoch through the cache
    return perm


def batch_indices(seed: int, step: int, n: int, batch_size: int, stream: int = 0) -> np.ndarray:
    """Indices of the examples of training step ``step``: epochs are seeded permutations of
    range(n); the last partial batch of an epoch is dropped so every batch is full. ``stream`` 1
    orders a second dataset (``Method.source_data``) independently of the data's order."""
    if batch_size > n:
        raise DataError(f"train.batch_size = {batch_size} is larger than the dataset ({n} examples); lower it.")
    per_epoch = n // batch_size
    epoch, pos = divmod(step, per_epoch)
    return _epoch_permutation(seed, epoch, n, stream)[pos * batch_size:(pos + 1) * batch_size].copy()


def training_batch(source, cfg: ml_collections.ConfigDict, step: int,
                   rows: slice = slice(None), stream: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``rows`` of the global batch of ``step`` and their dataset indices: ((r, *shape) float32, (r,)).

    Deterministic in (seed, step): the rows a process loads are the same rows of the same global
    batch whatever the number of processes, and flips are drawn for the whole global batch (image
    i is mirrored iff ``default_rng([seed, step, 1]).random(B)[i] < 0.5``, when ``data.random_flip``).
    ``stream`` 1: the batch of a second dataset (a method's ``source_data``), ordered and flipped
    with seeds of its own.
    """
    all_idx = batch_indices(cfg.seed, step, len(source), cfg.train.batch_size, stream)
    idx = all_idx[rows]
    batch = np.asarray(source.get(idx), dtype=np.float32)
    if cfg.data.random_flip:
        flip = np.random.default_rng(_stream_seed(cfg.seed, stream, step, 1)).random(len(all_idx))[rows] < 0.5
        batch = np.where(flip[:, None, None, None], batch[:, :, ::-1, :], batch)
    return batch, idx


def nonfinite_examples(batch: np.ndarray, idx: np.ndarray) -> list[int]:
    """Dataset indices of the examples in ``batch`` that hold a NaN or an infinity."""
    bad = ~np.isfinite(batch.reshape(len(batch), -1)).all(axis=1)
    return [int(i) for i in idx[bad]]


# ----------------------------------------------------------------------------------------------
# Compiled pieces.


def make_train_call(cfg: ml_collections.ConfigDict, method: Method, phase: Any = None) -> Callable:
    """Returns ``call(state, batches, votes) -> (state, metrics, control)``: ``k`` steps in one call,
    all of the method's ``phase`` (see ``Method.phase``).

    ``batches`` (k, B, ...) are the batches of steps state.step .. state.step + k - 1 (a tuple of two
    such arrays for a method with ``source_data``: the data's and the second domain's); each step is
    :func:`ebmjax.train.step.make_train_step`'s, so k steps per call follow the same trajectory as k
    calls. ``metrics`` get a leading axis k and ``skipped_update`` (1 where the update was skipped).
    ``control`` holds two global flags every process sees at once: ``data_finite`` (no NaN or
    infinity in the batches) and ``stop`` (any process's entry of ``votes`` was set by a signal).
    """
    multi = train_step.make_multi_step(method, int(cfg.train.steps_per_call), float(cfg.train.ema_decay), phase)

    def call(state: train_state.TrainState, batches: jax.Array, votes: jax.Array):
        key = keys.stream(cfg.seed, keys.TRAIN_STEP)
        state, metrics = multi(state, batches, key)
        finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(b)) for b in jax.tree.leaves(batches)]))
        control = {"data_finite": finite, "stop": jnp.any(votes)}
        return state, metrics, control

    return call


def make_probe_call(cfg: ml_collections.ConfigDict, method: Method, phase: Any = None) -> Callable:
    """Returns ``probe(state, batches) -> {metric: scalar}``: the method's diagnostics (for ``phase``)
    on the last batch of a call, with randomness from ``fold_in(key, state.step)``."""
    probe = with_phase(method.probe, method, phase)

    def call(state: train_state.TrainState, batches: jax.Array):
        key = jax.random.fold_in(keys.stream(cfg.seed, keys.PROBE), state.step)
        return probe(state.params, state.carry, jax.tree.map(lambda b: b[-1], batches), key)

    return call


# ----------------------------------------------------------------------------------------------
# Host-side helpers.


class MetricsWriter:
    """Appends JSON lines to ``<workdir>/metrics.jsonl`` (process 0 only)."""

    def __init__(self, workdir: pathlib.Path):
        self.path = workdir / "metrics.jsonl"
        self.enabled = parallel.is_main_process()

    def truncate_after(self, step: int) -> None:
        """Drops lines logged after ``step`` by a run that was killed before its next checkpoint, so a
        resumed run's log reads as if it had never stopped."""
        if not (self.enabled and self.path.exists()):
            return
        lines = self.path.read_text().splitlines()
        keep = [line for line in lines if line.strip() and json.loads(line).get("step", 0) <= step]
        if len(keep) != len(lines):
            io.write_text_atomic(self.path, "".join(line + "\n" for line in keep))

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")


class Setup(NamedTuple):
    """What :func:`setup` builds; the state is on ``mesh`` (parameters replicated, carry sharded)."""

    source: Any
    method: Method
    mesh: Mesh
    state: train_state.TrainState
    ckpts: Checkpoints
    source_domain: Any = None  # the training split of the method's second domain (Method.source_data)


def state_shardings(state: Any, method: Method, mesh: Mesh) -> Any:
    """Shardings of a train state (or its shapes): everything replicated but the method's carried
    state, which follows ``method.carry_specs`` (e.g. a replay buffer split over ``data``)."""
    rep = parallel.replicated(mesh)

    def shard(spec, leaf):
        def one(x):
            if len(spec) and spec[0] == parallel.DATA_AXIS and x.shape[0] % mesh.devices.size:
                raise ConfigError(
                    f"The method's carried state (e.g. its replay buffer) has {x.shape[0]} rows, which cannot be "
                    f"split over the {mesh.devices.size} devices; make its size (e.g. ml.buffer_size) a multiple "
                    f"of {mesh.devices.size}.")
            return NamedSharding(mesh, spec)
        return jax.tree.map(one, leaf)

    carry = jax.tree.map(shard, method.carry_specs, state.carry, is_leaf=lambda x: isinstance(x, P))
    return state._replace(**{f: jax.tree.map(lambda _: rep, getattr(state, f))
                             for f in state._fields if f != "carry"}, carry=carry)


def _check_batch_fits(cfg: ml_collections.ConfigDict, source: Any) -> None:
    if cfg.train.batch_size > len(source):
        raise DataError(f"train.batch_size = {cfg.train.batch_size} is larger than the dataset "
                        f"{source.name!r} ({len(source)} examples); lower it.")


def setup(cfg: ml_collections.ConfigDict, workdir: str | pathlib.Path, split: str = "train", *,
          mesh: Mesh | None = None, write_config: bool = True, step: int | None = None,
          run_cfg: ml_collections.ConfigDict | None = None) -> Setup:
    """Builds what both training and sampling need: source, method, mesh, and the train state
    (restored from the latest checkpoint in ``workdir`` when there is one, or from ``step``) on the mesh.
    ``run_cfg`` (default ``cfg``): the config the method is built from and a fresh state drawn with,
    when it differs from the one the workdir records (after recoveries from divergence).

    Every check that can fail (data, model vs image shape, batch vs devices, the workdir's
    experiment, checkpoint shapes) runs before anything is written.
    """
    source = data.load_source(cfg.data, split)
    mesh = parallel.make_mesh() if mesh is None else mesh
    parallel.check_divisible(cfg.train.batch_size, mesh, "train.batch_size")
    _check_batch_fits(cfg, source)
    shape = tuple(source.shape)
    run_cfg = cfg if run_cfg is None else run_cfg
    method = methods.build(run_cfg, shape, tuple(source.value_range))
    if method.labels:
        data.check_labels(source, method.labels, "model.classes")
    source_domain = None
    if method.source_data is not None:
        source_domain = data.load_source(method.source_data, "train")
        data.check_domains_match(cfg, source_domain, source, "train")
        _check_batch_fits(cfg, source_domain)

    def init():
        params = method.init_params(keys.init_key(run_cfg.seed))
        carry = method.init_carry(keys.stream(run_cfg.seed, keys.CARRY))
        return train_state.create(params, method.optimizer, carry, ema=cfg.train.ema_decay > 0)

    try:
        shapes = jax.eval_shape(init)  # traces the networks on the data's shape without computing
    except ConfigError as e:
        raise ConfigError(
            f"Dataset {cfg.data.name!r} gives examples of shape {shape} (after data.pad={cfg.data.pad}, "
            f"data.image_size={cfg.data.image_size}), which method {method.name!r} cannot take: {e}") from None
    shardings = state_shardings(shapes, method, mesh)
    # out_shardings: the state is created on the mesh, in every process, at once.
    init_fn = jax.jit(init, out_shardings=shardings)
    abstract = jax.tree.map(lambda s_, sh: jax.ShapeDtypeStruct(s_.shape, s_.dtype, sharding=sh), shapes, shardings)
    identity = (*IDENTITY_FIELDS, *method.identity)
    # With train.keep_best the loop chooses what to keep (BestKeeper); otherwise Orbax keeps the newest.
    keep = None if cfg.train.keep_best else cfg.train.keep_checkpoints
    ckpts = Checkpoints(workdir, cfg, keep=keep, identity=identity)
    try:
        state = ckpts.restore(abstract, step)
    except BaseException:
        ckpts.close()
        raise
    if state is None:
        state = init_fn()
    else:  # said by whatever goes on with the state (training, sampling), not by a run refused later
        ckpts.devices_note = devices_note(ckpts.recorded_devices(), mesh, int(state.step))
    if write_config:
        ckpts.write_config(mesh)
    return Setup(source, method, mesh, state, ckpts, source_domain)


def _say_devices(ckpts: Checkpoints) -> None:
    """Logs (once, process 0) that the checkpoint was written on other devices, if it was."""
    if ckpts.devices_note and parallel.is_main_process():
        log.info("%s", ckpts.devices_note)
    ckpts.devices_note = None


def _next_multiple(step: int, every: int) -> int:
    return (step // every + 1) * every


def _summarise(host: list[dict], state, skipped_before: int, seconds: float) -> dict[str, Any]:
    """The log line of a window: the mean of every metric the step reported (NaN-skipping), the
    number of steps it averages, the speed and the skip counts."""
    n = sum(len(np.atleast_1d(m["loss"])) for m in host)
    record: dict[str, Any] = {"step": int(state.step)}
    names = [k for k in (host[0] if host else {}) if k != "skipped_update"]
    with np.errstate(all="ignore"):
        for name in names:
            v = np.concatenate([np.atleast_1d(np.asarray(m[name], np.float64)) for m in host])
            record[name] = float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")
    skipped_total = int(state.skipped)
    record.update({
        "window_steps": n,  # steps averaged: fewer than log_every right after a mid-window resume
        "steps_per_s": n / max(seconds, 1e-9),
        "skipped": skipped_total,
        "skipped_in_window": skipped_total - skipped_before,
    })
    return record


def check_steps(cfg: ml_collections.ConfigDict, state: train_state.TrainState, ckpts: Checkpoints) -> None:
    """ConfigError when the workdir's checkpoint is already past ``train.steps``: the user asked for
    a shorter run than the one recorded, and training it again would silently do nothing."""
    done = int(state.step)
    if done > cfg.train.steps:
        raise ConfigError(
            f"The workdir's latest checkpoint ({ckpts.directory}) is at step {done}, past "
            f"train.steps={cfg.train.steps}: there is nothing to train. Use --mode sample (or another mode) "
            f"to use it, raise --config.train.steps above {done} to train further, or pass a new --workdir "
            "for a shorter run.")


# ----------------------------------------------------------------------------------------------
# The loop.


def train(cfg: ml_collections.ConfigDict, workdir: str | pathlib.Path, progress: bool = True, *,
          mesh: Mesh | None = None) -> tuple[train_state.TrainState, Method, Any]:
    """Trains to ``cfg.train.steps``, resuming from the workdir; returns (state, method, source).

    ``mesh`` (default: every device of every process) is where the batch is split. With
    ``train.recover`` > 0 a diverged run recovers by itself (see :func:`recovered_config`).
    """
    workdir = pathlib.Path(workdir).absolute()
    recoveries = read_recoveries(workdir)
    run_cfg = recovered_config(cfg, len(recoveries))
    source, method, mesh, state, ckpts, source_domain = setup(cfg, workdir, mesh=mesh, write_config=False,
                                                              run_cfg=run_cfg)
    try:
        check_steps(cfg, state, ckpts)
        ckpts.write_config(mesh)
        try:
            while True:
                trainer = _Trainer(run_cfg, workdir, source, method, mesh, ckpts, source_domain)
                try:
                    state = trainer.run(state, progress)
                    return state, method, source
                except Diverged as e:
                    if len(recoveries) >= int(cfg.train.recover):
                        if recoveries:
                            raise Diverged(f"{e} The run had recovered {len(recoveries)} time(s) already, the most "
                                           f"train.recover = {cfg.train.recover} allows ({workdir / RECOVERIES_FILE}).",
                                           e.step, e.good) from None
                        raise
                    recoveries.append(_recovery_record(cfg, e, len(recoveries) + 1))
                    if parallel.is_main_process():
                        io.write_json_atomic(workdir / RECOVERIES_FILE, recoveries)
                    r = recoveries[-1]
                    log.warning("%s Recovery %d of %d: resuming from %s with every learning rate x%g of the config's "
                                "and a fresh data order and chain randomness (seed %d); recorded in %s.",
                                e, r["recovery"], cfg.train.recover,
                                f"the checkpoint at step {r['resumed_from_step']}" if r["resumed_from_step"]
                                else "a fresh start", r["lr_scale"], r["seed"], workdir / RECOVERIES_FILE)
                    ckpts.close()
                    run_cfg = recovered_config(cfg, len(recoveries))
                    source, method, mesh, state, ckpts, source_domain = setup(cfg, workdir, mesh=mesh,
                                                                              write_config=False, run_cfg=run_cfg)
        finally:  # also after an interruption or divergence: the curves show what happened
            write_curves(workdir, f"{cfg.method.name} on {cfg.data.name}")
    finally:
        ckpts.close()


RECOVERIES_FILE = "recoveries.json"


def read_recoveries(workdir: pathlib.Path) -> list[dict]:
    """The recoveries from divergence recorded in ``<workdir>/recoveries.json`` (oldest first)."""
    path = pathlib.Path(workdir) / RECOVERIES_FILE
    if not path.exists():
        return []
    try:
        return list(json.loads(path.read_text()))
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path} cannot be read ({e}); it records the run's recoveries from divergence, "
                              "without which the run cannot go on exactly. Restore it, or use a new --workdir.") from None


def recovered_config(cfg: ml_collections.ConfigDict, recoveries: int) -> ml_collections.ConfigDict:
    """The config a run trains with after ``recoveries`` recoveries from divergence: every learning
    rate times ``train.recover_lr ** recoveries`` (``train.lr_scale``) and the seed
    :func:`ebmjax.keys.recovery_seed`, so the data order, data noise and chains are fresh. ``cfg``
    itself for 0. The workdir's ``config.json`` keeps ``cfg``; ``recoveries.json`` holds the rest."""
    if recoveries == 0:
        return cfg
    out = ml_collections.ConfigDict(cfg.to_dict())
    out.train.lr_scale = float(cfg.train.lr_scale) * float(cfg.train.recover_lr) ** recoveries
    out.seed = keys.recovery_seed(cfg.seed, recoveries)
    return out


def _recovery_record(cfg: ml_collections.ConfigDict, e: Diverged, recovery: int) -> dict:
    nxt = recovered_config(cfg, recovery)
    return {"recovery": recovery, "diverged_at_step": int(e.step), "resumed_from_step": int(e.good or 0),
            "lr_scale": float(nxt.train.lr_scale), "seed": int(nxt.seed),
            "time": time.strftime("%Y-%m-%d %H:%M:%S"), "reason": str(e)}


def write_curves(workdir: pathlib.Path, title: str) -> None:
    """``curves.png`` from ``metrics.jsonl`` (process 0; nothing when no line was logged yet)."""
    path = workdir / "metrics.jsonl"
    if not parallel.is_main_process() or not path.exists():
        return
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if records:
        from ebmjax import visualize

        visualize.save_curves(records, workdir / "curves.png", title=title)


class BestKeeper:
    """``train.keep_best``: scores every checkpoint when it is saved (``eval.scan_samples`` samples,
    ``eval.select_by``; see ``ebmjax.evaluation.scan``) and keeps the newest ``train.keep_checkpoints``
    plus the ``train.keep_best`` best, deleting the rest. Scores live in
    ``<workdir>/checkpoint_scores.json``, so a resumed run knows the old ones."""

    def __init__(self, cfg: ml_collections.ConfigDict, workdir: pathlib.Path, source: Any, method: Method,
                 ckpts: Checkpoints, mesh: Mesh):
        from ebmjax.evaluation import scan

        self.cfg, self.method, self.ckpts, self.mesh = cfg, method, ckpts, mesh
        test = source
        try:
            test = data.load_source(cfg.data, "test")
        except (ConfigError, DataError):
            pass
        self.scorer = scan.Scorer(cfg, test.get(np.arange(min(len(test), cfg.eval.n_data))))
        self.path = workdir / "checkpoint_scores.json"
        scores = json.loads(self.path.read_text()) if self.path.exists() else {}
        # Only checkpoints still on disk count (a resumed run may have rolled back past some).
        self.scores = {int(k): v for k, v in scores.items() if int(k) in set(ckpts.steps())}

    def after_save(self, state: train_state.TrainState) -> None:
        from ebmjax.evaluation import scan

        step = int(state.step)
        sampler = self.method.sampler(train_state.inference_params(state, self.cfg.sample.weights), state.carry)
        x, _ = chains.draw(sampler, int(self.cfg.eval.scan_samples),
                             keys.stream(self.cfg.seed, keys.CHECKPOINT_SCORES),
                             batch_size=self.cfg.sample.batch_size, chunk_steps=self.cfg.sample.chunk_steps,
                             mesh=self.mesh, progress=False, unroll_steps=self.cfg.sample.unroll_steps)
        self.scores[step] = {"step": step, **self.scorer(x)}
        steps = sorted(self.scores)
        newest = set(self.ckpts.steps()[-self.cfg.train.keep_checkpoints:])
        ranked = sorted((self.scores[s] for s in steps), key=lambda r: (
            (1 if scan.SELECT_BY[self.cfg.eval.select_by] else -1) * r[self.cfg.eval.select_by], -r["step"]))
        best = {r["step"] for r in ranked[: self.cfg.train.keep_best]}
        gone = self.ckpts.retain(newest | best)
        for s in gone:
            self.scores.pop(s, None)
        if parallel.is_main_process():
            io.write_json_atomic(self.path, {str(k): v for k, v in sorted(self.scores.items())})
        log.info("Checkpoint %d scored %s; keeping steps %s (newest %d and best %d by %s).", step,
                 ", ".join(f"{k} {v:.4g}" for k, v in self.scores[step].items() if k != "step"),
                 sorted(newest | best), self.cfg.train.keep_checkpoints, self.cfg.train.keep_best,
                 self.cfg.eval.select_by)


class _Trainer:
    """One training run; the state of the host side of the loop lives here."""

    def __init__(self, cfg, workdir, source, method, mesh, ckpts, source_domain=None):
        t = cfg.train
        self.cfg, self.t, self.source, self.mesh, self.ckpts, self.method = cfg, t, source, mesh, ckpts, method
        # Stream i of every step's batch: the data, then the method's second domain if it has one.
        self.streams = [source] + ([source_domain] if source_domain is not None else [])
        self.k = int(t.steps_per_call)
        if self.k < 1:
            raise ConfigError(f"train.steps_per_call must be >= 1, got {self.k}.")
        self.rows = parallel.local_rows(mesh, t.batch_size)
        # Stacked batches (k, B, ...): steps whole on every device, the batch axis split over `data`.
        self.batches_sharding = NamedSharding(mesh, P(None, parallel.DATA_AXIS))
        self.calls: dict[Any, Callable] = {}  # one compiled call (and probe) per phase of the method
        self.probes: dict[Any, Callable] = {}
        # Both possible vote arrays, built once: a signal changes which one the next call gets.
        self.votes = {flag: parallel.process_votes(flag, mesh) for flag in (False, True)}
        self.writer = MetricsWriter(workdir)
        self.keeper = BestKeeper(cfg, workdir, source, method, ckpts, mesh) if t.keep_best else None
        self.streak_start: int | None = None  # first step of the current run of skipped updates

    def _batches(self, step: int, n: int) -> tuple[Any, list[tuple[str, int]]]:
        """This process's rows of the batches of steps step .. step+n-1, assembled into one global
        array per stream (a tuple of them when the method draws a second domain, (x, y) when it learns
        from labels: Method.labels); with the dataset
        name and index of any non-finite examples among them."""
        stacked, bad = [], []
        for i, src in enumerate(self.streams):
            host, labels = [], []
            for s in range(step, step + n):
                batch, idx = training_batch(src, self.cfg, s, self.rows, stream=i)
                host.append(batch)
                if i == 0 and self.method.labels:
                    labels.append(np.asarray(src.labels(idx), np.int32))
                bad += [(src.name, j) for j in nonfinite_examples(batch, idx)]
            for local in (np.stack(host), *([np.stack(labels)] if labels else [])):
                global_shape = (n, self.t.batch_size, *local.shape[2:])
                stacked.append(jax.make_array_from_process_local_data(self.batches_sharding, local, global_shape))
        return (stacked[0] if len(stacked) == 1 else tuple(stacked)), bad

    def _settle(self, pending: list[tuple[int, int, dict, list[int]]]) -> bool:
        """Reads the control flags of finished calls: a DataError for non-finite data; True if a
        process asked to stop."""
        stop = False
        for first, end, control, bad in pending:
            flags = jax.device_get(control)
            if not flags["data_finite"]:
                steps = f"step {first}" if end == first + 1 else f"steps {first}..{end - 1}"
                name = bad[0][0] if bad else self.source.name
                where = (f"examples {[j for n, j in bad if n == name][:5]}" if bad
                         else "examples loaded by another process")
                raise DataError(
                    f"Dataset {name!r} holds non-finite values (NaN or infinity) in the batch of "
                    f"{steps} ({where}). Clean the data (or fix its preparation) and rerun; no checkpoint "
                    "was written from these batches.")
            stop = stop or bool(flags["stop"])
        return stop

    def _track_skips(self, host: list[dict], first_step: int) -> None:
        s = first_step
        for m in host:
            for skipped in np.asarray(m["skipped_update"]).reshape(-1):
                if skipped and self.streak_start is None:
                    self.streak_start = s
                elif not skipped:
                    self.streak_start = None
                s += 1

    def _beyond_bounds(self) -> str:
        """", or <field> / <field> exceeded" for the settings behind the method's bounds ("" without any)."""
        fields = sorted({field for *_, field in self.method.bounds.values()})
        return f", or {' / '.join(fields)} exceeded" if fields else ""

    def _diverged(self, window_len: int, done: int) -> Diverged:
        """Moves checkpoints written since the skipped updates began aside and names the last good one."""
        start = self.streak_start if self.streak_start is not None else done - window_len
        self.ckpts.manager.wait_until_finished()
        bad = [s for s in self.ckpts.steps() if s >= start]
        moved = ""
        if bad:
            where = self.ckpts.move_aside(bad, DIVERGED_DIR)
            moved = f" Checkpoints {bad}, written after the trouble began, were moved to {where}."
        good = self.ckpts.latest_step()
        last = (f"The last good checkpoint is step {good} in {self.ckpts.directory}; rerunning resumes from it."
                if good is not None else
                "There is no good checkpoint (the run diverged before its first one); rerunning starts afresh.")
        return Diverged(
            f"Training diverged: all {window_len} updates before step {done} had a non-finite loss or "
            f"gradient{self._beyond_bounds()}, and were skipped (since step {start}). {last}{moved} Lower "
            "train.lr (or check the data), then rerun the same command; or let runs recover by themselves with "
            "--config.train.recover=N.", step=done, good=good)

    def _compile(self, state: train_state.TrainState) -> None:
        self.shardings = state_shardings(state, self.method, self.mesh)

    def _call(self, step: int) -> tuple[Callable, Callable]:
        """The compiled call and probe for the phase of ``step``."""
        phase = phase_of(self.method, step)
        if phase not in self.calls:
            rep = parallel.replicated(self.mesh)
            # donate_argnums=0: the old state's buffers are reused for the new one (half the memory).
            self.calls[phase] = jax.jit(make_train_call(self.cfg, self.method, phase), donate_argnums=0,
                                        out_shardings=(self.shardings, rep, rep))
            self.probes[phase] = jax.jit(make_probe_call(self.cfg, self.method, phase), out_shardings=rep)
        return self.calls[phase], self.probes[phase]

    def _next_boundary(self, step: int) -> int:
        """The first phase boundary after ``step`` (calls never cross one), or train.steps."""
        return next((b for b in self.method.phase_boundaries if b > step), self.t.steps)

    def _log_line(self, record: dict[str, Any]) -> str:
        keys = ["loss", *(k for k in record if k != "loss")]
        shown = ", ".join(f"{k} {record[k]:.4g}" for k in keys
                          if k not in ("step", "window_steps", "skipped", "skipped_in_window")
                          and isinstance(record[k], float))
        return f"step {record['step']}/{self.t.steps}: {shown}; skipped {record['skipped']}"

    def run(self, state: train_state.TrainState, progress: bool) -> train_state.TrainState:
        t, ckpts = self.t, self.ckpts
        self._compile(state)
        start = int(state.step)
        if start:
            log.info("Resuming from the checkpoint at step %d in %s", start, ckpts.directory)
            _say_devices(ckpts)
        n_dev = self.mesh.devices.size
        log.info("Training on %d %s device%s, %d examples each per step.", n_dev, jax.default_backend().upper(),
                 "s" * (n_dev > 1), t.batch_size // n_dev)
        self.writer.truncate_after(start)
        show = progress and parallel.is_main_process()
        bar = tqdm(total=t.steps, initial=start, desc="train", unit="step", disable=not show, dynamic_ncols=True)
        window: list[dict] = []
        window_start, skipped_before, tick = start, int(state.skipped), time.perf_counter()
        pending: list = []
        step, quiet = start, False
        try:
            with io.StopSignal() as stop:
                while step < t.steps:
                    # Calls end at multiples of k, log_every and checkpoint_every: boundaries that depend
                    # on the step alone, so a resumed run makes the same calls as an unbroken one.
                    end = min(_next_multiple(step, self.k), _next_multiple(step, t.log_every),
                              _next_multiple(step, t.checkpoint_every), self._next_boundary(step), t.steps)
                    batches, bad = self._batches(step, end - step)
                    votes = self.votes[stop.received is not None]
                    call, probe = self._call(step)
                    state, metrics, control = call(state, batches, votes)
                    window.append(metrics)
                    bar.update(end - step)
                    first, step = step, end
                    at_log = step % t.log_every == 0 or step == t.steps
                    at_ckpt = step % t.checkpoint_every == 0 or step == t.steps
                    # Flags are read CONTROL_LAG calls late, so the host never waits for the device; at log
                    # and checkpoint steps (where the loop syncs anyway) all of them are read.
                    pending.append((first, end, control, bad))
                    cut = len(pending) if at_log or at_ckpt else max(0, len(pending) - CONTROL_LAG)
                    settle_now, pending = pending[:cut], pending[cut:]
                    stopping = self._settle(settle_now)
                    if stopping:  # every process learns it from the same call's flags
                        self._settle(pending)
                        pending = []
                    if at_log:
                        host = jax.device_get(window)
                        self._track_skips(host, window_start)
                        record = _summarise(host, state, skipped_before, time.perf_counter() - tick)
                        probed = {k: float(v) for k, v in probe(state, batches).items()}
                        record.update(probed)
                        rates = self.method.learning_rates
                        record.update({"lr" if len(rates) == 1 else f"lr/{name}": float(sched(step))
                                       for name, sched in rates.items()})
                        self.writer.write(record)
                        # What the method reports, not names the loop knows: the loss and its diagnostics.
                        bar.set_postfix({k: f"{record[k]:.4g}" for k in ["loss", *list(probed)[:3]]})
                        if not show and parallel.is_main_process():
                            log.info("%s", self._log_line(record))
                        if record["skipped_in_window"] == step - window_start:
                            raise self._diverged(step - window_start, step)
                        window, window_start = [], step
                        skipped_before, tick = int(state.skipped), time.perf_counter()
                    if stopping:
                        # Saved even after a skipped update: the resumed run then repeats this one exactly.
                        ckpts.save(state, force=True)
                        who = f"signal {stop.received}" if stop.received is not None else "a signal to another process"
                        raise Interrupted(
                            f"Stopped by {who} at step {step}; checkpoint saved in {ckpts.directory}. "
                            "Rerun the same command to resume.")
                    if at_ckpt:
                        # A state whose last update was skipped may hold diverging parameters: saving it
                        # could push the last good checkpoint out of the keep-N window.
                        if not int(np.asarray(metrics["skipped_update"])[-1]):
                            ckpts.save(state)
                            if self.keeper is not None:
                                self.keeper.after_save(state)
                            quiet = False
                        elif not quiet:
                            log.warning("Not saving checkpoints while updates are skipped for a non-finite loss, "
                                        "gradient or carried state%s (from step %d on).", self._beyond_bounds(), step)
                            quiet = True
                # A signal after the last call was dispatched reached no vote; with one process it is
                # still honoured here (with several, only a vote every process saw may stop them).
                if jax.process_count() == 1 and stop.received is not None:
                    raise Interrupted(f"Stopped by signal {stop.received} after the last step ({step}); checkpoint "
                                      f"saved in {ckpts.directory}. Rerun the same command to finish (sampling).")
        finally:
            bar.close()
        if jax.process_count() > 1:
            parallel.check_replicas_agree(state.params)
        return state


def checkpoint_step(cfg: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> int | None:
    """The step ``sample.checkpoint`` names: None for "latest", the step of
    ``eval/best_checkpoint.json`` for "best", or the number given."""
    which = str(cfg.sample.checkpoint).strip()
    if which == "latest":
        return None
    if which == "best":
        from ebmjax.evaluation import scan

        best = scan.read_best(workdir)
        if best is None:
            raise CheckpointError(
                f"sample.checkpoint=best needs {pathlib.Path(workdir) / 'eval' / scan.BEST_FILE}: score the "
                "checkpoints first with --mode eval --config.eval.checkpoints=all.")
        return int(best["best_step"])
    if which.isdigit():
        return int(which)
    raise ConfigError(f"sample.checkpoint must be latest, best or a step number, got {which!r}.")


def load_trained(cfg: ml_collections.ConfigDict, workdir: str | pathlib.Path, *, mesh: Mesh | None = None,
                 step: int | None = None):
    """(state, method, source) from the latest checkpoint in ``workdir`` (or the one at ``step``);
    an error if there is none."""
    workdir = pathlib.Path(workdir).absolute()
    if not (workdir / "checkpoints").is_dir():
        raise CheckpointError(f"No checkpoints in {workdir}: train first (--mode train) or pass the --workdir of a trained run.")
    source, method, mesh, state, ckpts, _ = setup(cfg, workdir, mesh=mesh, write_config=False, step=step)
    ckpts.close()
    _say_devices(ckpts)
    if int(state.step) == 0:
        raise CheckpointError(f"No checkpoint in {workdir / 'checkpoints'}: train first (--mode train).")
    return state, method, source
