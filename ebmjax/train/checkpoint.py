"""Orbax checkpoints of the train state, with the experiment's config saved beside them.

Layout of a workdir: ``config.json`` (the config of the run that wrote the checkpoints),
``checkpoints/<step>/`` (Orbax), ``metrics.jsonl``, ``samples/``; checkpoints that could not be
read, or that hold diverged parameters, are moved (never deleted) to ``checkpoints_unreadable/`` and
``checkpoints_diverged/``.

Saving is asynchronous (Orbax copies the arrays to host memory, then writes in a background thread
while training goes on) and keeps the newest ``train.keep_checkpoints``. Every process calls
``save`` and ``restore`` (Orbax writes each process's part); only process 0 writes ``config.json``
and moves directories.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
import shutil
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp

from ebmjax import parallel
from ebmjax.errors import CheckpointError
from ebmjax.train.state import TrainState

log = logging.getLogger(__name__)

# Fields that define what the parameters mean, whatever the method (the method adds its own);
# checkpoints from a run that differs in any of them cannot be resumed by this run. (Shapes are
# checked too, against the checkpoint's own metadata.)
IDENTITY_FIELDS = ("method.name", "data.name", "data.pad", "data.image_size")
UNREADABLE_DIR = "checkpoints_unreadable"
DIVERGED_DIR = "checkpoints_diverged"


def _get(cfg: dict, dotted: str):
    node = cfg
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return list(node) if isinstance(node, tuple) else node


def _shapes(tree: Any) -> dict[str, tuple[int, ...]]:
    """``{"['params']['conv1']['kernel']": shape, ...}`` for every array (or array metadata) leaf."""
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {jax.tree_util.keystr(path): tuple(leaf.shape) for path, leaf in flat}


def write_text_atomic(path: pathlib.Path, text: str) -> None:
    """Writes ``text`` to ``path`` so that readers see the old or the new file, never half of one."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


