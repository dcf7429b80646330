"""Orbax checkpoints of the train state, with the experiment's config saved beside them.

Layout of a workdir: ``config.json`` (the config of the run that wrote the checkpoints),
``devices.json`` (the devices it trained on), ``checkpoints/<step>/`` (Orbax), ``metrics.jsonl``, ``samples/``; checkpoints that could not be
read, or that hold diverged parameters, are moved (never deleted) to ``checkpoints_unreadable/`` and
``checkpoints_diverged/``.

Saving is asynchronous (Orbax copies the arrays to host memory, then writes in a background thread
while training goes on) and keeps the newest ``train.keep_checkpoints``. Every process calls
``save`` and ``restore`` (Orbax writes each process's part); only process 0 writes ``config.json``
and moves directories.

Opening and reading checkpoints runs under :func:`quiet_orbax`: a damaged checkpoint makes Orbax,
TensorStore and asyncio print thousands of lines (errors, and a traceback for every read still in
flight when the first one failed), which would bury the one warning that says what happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import pathlib
import shutil
import sys
import threading
import warnings
from typing import Any, Iterator

import jax
import ml_collections
import orbax.checkpoint as ocp

from ebmjax import io, parallel
from ebmjax.config import defaults
from ebmjax.errors import CheckpointError
from ebmjax.train.state import TrainState

log = logging.getLogger(__name__)

# Fields that define what the parameters mean, whatever the method (the method adds its own);
# checkpoints from a run that differs in any of them cannot be resumed by this run. (Shapes are
# checked too, against the checkpoint's own metadata.)
IDENTITY_FIELDS = ("method.name", "data.name", "data.domain", "data.pad", "data.image_size")
# The parts of a TrainState besides its parameters whose shapes settings decide, and what a mismatch says.
STATE_FIELDS = {
    "opt_state": "holds an optimiser state of other shapes (networks added or removed, or another optimiser)",
    "carry": "holds a method state of other shapes (the chains it carries: a replay buffer's size, the number of chains)",
    "ema": "holds a moving average of the parameters of other shapes",
}
# How Orbax says that a restore's target is arranged otherwise than the saved tree (its two messages).
STRUCTURE_MISMATCH = ("tree structures do not match", "Structure mismatch")
UNREADABLE_DIR = "checkpoints_unreadable"
DIVERGED_DIR = "checkpoints_diverged"
DEVICES_FILE = "devices.json"  # the devices of the run that last trained in the workdir
# Loggers silenced while a checkpoint is opened or read (Orbax logs through absl).
NOISY_LOGGERS = ("absl", "orbax", "asyncio", "tensorstore")
# The longest quiet_orbax waits for reads left in flight by a failed restore.
DRAIN_TIMEOUT_S = 300.0


def _leaf_shapes(tree: Any) -> list[tuple[int, ...]]:
    """The shapes of a tree's arrays (or of a saved tree's array metadata), sorted: the same multiset
    whether the tree is a state or Orbax's record of it (which keeps named tuples as dicts)."""
    return sorted(tuple(getattr(leaf, "shape", None) or ()) for leaf in jax.tree.leaves(tree))


def _missing(cfg: dict, dotted: str) -> bool:
    node = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return True
        node = node[part]
    return False


def _get(cfg: dict, dotted: str):
    node = cfg
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return list(node) if isinstance(node, tuple) else node


def _shapes(tree: Any) -> dict[str, tuple[int, ...]]:
    """``{"['params']['conv1']['kernel']": shape, ...}`` for every array (or array metadata) leaf."""
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {jax.tree_util.keystr(path): tuple(leaf.shape) for path, leaf in flat}


def complete_steps(directory: str | pathlib.Path) -> list[int]:
    """The steps of the finished checkpoints in ``directory`` (``<workdir>/checkpoints``), read from the
    folder names without Orbax: a save in flight is a temporary folder until its write is complete."""
    d = pathlib.Path(directory)
    return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit()) if d.is_dir() else []


