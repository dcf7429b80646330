"""``--mode sample``: a trained method's samples written to the workdir, in shards, resumable.

Layer 4. The chains run through the chain engine (:mod:`ebmjax.chains`); this module is the workdir
writer around it. :func:`sample_to_workdir` runs ``sample.n`` chains ``sample.batch_size`` at a
time (split over every device of the mesh), ``sample.chunk_steps`` steps per compiled call, and
writes under ``<workdir>/samples/`` (or ``<workdir>/samples_seed<N>/`` with ``sample.seed = N``, see
:func:`samples_dir`):

- ``shards/<key>/``: the shards of one sampling setup, ``<key>`` a short hash of its manifest (the
  sampler's settings, chains per batch, data shape, method, seeds and a fingerprint of the
  parameters), which ``shards/<key>/manifest.json`` holds.
- ``shards/<key>/shard_00000.npz``, ...: one file per batch of chains, written as soon as the batch
  finishes, so host and device memory hold one batch whatever ``sample.n`` is. Keys ``images``
  (float32, NHWC, the data's range, after the sampler's finishing map such as MDSM's denoising jump;
  all chains of the batch, the last batch included) and ``energy`` (mean energy of the batch's chains
  at every step of every stage).
- ``shards/<key>/chains_00003.npz``: the in-flight batch's positions after its last finished chunk,
  with the stage, the step count and its energy trace so far (deleted when the batch's shard is
  written).
- ``samples.npz``: the first ``sample.n`` samples, key ``images``, when they fit in
  ``sample.merge_max_gb``; ``grid.png`` (``density.png`` for 2-D toys), ``energy_trace.png`` (the
  MDSM paper's Fig. A7B, from batch 0), the sampler's own pictures if it has any
  (``Sampler.pictures``, e.g. multigrid's ``grids.png``) and ``summary.json`` (counts, range,
  throughput, peak memory, and the dataset's judge's quality figures where it has one).

Before anything is written, one batch of chains is compiled (not run) and XLA's memory estimate is
compared with the memory available (:func:`ebmjax.chains.check_memory`).

Resuming: rerunning the same command keeps finished shards and continues the in-flight batch from
its saved chains; the result equals an uninterrupted run exactly (see :mod:`ebmjax.chains`).
Shards of other settings or other parameters (other ``shards/<key>/``) are left alone until this run
has written all its shards and the merged results, and only then removed, with a warning: a run that
dies on the way loses nothing, and resumes in its own ``<key>/``. With several processes the workdir
must be on a filesystem they share (as for checkpoints); only process 0 writes.

Samples are reproducible: the same checkpoint, settings and seeds give the same images (see
:func:`sampling_key`); ``sample.seed`` draws other ones, into their own folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import pathlib
import shutil
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ebmjax import chains, data, io, keys, memory, parallel, samplers, visualize
from ebmjax.chains import SamplePlan
from ebmjax.errors import ConfigError, Interrupted
from ebmjax.methods.base import Sampler

log = logging.getLogger(__name__)

MANIFEST_VERSION = 3


def manifest_key(manifest: dict[str, Any]) -> str:
    """The name of a manifest's shard directory: a short hash of the manifest."""
    return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()[:12]


SHARD_GLOB = "shard_*.npz"  # a finished batch of chains (written whole: a temporary file, then a rename)


def finished_shards(workdir: str | pathlib.Path) -> list[pathlib.Path]:
    """Every finished sample shard under ``workdir``, of every sampling setup and seed
    (``samples/shards/<key>/``, ``samples_seed<N>/shards/<key>/``)."""
    return sorted(pathlib.Path(workdir).glob(f"samples*/shards/*/{SHARD_GLOB}"))


