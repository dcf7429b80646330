"""Orbax checkpoints of the train state, with the experiment's config saved beside them.

Layout of a workdir: ``config.json`` (the config of the run that wrote the checkpoints),
``checkpoints/<step>/`` (Orbax), ``metrics.jsonl``, ``samples/``.
"""

from __future__ import annotations

import json
import logging
import pathlib
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp

from ebmjax.errors import CheckpointError
from ebmjax.train.state import TrainState

log = logging.getLogger(__name__)

# Fields that define what the parameters mean; checkpoints from a run that differs in any of them
# cannot be resumed by this run.
IDENTITY_FIELDS = ("data.name", "data.pad", "data.image_size", "model.name", "model.width",
                   "model.blocks_per_stage", "model.hidden")


def _get(cfg: dict, dotted: str):
    node = cfg
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return list(node) if isinstance(node, tuple) else node


class Checkpoints:
    """Saves and restores ``TrainState`` in ``<workdir>/checkpoints`` (asynchronously, keep-N)."""

    def __init__(self, workdir: str | pathlib.Path, cfg: ml_collections.ConfigDict, keep: int = 3):
        self.workdir = pathlib.Path(workdir).absolute()
        self.directory = self.workdir / "checkpoints"
        self._check_identity(cfg)
        self.manager = ocp.CheckpointManager(
            self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))

    def _check_identity(self, cfg: ml_collections.ConfigDict) -> None:
        path = self.workdir / "config.json"
        new = json.loads(cfg.to_json_best_effort())
        if path.exists() and (self.directory.exists() and any(self.directory.iterdir())):
            old = json.loads(path.read_text())
            diffs = [f"{f}: {_get(old, f)!r} in the workdir, {_get(new, f)!r} now"
                     for f in IDENTITY_FIELDS if _get(old, f) != _get(new, f)]
            if diffs:
                raise CheckpointError(
                    f"The workdir {self.workdir} holds checkpoints of another experiment ("
                    + "; ".join(diffs) + "). Use a new --workdir, or the config that wrote them."
                )
        self.workdir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(new, indent=2))

    def steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def latest_step(self) -> int | None:
        steps = self.steps()
        return steps[-1] if steps else None

    def save(self, state: TrainState, *, force: bool = False) -> None:
        step = int(state.step)
        if step == self.latest_step():
            return
        self.manager.save(step, args=ocp.args.StandardSave(state._asdict()), force=force)

    def restore(self, abstract_state: TrainState) -> TrainState | None:
        """The newest readable checkpoint, or None if there is none.

        A checkpoint that cannot be read (e.g. cut short on disk) is reported and the previous one
        is tried, so a corrupt latest checkpoint costs the steps since the one before, not the run.
        """
        target = abstract_state._asdict()
        for step in reversed(self.steps()):
            try:
                restored = self.manager.restore(step, args=ocp.args.StandardRestore(target))
            except Exception as e:  # Orbax raises many types for damaged files
                log.warning("Checkpoint at step %d in %s cannot be read (%s: %s); trying the one before.",
                            step, self.directory, type(e).__name__, str(e).splitlines()[0] if str(e) else "")
                continue
            return TrainState(**restored)
        if self.steps():
            raise CheckpointError(
                f"No checkpoint in {self.directory} can be read. Move the directory aside to start "
                "afresh, or point --workdir elsewhere."
            )
        return None

    def close(self) -> None:
        """Waits for pending asynchronous saves; safe to call more than once."""
        self.manager.wait_until_finished()
        self.manager.close()


def abstract(tree: Any) -> Any:
    """Shape/dtype/sharding stand-ins for restoring without allocating twice."""
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)