def describe_devices(mesh: Any) -> dict:
    """``{"devices": n, "processes": p, "platform": "cpu"}`` of the devices of ``mesh``."""
    devices = list(mesh.devices.flat)
    return {"devices": len(devices), "processes": len({d.process_index for d in devices}),
            "platform": devices[0].platform}


def devices_note(recorded: dict | None, mesh: Any, step: int) -> str | None:
    """One line when the checkpoint at ``step`` was written on other devices than ``mesh``'s: the
    checkpoints hold whole arrays, not per-device pieces, so the run goes on; None when they match
    (or nothing was recorded)."""
    now = describe_devices(mesh)
    if not recorded or (recorded.get("devices"), recorded.get("processes")) == (now["devices"], now["processes"]):
        return None

    def say(d: dict) -> str:
        n, p = d.get("devices"), d.get("processes")
        return f"{n} {d.get('platform', '').upper()} device{'s' * (n != 1)} in {p} process{'es' * (p != 1)}".replace("  ", " ")

    return (f"The checkpoint at step {step} was written by a run on {say(recorded)}; this run has {say(now)}. "
            "Checkpoints hold whole arrays, so it goes on: the batch and any carried chains are split over "
            "this run's devices, and sums over the batch come out in another order, so results differ from "
            "a run that stayed on the old devices in the last bits of floating point only.")


class _LoopsClosedLater(asyncio.AbstractEventLoopPolicy):
    """The current event-loop policy, except that the loops it makes close only in :meth:`drain`.

    Orbax reads a checkpoint's arrays as tasks on a fresh event loop and closes that loop as soon as
    one read fails, while TensorStore's reads of the other arrays are still in flight. Each of those
    reads later reports its end to the closed loop, which raises, and TensorStore prints the traceback
    (hundreds of them, seconds after the failure for a large checkpoint). Kept open, the loop takes
    the reports; :meth:`drain` then runs it until every task left on it has ended (their errors
    retrieved, so asyncio does not log them either) and closes it.
    """

    def __init__(self, base: asyncio.AbstractEventLoopPolicy):
        self.base = base
        self.closed_later: list[tuple[asyncio.AbstractEventLoop, Any]] = []

    def get_event_loop(self):
        return self.base.get_event_loop()

    def set_event_loop(self, loop):
        self.base.set_event_loop(loop)

    def new_event_loop(self):
        loop = self.base.new_event_loop()
        close = loop.close
        loop.close = lambda: self.closed_later.append((loop, close))  # type: ignore[method-assign]
        return loop

    def get_child_watcher(self):  # Python < 3.14 asks policies for these
        return self.base.get_child_watcher()

    def set_child_watcher(self, watcher):
        return self.base.set_child_watcher(watcher)

    def drain(self, timeout: float) -> None:
        for loop, close in self.closed_later:
            try:
                tasks = asyncio.all_tasks(loop)
                if tasks:
                    loop.run_until_complete(asyncio.wait(tasks, timeout=timeout))
                    late = [t for t in tasks if not t.done()]
                    for t in late:
                        t.cancel()
                    if late:
                        loop.run_until_complete(asyncio.wait(late, timeout=5.0))
                    for t in tasks:
                        if t.done() and not t.cancelled():
                            t.exception()  # retrieved: no "Task exception was never retrieved"
            except Exception as e:  # cleaning up must not hide the outcome of the restore
                log.debug("Draining an Orbax event loop failed: %r", e)
            finally:
                close()
        self.closed_later.clear()


@contextlib.contextmanager
def quiet_orbax(drain_timeout: float = DRAIN_TIMEOUT_S) -> Iterator[None]:
    """Silences Orbax, TensorStore and asyncio while a checkpoint is opened or read, and lets reads
    that a failure left in flight end quietly before returning (see :class:`_LoopsClosedLater`).

    Inside: the loggers of ``NOISY_LOGGERS`` are off, "Exception ignored" messages are dropped, and
    event loops made by asyncio stay open until their tasks end. Everything is put back on exit; an
    exception raised inside propagates unchanged, for the caller to report in its own words.
    """
    loggers = [logging.getLogger(name) for name in NOISY_LOGGERS]
    levels = [lg.level for lg in loggers]
    hook = sys.unraisablehook
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # event-loop policies are deprecated in 3.14
        base = asyncio.get_event_loop_policy()
        policy = _LoopsClosedLater(base)
        asyncio.set_event_loop_policy(policy)
    for lg in loggers:
        lg.setLevel(logging.CRITICAL + 1)
    sys.unraisablehook = lambda unraisable: None
    try:
        yield
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            asyncio.set_event_loop_policy(base)
        try:
            policy.drain(drain_timeout)
        finally:
            sys.unraisablehook = hook
            for lg, level in zip(loggers, levels):
                lg.setLevel(level)