class ShardStore:
    """The shards of one sampling setup, in ``<root>/<key>/`` (``key``: :func:`manifest_key`): its
    finished batches and the in-flight one.

    Other entries of ``root`` (other settings or parameters, or the flat layout of older versions)
    are kept until :meth:`discard_stale`, which the caller runs once this run's results are written.
    With ``resume`` False the finished shards are not reused: each is drawn again and replaced by its
    new version when that is written. Only ``writer`` processes write.
    """

    # What an older ebmjax wrote straight into shards/ (one manifest at a time).
    FLAT_PATTERNS = (SHARD_GLOB, "chains_*.npz", "manifest.json")

    def __init__(self, root: str | pathlib.Path, manifest: dict[str, Any], *, resume: bool = True,
                 writer: bool = True):
        self.root = pathlib.Path(root)
        self.directory = self.root / manifest_key(manifest)
        self.writer = writer
        self.written: set[int] = set()
        path = self.directory / "manifest.json"
        try:
            old = json.loads(path.read_text()) if path.exists() else None
        except (OSError, ValueError):
            old = "unreadable"
        self.resume = resume and old in (None, manifest)
        finished = sorted(self.directory.glob(SHARD_GLOB))
        if finished and not self.resume:
            why = "sample.resume is false" if not resume else "their manifest differs"
            log.warning("%s: the %d finished sample shards in %s are drawn again; each is replaced when its new "
                        "version is written.", why, len(finished), self.directory)
        stale = self.stale()
        if stale:
            log.info("Sample shards of other settings or parameters in %s are kept until this run's samples "
                     "are written.", self.root)
        if writer:
            self.directory.mkdir(parents=True, exist_ok=True)
            io.write_text_atomic(path, json.dumps(manifest, indent=2, sort_keys=True))
        if jax.process_count() > 1:
            # Every process must see the same finished shards, or they would run different batches
            # and wait for each other forever: nobody looks before the writer has set up.
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices("ebmjax sample shards")

    def stale(self) -> list[pathlib.Path]:
        """Entries of ``root`` that belong to other manifests: their directories and flat files."""
        if not self.root.is_dir():
            return []
        dirs = [p for p in self.root.iterdir() if p.is_dir() and p != self.directory
                and (p / "manifest.json").exists()]
        flat = [p for pattern in self.FLAT_PATTERNS for p in self.root.glob(pattern) if p.is_file()]
        return sorted(dirs) + sorted(flat)

    def discard_stale(self) -> None:
        """Removes the shards of other manifests (call once this run's results are safely written)."""
        stale = self.stale()
        if not (stale and self.writer):
            return
        n = sum(len(list(p.glob(SHARD_GLOB))) if p.is_dir() else p.match(SHARD_GLOB) for p in stale)
        log.warning("Discarding %d sample shards in %s: they were drawn with other settings or parameters, and "
                    "this run's samples are now written.", n, self.root)
        for p in stale:
            if p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink(missing_ok=True)

    def shard_path(self, b: int) -> pathlib.Path:
        return self.directory / f"shard_{b:05d}.npz"

    def chains_path(self, b: int) -> pathlib.Path:
        return self.directory / f"chains_{b:05d}.npz"

    def has_shard(self, b: int) -> bool:
        return b in self.written or (self.resume and self.shard_path(b).exists())

    def load_shard(self, b: int) -> dict[str, np.ndarray]:
        with np.load(self.shard_path(b)) as f:
            return {k: f[k] for k in f.files}

    def save_shard(self, b: int, images: np.ndarray, energy: np.ndarray, seconds: float) -> None:
        """Batch ``b``'s samples, its chains' energy trace and the seconds drawing it took (this call's)."""
        if self.writer:
            io.savez_atomic(self.shard_path(b), images=images.astype(np.float32), energy=energy.astype(np.float32),
                            seconds=np.float64(seconds))
            self.chains_path(b).unlink(missing_ok=True)
        self.written.add(b)

    def load_chains(self, b: int) -> tuple[int, int, np.ndarray, np.ndarray] | None:
        """(stage, steps done in it, positions, energy trace so far) of an interrupted batch, or None."""
        if not (self.resume and self.chains_path(b).exists()):
            return None
        with np.load(self.chains_path(b)) as f:
            return int(f["stage"]), int(f["step"]), f["position"], f["energy"]

    def save_chains(self, b: int, stage: int, step: int, position: np.ndarray, energy: np.ndarray) -> None:
        if self.writer:
            io.savez_atomic(self.chains_path(b), stage=np.asarray(stage), step=np.asarray(step), position=position,
                            energy=energy.astype(np.float32))


def _manifest(cfg: ml_collections.ConfigDict, sampler: Sampler, plan: SamplePlan,
              shape: tuple[int, ...]) -> dict[str, Any]:
    return {
        "version": MANIFEST_VERSION, "seed": cfg.seed, "sample_seed": cfg.sample.get("seed"),
        "shape": list(shape), "batch": plan.batch,
        "steps": plan.steps, "method": cfg.method.name,
        "sampler": json.loads(json.dumps(dict(sampler.settings), default=str)),
        "params": chains.sampler_fingerprint(sampler),
    }