class Checkpoints:
    """Saves and restores ``TrainState`` in ``<workdir>/checkpoints`` (asynchronously, keep-N).

    Construction checks that the workdir's ``config.json`` describes the same experiment and writes
    nothing; :meth:`write_config` records this run's config once the state has been set up.
    """

    def __init__(self, workdir: str | pathlib.Path, cfg: ml_collections.ConfigDict, keep: int = 3,
                 identity: tuple[str, ...] = IDENTITY_FIELDS):
        self.workdir = pathlib.Path(workdir).absolute()
        self.directory = self.workdir / "checkpoints"
        self.identity = identity
        self._config = json.loads(cfg.to_json_best_effort())
        self._check_identity()
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True,
            # Explicit although it is Orbax's default: saving must not stall training.
            enable_async_checkpointing=True,
            # Removes the *.orbax-checkpoint-tmp directories of saves cut short by a kill.
            cleanup_tmp_directories=True)
        # The handler is named up front so that metadata (shapes) can be read before any restore.
        self.manager = ocp.CheckpointManager(self.directory, options=options,
                                             item_handlers=ocp.StandardCheckpointHandler())

    def _has_checkpoints(self) -> bool:
        return self.directory.is_dir() and any(p.name.isdigit() for p in self.directory.iterdir())

    def _check_identity(self) -> None:
        path = self.workdir / "config.json"
        if not (path.exists() and self._has_checkpoints()):
            return
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise CheckpointError(f"{path} cannot be read ({e}); restore it, or use a new --workdir.") from None
        diffs = [f"{f}: {_get(old, f)!r} in the workdir, {_get(self._config, f)!r} now"
                 for f in self.identity if _get(old, f) != _get(self._config, f)]
        if diffs:
            raise CheckpointError(
                f"The workdir {self.workdir} holds checkpoints of another experiment ("
                + "; ".join(diffs) + "). Use a new --workdir, or the config that wrote them."
            )

    def write_config(self) -> None:
        """Records this run's config as ``<workdir>/config.json`` (process 0 only)."""
        if parallel.is_main_process():
            self.workdir.mkdir(parents=True, exist_ok=True)
            write_text_atomic(self.workdir / "config.json", json.dumps(self._config, indent=2))

    def steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def latest_step(self) -> int | None:
        steps = self.steps()
        return steps[-1] if steps else None

    def save(self, state: TrainState, *, force: bool = False) -> bool:
        """Starts an asynchronous save of ``state`` at its step; returns False if that step is saved already."""
        step = int(state.step)
        if step in self.manager.all_steps():
            return False
        return bool(self.manager.save(step, args=ocp.args.StandardSave(state._asdict()), force=force))

    def _check_shapes(self, step: int, saved_params: Any, abstract_state: TrainState) -> None:
        """CheckpointError if the parameters saved at ``step`` have other names or shapes than this run's."""
        saved = _shapes(saved_params)
        wanted = _shapes(abstract_state.params)
        if saved == wanted:
            return
        diffs = [f"{k}: {saved.get(k)} in the checkpoint, {wanted.get(k)} now"
                 for k in sorted(set(saved) | set(wanted)) if saved.get(k) != wanted.get(k)]
        more = f" (and {len(diffs) - 3} more)" if len(diffs) > 3 else ""
        raise CheckpointError(
            f"The checkpoint at step {step} in {self.directory} holds parameters of another shape: "
            + "; ".join(diffs[:3]) + more + ". The data (image size or channels) or the model differs from "
            "the run that wrote it. Use a new --workdir, or the config and data that wrote them.")

    def restore(self, abstract_state: TrainState) -> TrainState | None:
        """The newest readable checkpoint, or None if there is none.

        ``abstract_state`` gives shapes, dtypes and shardings (arrays are restored straight onto the
        mesh). Parameters of other shapes are a CheckpointError. A checkpoint that cannot be read
        (e.g. cut short on disk) is reported, moved to ``checkpoints_unreadable/`` and the previous one
        is tried, so a corrupt latest checkpoint costs the steps since the one before, not the run.
        """
        target = abstract_state._asdict()
        unreadable: list[int] = []
        restored = None
        for step in reversed(self.steps()):
            try:
                metadata = self.manager.item_metadata(step)
                saved_params = metadata.tree["params"]
            except Exception as e:  # Orbax raises many types for damaged files
                self._report_unreadable(step, e)
                unreadable.append(step)
                continue
            self._check_shapes(step, saved_params, abstract_state)
            try:
                restored = TrainState(**self.manager.restore(step, args=ocp.args.StandardRestore(target)))
            except Exception as e:  # Orbax raises many types for damaged files
                self._report_unreadable(step, e)
                unreadable.append(step)
                continue
            break
        if unreadable:
            moved = self.move_aside(unreadable, UNREADABLE_DIR)
            if restored is not None:
                log.warning("Resuming from the checkpoint at step %d instead; the unreadable checkpoint(s) %s "
                            "were moved to %s.", int(restored.step), unreadable, moved)
            else:
                raise CheckpointError(
                    f"No checkpoint in {self.directory} can be read (steps {unreadable}, now moved to {moved}). "
                    "Rerun the same command to start afresh, or point --workdir elsewhere.")
        return restored

    def _report_unreadable(self, step: int, e: Exception) -> None:
        first = str(e).splitlines()[0] if str(e) else ""
        log.warning("Checkpoint at step %d in %s cannot be read (%s: %s); falling back to the one before.",
                    step, self.directory, type(e).__name__, first[:300])

    def move_aside(self, steps: list[int], folder: str) -> pathlib.Path:
        """Moves the checkpoints of ``steps`` to ``<workdir>/<folder>/`` (nothing is deleted) and makes
        the manager forget them; every process must call it."""
        self.manager.wait_until_finished()
        target = self.workdir / folder
        if parallel.is_main_process():
            target.mkdir(parents=True, exist_ok=True)
            for step in steps:
                src = self.directory / str(step)
                if not src.exists():
                    continue
                dst, n = target / str(step), 1
                while dst.exists():  # an earlier move of the same step: keep both
                    dst, n = target / f"{step}.{n}", n + 1
                shutil.move(str(src), str(dst))
        parallel.barrier(f"ebmjax_move_aside_{folder}_{'_'.join(map(str, steps))}")
        self.manager.reload()
        return target

    def close(self) -> None:
        """Waits for pending asynchronous saves; safe to call more than once."""
        self.manager.wait_until_finished()
        self.manager.close()