def _reason(e: BaseException, limit: int = 240) -> str:
    """What went wrong, in one line: the first line of the innermost exception that ``e`` was raised
    from (Orbax wraps TensorStore's precise error in a vaguer one), without TensorStore's spec dump."""
    seen = {id(e)}
    while e.__cause__ is not None and id(e.__cause__) not in seen:
        e = e.__cause__
        seen.add(id(e))
    text = str(e).splitlines()[0] if str(e) else ""
    text = text.split(" [tensorstore_spec=")[0]
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


class _QuietWhileOpen:
    """:func:`quiet_orbax` for as long as any :class:`Checkpoints` is open (counted, so several may be).

    Saves are asynchronous: Orbax writes in a thread of its own on a fresh event loop. When a write
    fails (a full disk), Orbax closes that loop while TensorStore's other writes are still in flight,
    and each of them then prints a traceback, hundreds for one checkpoint, long after the failure;
    Orbax also logs the error with its own traceback. The failure itself reaches the run as an
    exception (from the next save or from :meth:`Checkpoints.close`), which the command line turns
    into one message; this keeps the rest off the terminal.
    """

    def __init__(self):
        self._count = 0
        self._stack: contextlib.ExitStack | None = None
        self._lock = threading.Lock()

    def enter(self) -> None:
        with self._lock:
            if self._count == 0:
                self._stack = contextlib.ExitStack()
                self._stack.enter_context(quiet_orbax())
            self._count += 1

    def exit(self) -> None:
        with self._lock:
            self._count -= 1
            if self._count == 0 and self._stack is not None:
                stack, self._stack = self._stack, None
                stack.close()


_QUIET_WHILE_OPEN = _QuietWhileOpen()