def sampling_key(cfg: ml_collections.ConfigDict) -> jax.Array:
    """The key of ``--mode sample``: derived from ``seed``, distinct from training's keys; with
    ``sample.seed = N``, a different key for every N (and none equal to the default one)."""
    key = keys.stream(cfg.seed, keys.SAMPLE)
    sample_seed = cfg.sample.get("seed")
    return key if sample_seed is None else jax.random.fold_in(key, int(sample_seed))


def samples_dir(cfg: ml_collections.ConfigDict, workdir: str | pathlib.Path, folder: str = "samples") -> pathlib.Path:
    """Where ``--mode sample`` writes: ``<workdir>/samples/``, or ``<workdir>/samples_seed<N>/`` with
    ``sample.seed = N``, so that fresh samples never overwrite earlier ones (``folder``: another name
    than ``samples``, e.g. ``--mode compose``'s)."""
    sample_seed = cfg.sample.get("seed")
    return pathlib.Path(workdir) / (folder if sample_seed is None else f"{folder}_seed{int(sample_seed)}")



def sample_to_workdir(cfg: ml_collections.ConfigDict, sampler: Sampler, source: Any,
                      workdir: str | pathlib.Path, *, progress: bool = True, mesh=None,
                      out_dir: str | pathlib.Path | None = None, folder: str = "samples") -> dict[str, Any]:
    """Draws ``sample.n`` samples of ``sampler`` into :func:`samples_dir` (of ``folder``; or into
    ``out_dir``; see the module docstring), resuming an interrupted run; returns the summary written
    to ``summary.json``. A batch of chains too large for the memory is a ConfigError before anything
    is written."""
    s = cfg.sample
    out_dir = samples_dir(cfg, workdir, folder) if out_dir is None else pathlib.Path(out_dir)
    writer = jax.process_index() == 0
    mesh = mesh or parallel.make_mesh()
    shape = tuple(source.shape)
    plan = chains.make_plan(s.batch_size, s.n, mesh.devices.size, sampler.steps)
    if s.merge_max_gb < 0:
        raise ConfigError(f"sample.merge_max_gb must be >= 0, got {s.merge_max_gb}.")
    chains.check_memory(sampler, plan, s.chunk_steps, mesh, unroll_steps=s.unroll_steps)
    store = ShardStore(out_dir / "shards", _manifest(cfg, sampler, plan, shape), resume=s.resume, writer=writer)
    reused = sum(store.has_shard(b) for b in range(plan.n_batches))

    t0, ran, stats = time.perf_counter(), 0, {}
    try:
        with io.StopSignal() as stop:
            t_batch = t0
            for b, images, trace in chains.run_batches(sampler, s.chunk_steps, plan, sampling_key(cfg), mesh, store,
                                             progress, stats, stop, unroll_steps=s.unroll_steps):
                store.save_shard(b, images, trace, time.perf_counter() - t_batch)
                t_batch = time.perf_counter()
                ran += 1
    except KeyboardInterrupt:
        raise Interrupted(
            f"Sampling stopped after {reused + ran} of {plan.n_batches} batches; finished batches and the "
            f"chains in flight are saved in {store.directory}. Rerun the same command to resume.") from None
    except Exception as e:  # XLA's estimate was too low after all: say what to do, keep what is done
        if "RESOURCE_EXHAUSTED" not in str(e):
            raise
        smaller = max(mesh.devices.size, plan.batch // 2 // mesh.devices.size * mesh.devices.size)
        raise ConfigError(
            f"Sampling ran out of memory with {plan.batch} chains at once ({str(e).splitlines()[0][:200]}). "
            f"Finished batches are kept in {store.directory}. Rerun with a smaller --config.sample.batch_size, "
            f"e.g. {smaller}.") from None
    seconds = time.perf_counter() - t0
    if not writer:
        return {}
    summary = _write_results(cfg, sampler, source, store, plan, out_dir, shape,
                             {"batches_reused": reused, "batches_run": ran, "seconds": seconds,
                              "chain_steps_run": stats["chain_steps_run"], "n_devices": mesh.devices.size})
    store.discard_stale()  # only now: the new shards and results are on disk
    return summary


def reproducibility_note(cfg: ml_collections.ConfigDict, folder: str = "samples") -> str:
    """What the log says after sampling into ``folder``: the samples are reproducible, and how to draw new ones."""
    sample_seed = cfg.sample.get("seed")
    if sample_seed is None:
        return ("These samples are reproducible: the same checkpoint, settings and seed give the same images. To "
                "draw new ones without overwriting these, pass --config.sample.seed=N (any N >= 0); they go to "
                f"{folder}_seedN/ beside {folder}/.")
    return (f"These samples are reproducible: the same checkpoint, settings and sample.seed={sample_seed} give the "
            "same images. Another --config.sample.seed draws new ones into its own folder.")


def _write_results(cfg: ml_collections.ConfigDict, sampler: Sampler, source: Any, store: ShardStore,
                   plan: SamplePlan, out_dir: pathlib.Path, shape: tuple[int, ...], run: dict[str, Any]) -> dict:
    """samples.npz (when it fits), the pictures and summary.json from the finished shards."""
    s = cfg.sample
    merge = plan.n * math.prod(shape) * 4 <= s.merge_max_gb * 1e9
    merged, grid, lo, hi, energy_trace, non_finite = [], [], math.inf, -math.inf, None, 0
    drawing_s: float | None = 0.0  # the seconds every batch took when it was drawn, whichever call drew it
    for b in range(plan.n_batches):
        shard = store.load_shard(b)
        drawing_s = None if drawing_s is None or "seconds" not in shard else drawing_s + float(shard["seconds"])
        images = shard["images"][: plan.count(b)]
        finite = finite_rows(images)
        non_finite += int(np.sum(~finite))
        if finite.any():
            lo, hi = min(lo, float(images[finite].min())), max(hi, float(images[finite].max()))
        if energy_trace is None:
            energy_trace = shard["energy"]
        if len(grid) < visualize.GRID_IMAGES:
            grid.extend(images[: visualize.GRID_IMAGES - len(grid)])
        if merge:
            merged.append(images)
    files = []
    x = np.concatenate(merged) if merge else None
    if merge:
        io.savez_atomic(out_dir / "samples.npz", images=x)
        files.append("samples.npz")
    else:
        (out_dir / "samples.npz").unlink(missing_ok=True)  # a stale file from a smaller run would mislead
    temps = np.concatenate([np.asarray(st.temperatures) for st in sampler.stages])
    visualize.save_energy_trace(temps, energy_trace, out_dir / "energy_trace.png",
                                labels=("mean energy of the chains (batch 0)",),
                                stages=[(st.name, len(st.temperatures)) for st in sampler.stages])
    files.append("energy_trace.png")
    grid = np.stack(grid)
    dataset = data.get(cfg.data.name)
    if not dataset.points:
        visualize.save_image_grid(grid, out_dir / "grid.png", title=grid_title(cfg, sampler))
        files.append("grid.png")
    extra: dict[str, Any] = {}
    if dataset.report is not None:  # what only this dataset shows (a toy's learned density)
        extra = dict(dataset.report(_sample_report(cfg, sampler, source, x if merge else grid, out_dir)))
        files.extend(extra.pop("files", []))
    if sampler.pictures is not None:  # the method's own pictures (a key no batch of chains uses)
        files.extend(sampler.pictures(out_dir, jax.random.fold_in(sampling_key(cfg), keys.SAMPLE_PICTURES)))

    mem, mem_note = memory.peak_device_memory()
    img_steps = run["chain_steps_run"] * plan.batch
    seconds = run["seconds"]
    summary = {
        "n": plan.n, "shape": list(shape), "method": cfg.method.name, "files": files,
        # the finite samples' range; None when no sample is finite
        "min": lo if non_finite < plan.n else None, "max": hi if non_finite < plan.n else None,
        "shards": [store.shard_path(b).relative_to(out_dir).as_posix() for b in range(plan.n_batches)],
        "merged": merge, "batch_size": plan.batch, "n_batches": plan.n_batches, "chain_steps": plan.steps,
        "batches_reused": run["batches_reused"], "batches_run": run["batches_run"], "seconds": seconds,
        "drawing_seconds": drawing_s,
        "img_steps_per_s": img_steps / seconds if img_steps and seconds > 0 else None,
        "seed": cfg.seed, "sample_seed": cfg.sample.get("seed"),
        "device": jax.devices()[0].device_kind, "n_devices": run["n_devices"],
        "peak_memory_bytes": mem, "peak_memory_note": mem_note, "non_finite": non_finite,
    }
    summary.update(extra)
    if non_finite:
        log.warning("%d of %d samples hold non-finite values: their chains diverged. The judge scores the finite "
                    "ones only (summary.json: non_finite). A smaller Langevin step or a lower starting temperature "
                    "keeps chains finite; for MDSM, train noise levels (mdsm.sigma_high) that reach the noise the "
                    "chains start with.", non_finite, plan.n)
    quality = judge_quality(cfg, x if merge else grid, label=sampler.settings.get("label"))
    if quality is not None:
        summary["quality"] = quality
        log.info("The judge (%s) recognises %.1f%% of the %d %ssamples with p >= %.2f; label entropy %.3f of the "
                 "maximum.", quality["classifier"], 100 * quality["confident_share"], quality["n"],
                 "finite " if non_finite else "", quality["threshold"], quality["label_entropy"])
        if "label_agreement" in quality:
            log.info("It gives %.1f%% of them the class they were drawn for (sample.label = %d).",
                     100 * quality["label_agreement"], sampler.settings["label"])
    io.write_json_atomic(out_dir / "summary.json", summary)
    log.info("Wrote %d samples to %s (%d batches run, %d reused). %s", plan.n, out_dir, run["batches_run"],
             run["batches_reused"], reproducibility_note(cfg, out_dir.name.split("_seed")[0]))
    return summary


def grid_title(cfg: ml_collections.ConfigDict, sampler: Sampler, step: int | None = None) -> str:
    """"<method>[ (<variant>)] samples (<data>[, class k | , a row per class][, step s])[ x <other
    models>]": what was sampled, by which of the method's recipes (``Sampler.variant``),
    and from which checkpoint when ``step`` is given."""
    label = sampler.settings.get("label")
    what = {None: "", -1: ", a row per class"}.get(label, f", class {label}")
    what += "" if step is None else f", step {step}"
    others = [pathlib.Path(w).name for w, _ in sampler.settings.get("composed_with", ())]
    name = f"{cfg.method.name} ({sampler.variant})" if sampler.variant else cfg.method.name
    return f"{name} samples ({cfg.data.name}{what})" + "".join(f" x {o}" for o in others)


def finite_rows(images: np.ndarray) -> np.ndarray:
    """(n,) bool: which of the n images hold only finite values (a diverged chain's hold NaN)."""
    images = np.asarray(images)
    return np.isfinite(images.reshape(len(images), -1)).all(axis=1)


def judge_quality(cfg: ml_collections.ConfigDict, images: np.ndarray, label: int | None = None) -> dict | None:
    """The data's judge (``ebmjax.data.judges``) on ``images``: share recognised with p >= 0.9,
    label entropy and class counts (``ebmjax.evaluation.quality.summary``) of the finite images; None
    when the dataset has no judge or no image is finite. ``label``: the class the samples were drawn
    for (``sample.label``; -1: one grid row of ten per class in turn), adding ``label_agreement``, the
    share the judge gives that class."""
    from ebmjax.evaluation import quality

    judge = data.judge_for(cfg.data, cfg.eval.classifier_seed, tuple(images.shape[1:]))
    if judge is None or images.shape[-1] != judge.shape[-1]:
        return None
    finite = finite_rows(images)
    if not finite.any():
        return None
    probs = judge.probabilities(np.asarray(images)[finite])
    out = quality.summary(probs, classifier=judge.describe())
    if label is not None:
        wanted = (np.full(len(images), label) if label >= 0 else
                  np.asarray(samplers.row_labels(len(images), int(cfg.model.classes))))[finite]
        out["label_agreement"] = float(np.mean(np.argmax(probs, axis=1) == wanted))
    return out



def _sample_report(cfg: ml_collections.ConfigDict, sampler: Sampler, source: Any, samples: np.ndarray,
                   out_dir: pathlib.Path) -> data.SampleReport:
    """What a dataset's own report gets after sampling (``ebmjax.data.SampleReport``)."""
    final = sampler.stages[-1].energy

    def energy_fn(x: np.ndarray) -> np.ndarray:
        return np.asarray(samplers.apply(final, jnp.asarray(x)))

    def draw_warm(n: int) -> np.ndarray:
        x, _ = chains.draw(chains.at_least_temperature(sampler), n, jax.random.fold_in(sampling_key(cfg), keys.SAMPLE_WARM),
                    batch_size=cfg.sample.batch_size, chunk_steps=cfg.sample.chunk_steps, progress=False,
                    unroll_steps=cfg.sample.unroll_steps)
        return x

    return data.SampleReport(samples=samples, out_dir=out_dir, energy_fn=energy_fn, draw_warm=draw_warm,
                             source=source, title=grid_title(cfg, sampler), label=sampler.settings.get("label"))
