"""Files and signals: atomic writes, the workdir's lock, and SIGTERM / SIGINT turned into a flag
long runs check.

Everything ebmjax writes that a later run trusts (configs, sample shards, in-flight chains, reports)
goes through a temporary file and a rename, so a kill leaves the old file or the new one, never half
of one. Long runs (training, sampling, restoration) install :class:`StopSignal` and stop at the next
point where their work is saved. :class:`WorkdirLock` keeps a second run out of a workdir while one
runs there.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import os
import socket
import pathlib
import re
import signal
from collections.abc import Iterator
from typing import Any

import numpy as np


def _tmp(path: pathlib.Path) -> pathlib.Path:
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


@contextlib.contextmanager
def _removed_on_failure(tmp: pathlib.Path) -> Iterator[None]:
    """Removes the temporary file ``tmp`` if the block fails (a full disk: the half-written file would
    only take the space that freeing the disk is meant to give back)."""
    try:
        yield
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Writes ``text`` to ``path`` so that readers see the old or the new file, never half of one."""
    path = pathlib.Path(path)
    tmp = _tmp(path)
    with _removed_on_failure(tmp):
        tmp.write_text(text)
        os.replace(tmp, path)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2) + "\n")


def savez_atomic(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """``np.savez`` to ``path`` through a temporary file (flushed to disk) and a rename."""
    path = pathlib.Path(path)
    tmp = _tmp(path)
    with _removed_on_failure(tmp):
        with tmp.open("wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)


# errno values that mean "no room left": the disk (ENOSPC) or the user's quota (EDQUOT).
DISK_FULL_ERRNOS = tuple(e for e in (errno.ENOSPC, getattr(errno, "EDQUOT", None)) if e is not None)
# How TensorStore (under Orbax's checkpoints) words it: "... No space left on device [os_error_code='28']".
_DISK_FULL_TEXT = tuple(os.strerror(e) for e in DISK_FULL_ERRNOS)


def disk_full(error: BaseException) -> str | None:
    """If ``error`` (or an exception it was raised from or during) says the disk or the quota is full,
    a one-line description of the failed write (``"No space left on device: '<file>'"``); else None.

    Python's writers raise ``OSError`` with ``errno.ENOSPC``; Orbax's asynchronous checkpoint writes
    re-raise TensorStore's error as a ``ValueError`` whose text holds the operating system's words.
    """
    seen: set[int] = set()
    stack = [error]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in DISK_FULL_ERRNOS:
            where = f": {e.filename!r}" if e.filename else ""
            return f"{os.strerror(e.errno)}{where}"
        text = str(e)
        for words in _DISK_FULL_TEXT:
            if words in text:
                files = re.findall(r'Failed writing: "([^"]+)"', text)
                return f"{words}: {files[0]!r}" if files else words
        stack += [e.__cause__, e.__context__, *getattr(e, "exceptions", ())]
    return None


class StopSignal:
    """Turns SIGTERM and SIGINT into a flag (``received``: the signal number, or None) while active.

    A run checks the flag where its work is saved and stops there, so Ctrl-C, a cluster's time
    limit or a pre-emption cost nothing that is not redone by rerunning the command. Outside the
    main thread signals cannot be caught and the flag stays None.
    """

    def __init__(self):
        self.received: int | None = None
        self._old = {}

    def __enter__(self) -> "StopSignal":
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum, frame) -> None:
        self.received = signum

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


class WorkdirLock:
    """An exclusive lock on a workdir for as long as a run uses it (a context manager).

    The lock is an advisory ``flock`` on ``<workdir>/.ebmjax.lock``, which also records who holds it
    (process id, host, mode, start time), and is removed when the run ends (with the workdir, if the
    lock made it and nothing else was written there: a run refused for bad settings leaves nothing).
    The operating system drops the lock when its process ends, however it ends, so a run that was
    killed never blocks the next one. A second run on a locked
    workdir raises :class:`~ebmjax.errors.WorkdirBusy` naming the holder. On systems without
    ``fcntl`` (Windows) or filesystems that refuse locks, the run goes on unlocked.
    """

    NAME = ".ebmjax.lock"

    def __init__(self, workdir: str | os.PathLike, what: str = "a run"):
        self.path = pathlib.Path(workdir) / self.NAME
        self.what = what
        self._fd: int | None = None
        self._made_dir = False

    def __enter__(self) -> "WorkdirLock":
        from ebmjax.errors import WorkdirBusy

        try:
            import fcntl
        except ImportError:  # no advisory locks on this system
            return self
        self._made_dir = not self.path.parent.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 4096).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise WorkdirBusy(f"The workdir {self.path.parent} is in use by {holder}. Two runs in one workdir would "
                              "overwrite each other's checkpoints and samples: wait for that run to finish (or stop "
                              "it), or pass another --workdir.") from None
        except OSError:  # the filesystem does not lock (some network mounts): go on unlocked
            os.close(fd)
            return self
        started = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        os.ftruncate(fd, 0)
        os.write(fd, f"ebmjax {self.what} (pid {os.getpid()} on {socket.gethostname()}, started {started})".encode())
        self._fd = fd
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._fd is None:
            return
        self.path.unlink(missing_ok=True)  # while still held, so no other run locks the old file
        os.close(self._fd)  # closing the descriptor releases the lock
        self._fd = None
        if self._made_dir:
            try:
                self.path.parent.rmdir()  # only if the run wrote nothing there
            except OSError:
                pass
