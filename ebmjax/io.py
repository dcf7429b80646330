"""Files and signals: atomic writes, and SIGTERM / SIGINT turned into a flag long runs check.

Everything ebmjax writes that a later run trusts (configs, sample shards, in-flight chains, reports)
goes through a temporary file and a rename, so a kill leaves the old file or the new one, never half
of one. Long runs (training, sampling, restoration) install :class:`StopSignal` and stop at the next
point where their work is saved.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
from typing import Any

import numpy as np


def _tmp(path: pathlib.Path) -> pathlib.Path:
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Writes ``text`` to ``path`` so that readers see the old or the new file, never half of one."""
    path = pathlib.Path(path)
    tmp = _tmp(path)
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2) + "\n")


def savez_atomic(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """``np.savez`` to ``path`` through a temporary file (flushed to disk) and a rename."""
    path = pathlib.Path(path)
    tmp = _tmp(path)
    with tmp.open("wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


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