class Checkpoints:
    """Saves and restores ``TrainState`` in ``<workdir>/checkpoints`` (asynchronously, keep-N).

    Construction checks that the workdir's ``config.json`` describes the same experiment and writes
    nothing; :meth:`write_config` records this run's config once the state has been set up.
    """

    def __init__(self, workdir: str | pathlib.Path, cfg: ml_collections.ConfigDict, keep: int | None = 3,
                 identity: tuple[str, ...] = IDENTITY_FIELDS):
        self.workdir = pathlib.Path(workdir).absolute()
        self.directory = self.workdir / "checkpoints"
        self.identity = identity
        self.devices_note: str | None = None  # set when the restored checkpoint was written on other devices
        self._config = json.loads(cfg.to_json_best_effort())
        self._check_identity()
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True,
            # Explicit although it is Orbax's default: saving must not stall training.
            enable_async_checkpointing=True,
            # Removes the *.orbax-checkpoint-tmp directories of saves cut short by a kill.
            cleanup_tmp_directories=True)
        # The handler is named up front so that metadata (shapes) can be read before any restore.
        with quiet_orbax():  # it reads every checkpoint's metadata, and logs errors for damaged ones
            self.manager = ocp.CheckpointManager(self.directory, options=options,
                                                 item_handlers=ocp.StandardCheckpointHandler())
        _QUIET_WHILE_OPEN.enter()
        self._open = True

    def _has_checkpoints(self) -> bool:
        return bool(complete_steps(self.directory))

    def _check_identity(self) -> None:
        path = self.workdir / "config.json"
        if not (path.exists() and self._has_checkpoints()):
            return
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise CheckpointError(f"{path} cannot be read ({e}); restore it, or use a new --workdir.") from None
        # A field the workdir's config predates had its default value then.
        base = json.loads(defaults().to_json_best_effort())
        diffs = [f"{f}: {_get(old, f)!r} in the workdir, {_get(self._config, f)!r} now"
                 for f in self.identity
                 if _get(old, f) != _get(self._config, f) and not (_missing(old, f) and _get(base, f) ==
                                                                    _get(self._config, f))]
        if diffs:
            raise CheckpointError(
                f"The workdir {self.workdir} holds checkpoints of another experiment ("
                + "; ".join(diffs) + "). Use a new --workdir, or the config that wrote them."
            )

    def write_config(self, mesh: Any = None) -> None:
        """Records this run's config as ``<workdir>/config.json`` and, given the run's ``mesh``, the
        devices it trains on as ``<workdir>/devices.json`` (process 0 only)."""
        if parallel.is_main_process():
            self.workdir.mkdir(parents=True, exist_ok=True)
            io.write_text_atomic(self.workdir / "config.json", json.dumps(self._config, indent=2))
            if mesh is not None:
                io.write_json_atomic(self.workdir / DEVICES_FILE, describe_devices(mesh))

    def recorded_devices(self) -> dict | None:
        """What ``devices.json`` says about the devices of the run that wrote the checkpoints (None
        for a workdir without one, or one that cannot be read)."""
        try:
            return json.loads((self.workdir / DEVICES_FILE).read_text())
        except (OSError, ValueError):
            return None

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

    def _saved_tree(self, step: int) -> Any:
        """The metadata tree of the checkpoint at ``step`` (shapes, no arrays); raises what Orbax raises
        for damaged files, or ValueError when it holds no parameters."""
        with quiet_orbax():
            saved_tree = self.manager.item_metadata(step).tree
        if "params" not in saved_tree:
            raise ValueError("it holds no parameters")
        return saved_tree

    def _check_shapes(self, step: int, saved_tree: Any, abstract_state: TrainState) -> None:
        """CheckpointError if the state saved at ``step`` (its metadata tree) does not fit this run's:
        parameters of other names or shapes, or an optimiser state, carried state or moving average of
        other shapes (a setting that shapes them changed). Such a checkpoint is intact, so it is left
        where it is, and the message names the settings to go back to."""
        self._check_params(step, saved_tree["params"], abstract_state)
        for field, what in STATE_FIELDS.items():
            saved, wanted = _leaf_shapes(saved_tree.get(field, ())), _leaf_shapes(getattr(abstract_state, field))
            if saved == wanted:
                continue
            if field == "ema" and not (saved and wanted):
                what = ("was written with a moving average of the parameters (train.ema_decay > 0) and this run "
                        "keeps none" if saved else "was written without a moving average of the parameters "
                        "(train.ema_decay = 0) and this run keeps one")
                what += ": resume with the train.ema_decay that wrote it (the workdir's config.json has it)"
            raise CheckpointError(
                f"The checkpoint at step {step} in {self.directory} {what} ({len(saved)} arrays in it, {len(wanted)} "
                "now). It is intact and left where it is. Use the config that wrote it, or a new --workdir.")

    def _refuse_other_structure(self, step: int, error: Exception) -> None:
        """A CheckpointError if Orbax refused the restore because the saved state is arranged otherwise
        than this run's (the same arrays in other containers: a setting changed, the files are whole),
        so that an intact checkpoint is not taken for a damaged one and moved aside."""
        if isinstance(error, ValueError) and any(m in str(error) for m in STRUCTURE_MISMATCH):
            raise CheckpointError(
                f"The checkpoint at step {step} in {self.directory} holds a state arranged otherwise than this "
                "run's (a setting of the optimiser or the method differs from the run that wrote it). It is intact "
                "and left where it is. Use the config that wrote it (the workdir's config.json), or a new --workdir.") from None

    def _check_params(self, step: int, saved_params: Any, abstract_state: TrainState) -> None:
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

    def restore(self, abstract_state: TrainState, step: int | None = None) -> TrainState | None:
        """The newest readable checkpoint (or the one at ``step``), or None if there is none.

        ``abstract_state`` gives shapes, dtypes and shardings (arrays are restored straight onto the
        mesh). Parameters of other shapes are a CheckpointError. A checkpoint that cannot be read
        (e.g. cut short on disk) is moved to ``checkpoints_unreadable/`` and the previous one is
        tried, so a corrupt latest checkpoint costs the steps since the one before, not the run; one
        warning says so (Orbax's own errors are silenced, see :func:`quiet_orbax`).
        """
        target = abstract_state._asdict()
        if step is not None:
            return self._restore_step(step, abstract_state, target)
        unreadable: list[tuple[int, str]] = []
        restored = None
        for step in reversed(self.steps()):
            try:
                saved_tree = self._saved_tree(step)
            except Exception as e:  # Orbax raises many types for damaged files
                unreadable.append((step, _reason(e)))
                continue
            self._check_shapes(step, saved_tree, abstract_state)
            try:
                with quiet_orbax():
                    restored = TrainState(**self.manager.restore(step, args=ocp.args.StandardRestore(target)))
            except Exception as e:  # Orbax raises many types for damaged files
                self._refuse_other_structure(step, e)
                unreadable.append((step, _reason(e)))
                continue
            break
        if unreadable:
            steps = [s for s, _ in unreadable]
            moved = self.move_aside(steps, UNREADABLE_DIR)
            which = (f"Checkpoint at step {steps[0]}" if len(steps) == 1 else
                     f"Checkpoints at steps {', '.join(map(str, steps))}")
            why = (unreadable[0][1] if len(steps) == 1 else
                   "; ".join(f"step {s}: {reason}" for s, reason in unreadable))
            if restored is None:
                raise CheckpointError(
                    f"No checkpoint in {self.directory} can be read ({why}); they were moved to {moved}. "
                    "Rerun the same command to start afresh, or point --workdir elsewhere.")
            log.warning("%s in %s cannot be read (%s). Moved to %s (kept, not deleted); resuming from the "
                        "checkpoint at step %d instead: training redoes the steps after it, with the same result.",
                        which, self.directory, why, moved, int(restored.step))
        return restored

    def _restore_step(self, step: int, abstract_state: TrainState, target: dict) -> TrainState:
        """The checkpoint at ``step`` exactly (a CheckpointError if it is missing or unreadable; it is
        left where it is: the user asked for this one)."""
        if step not in self.steps():
            raise CheckpointError(f"No checkpoint at step {step} in {self.directory}; the saved steps are "
                                  f"{self.steps() or 'none'}. Pick one of them (--config.sample.checkpoint=STEP).")
        try:
            saved_tree = self._saved_tree(step)
        except Exception as e:  # Orbax raises many types for damaged files
            raise CheckpointError(f"The checkpoint at step {step} in {self.directory} cannot be read "
                                  f"({_reason(e)}); pick another step.") from None
        self._check_shapes(step, saved_tree, abstract_state)
        try:
            with quiet_orbax():
                return TrainState(**self.manager.restore(step, args=ocp.args.StandardRestore(target)))
        except Exception as e:  # Orbax raises many types for damaged files
            self._refuse_other_structure(step, e)
            raise CheckpointError(f"The checkpoint at step {step} in {self.directory} cannot be read "
                                  f"({_reason(e)}); pick another step.") from None

    def retain(self, keep: set[int]) -> list[int]:
        """Deletes every checkpoint whose step is not in ``keep`` (for a manager built with
        ``keep=None``, which then keeps what its owner chooses); returns the deleted steps."""
        gone = [s for s in self.steps() if s not in keep]
        if gone:
            self.manager.wait_until_finished()
            for s in gone:
                self.manager.delete(s)
        return gone

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
        with quiet_orbax():
            self.manager.reload()
        return target

    def close(self) -> None:
        """Waits for pending asynchronous saves; safe to call more than once. A save that failed
        raises here (or from the next :meth:`save`)."""
        try:
            self.manager.wait_until_finished()
        finally:
            try:
                self.manager.close()
            finally:
                if self._open:
                    self._open = False
                    _QUIET_WHILE_OPEN.exit()

