"""Errors that reach the user as a message, not a traceback.

Anything raised as an ``EbmjaxError`` is caught by the command line (``ebmjax.main``), printed as
one clear message and turned into a non-zero exit code. Library users get an ordinary exception
whose text says what to do.
"""


class EbmjaxError(Exception):
    """Base class: a problem the user can fix; the message says how."""


class ConfigError(EbmjaxError):
    """A config field is unknown, missing or has a value that cannot work."""


class DataError(EbmjaxError):
    """A dataset is missing, unprepared, or holds values that cannot be trained on."""


class CheckpointError(EbmjaxError):
    """A workdir holds checkpoints that cannot be used for this run."""


class Interrupted(EbmjaxError):
    """SIGTERM or SIGINT arrived; the work done so far was saved and the run stopped cleanly."""


class Diverged(EbmjaxError):
    """Training went non-finite (or past a configured bound) for long enough to stop the run.

    ``step``: the step it was noticed at; ``good``: the last good checkpoint's step (None: none).
    """

    def __init__(self, message: str, step: int | None = None, good: int | None = None):
        super().__init__(message)
        self.step, self.good = step, good


class WorkdirBusy(EbmjaxError):
    """Another ebmjax process is running in the same workdir."""
