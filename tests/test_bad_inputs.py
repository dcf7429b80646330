"""Bad input, faults and divergence: each mistake is one clear message (exit code 2, no traceback) and
nothing in the workdir is overwritten or deleted; a damaged checkpoint costs one warning paragraph.

Most mistakes are rows of ``MISTAKES`` (a table), run against copies of one tiny trained digits
workdir per training method (``RUNS``). The tests after the table need their own setup (patched
data, damaged files, long runs). (An unprepared tfds dataset: tests/test_cli.py.)
"""

import asyncio
import dataclasses
import errno
import gc
import hashlib
import json
import logging
import pathlib
import re
import shutil
import subprocess
import sys
import threading
import time
import traceback

import numpy as np
import pytest

import ebmjax.data
import ebmjax.io
from ebmjax import memory
from ebmjax.apps import main
from ebmjax.config import load_config
from ebmjax.data.source import ArraySource
from ebmjax.train import checkpoint, loop
from scale_helpers import (DIGITS, TINY, TINY_LABELLED, TINY_METHODS, TINY_SAMPLING, bitwise_equal, checkpoint_steps, cli_command,
                           final_state,
                           subprocess_env)

# One worker builds the trained workdirs of the table (a module fixture) rather than each worker its own copy.
pytestmark = pytest.mark.xdist_group("bad_inputs")


def run(workdir, *extra) -> int:
    return main.run(["--config", DIGITS, "--workdir", str(workdir), *TINY, *extra])


def snapshot(workdir: pathlib.Path) -> dict[str, str]:
    """Every file under ``workdir`` and a hash of its bytes."""
    return {str(p.relative_to(workdir)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(workdir.rglob("*")) if p.is_file()}


def final_params(workdir, steps: int):
    state = final_state(workdir, TINY + [f"--config.train.steps={steps}"])
    assert int(state.step) == steps
    return state


def assert_clear_error(capsys, *fragments):
    return assert_one_message(capsys.readouterr().err, fragments)


def assert_one_message(err: str, fragments) -> str:
    """``err`` is exactly one line, ``ebmjax: error: ...``, holding every fragment."""
    assert "Traceback" not in err, err
    assert err.startswith("ebmjax: error: "), err
    assert err.count("\n") == 1 and err.endswith("\n"), err  # one message, nothing else on stderr
    for f in fragments:
        assert f in err, (f, err)
    return err


# The tiny trained runs the table is checked against, one per training method (scale_helpers.TINY_METHODS)
# and two that learn from labels (TINY_LABELLED: JEM and a class-conditional multigrid): every row also
# runs against a copy of each method's workdir, so its carried state (replay buffers, persistent chains
# and their labels, growing networks: all part of its checkpoints) meets the same bar. Rows that only
# make sense for some methods name them in ``Mistake.methods``.
RUNS = {**TINY_METHODS, **TINY_LABELLED}
LABELLED = tuple(TINY_LABELLED)


@pytest.fixture(scope="module")
def trained_runs(tmp_path_factory):
    """``get(method)``: a workdir trained for 20 steps (checkpoints at 10 and 20) that also holds
    samples (samples/ with its shards), built once per module and method."""
    built = {}

    def get(method: str) -> pathlib.Path:
        if method not in built:
            wd = tmp_path_factory.mktemp(f"trained_{method}") / "run"
            assert run(wd, *RUNS[method], "--config.train.steps=20") == 0
            assert run(wd, *RUNS[method], "--config.train.steps=20", "--mode", "sample", *TINY_SAMPLING) == 0
            built[method] = wd
        return built[method]

    return get


@pytest.fixture(scope="module")
def trained(trained_runs):
    """The MDSM workdir (for the tests after the table, which are about MDSM's numbers)."""
    return trained_runs("mdsm")


def copy_of(trained, tmp_path) -> pathlib.Path:
    wd = tmp_path / "run"
    shutil.copytree(trained, wd)
    return wd


def digits_config_with(line: str) -> str:
    """configs/mdsm_digits.py as a user would copy it, with ``line`` added to get_config() (as line
    ``ADDED_LINE`` of the file)."""
    text = pathlib.Path(DIGITS).read_text()
    assert text.count("    return c\n") == 1
    return text.replace("    return c\n", f"    {line}\n    return c\n")


ADDED_LINE = pathlib.Path(DIGITS).read_text().splitlines().index("    return c") + 1


def own_data(change: str) -> str:
    """One line of a config file that trains on the user's own array (``x``: the bundled digits,
    (N, 8, 8, 1) in [0, 1]) after ``change``, registered as the dataset 'my_digits'."""
    return ("import numpy as np; from ebmjax import data; "
            "x = data.load_source({'name': 'digits'}, 'all').get(np.arange(64)); " + change + "; "
            "data.register(data.Dataset('my_digits', lambda split, o: data.ArraySource('my_digits', x), "
            "'my digits'), replace=True); c.data.name = 'my_digits'")


@dataclasses.dataclass(frozen=True)
class Mistake:
    """One mistake a user makes, and what they must be told.

    To add one, append a row to ``MISTAKES``: the command it reproduces, and fragments of the message
    that says what to do. The test runs it against a fresh copy of each trained workdir of ``RUNS`` and
    checks the exit code, that stderr is that one message (no traceback, no other output) and that
    no file of the workdir (or beside it) changed.

    id: the test id.
    args: command-line arguments, after ``--config``, ``--workdir``, TINY and the method's own.
    config: the text of the config file passed instead of configs/mdsm_digits.py (e.g.
        ``digits_config_with("c.trian = 3")``).
    workdir: ``copy`` (a copy of the trained workdir), ``file`` (an existing file) or ``under_file``
        (a path inside an existing file).
    says: fragments the message must hold.
    code: the exit code.
    subprocess: run ``python -m ebmjax.main`` as a user would (for mistakes that used to end in a raw
        traceback of the interpreter); otherwise ``main.run`` in this process.
    free_gb: pretend the machine has this much free memory (so that memory rows say the same on every
        machine; in-process only).
    methods: the methods of ``RUNS`` the row applies to (None: all).
    """

    id: str
    args: tuple[str, ...] = ()
    config: str | None = None
    workdir: str = "copy"
    says: tuple[str, ...] = ()
    code: int = 2
    subprocess: bool = False
    free_gb: float | None = None
    methods: tuple[str, ...] | None = None


# Rows refused while the config is read or the workdir is checked, before any method is built: the
# same for every method, so checked against one workdir.
EARLY = ("mdsm",)

MISTAKES = [
    # Config keys, on the command line and in config files (issue 11, case 2), and broken files (case 4).
    Mistake("unknown-key", ("--config.train.stepz=3",), says=('Did you mean "train.steps"',), methods=EARLY),
    Mistake("unknown-key-other-group", ("--config.dist.initialise=yes",), says=('Did you mean "dist.initialize"',), methods=EARLY),
    Mistake("config-file-typo-top-level", config=digits_config_with("c.trian = 3"),
            says=("sets 'trian', which is not a config field", 'Did you mean "train"'), methods=EARLY),
    Mistake("config-file-typo-nested", config=digits_config_with("c.model.widht = 4"),
            says=("sets 'model.widht', which is not a config field", 'Did you mean "model.width"'), methods=EARLY),
    Mistake("config-file-group-replaced", config=digits_config_with("c.sample = 3"),
            says=(f"failed at line {ADDED_LINE}: TypeError: Could not override field 'sample'",), methods=EARLY),
    Mistake("config-file-syntax-error", config=digits_config_with("c.train.steps = = 3"), subprocess=True,
            says=(f"is not valid Python: invalid syntax (line {ADDED_LINE})", "Fix it and rerun"), methods=EARLY),
    Mistake("config-file-raises", config=digits_config_with("c.train.steps = 1 // 0"),
            says=(f"failed at line {ADDED_LINE}: ZeroDivisionError", "Fix it and rerun"), methods=EARLY),
    Mistake("config-file-without-get_config", config="c = 3\n", says=("has no get_config() function",), methods=EARLY),
    # Values (case 5).
    Mistake("lr-nan", ("--config.train.lr=nan",),
            says=("train.lr must be a finite number > 0 (it is the learning rate); got nan",), methods=EARLY),
    Mistake("lr-negative", ("--config.train.lr=-1e-3",), says=("train.lr must be a finite number > 0 (it is the learning rate); got -0.001",), methods=EARLY),
    Mistake("lr-end-negative", ("--config.train.lr_end=-1",), says=("train.lr_end", "a finite number >= 0"), methods=EARLY),
    Mistake("adam-b2-one", ("--config.train.b2=1",), says=("train.b2 must be a number in [0, 1) (it is Adam's second-moment decay)",), methods=EARLY),
    Mistake("sigma0-zero", ("--config.mdsm.sigma0=0",), says=("mdsm.sigma0 must be a finite number > 0 (it is the width of the smoothing kernel); got 0.0",), methods=EARLY),
    Mistake("noise-levels-swapped", ("--config.mdsm.sigma_low=5",),
            says=("mdsm.sigma_low = 5.0 is above mdsm.sigma_high = 3.0",), methods=EARLY),
    Mistake("step-size-inf", ("--mode", "sample", "--config.mdsm.step_size=inf"),
            says=("mdsm.step_size must be a finite number > 0 (it is the Langevin step size); got inf",), methods=EARLY),
    Mistake("t-min-above-t-max", ("--mode", "sample", "--config.mdsm.t_min=200"),
            says=("mdsm.t_min = 200.0 is above mdsm.t_max = 100.0",), methods=EARLY),
    Mistake("int-given-a-word", ("--config.train.steps=many",),
            says=("expected a value of type int", "e.g. --config.train.steps=3000"), methods=EARLY),
    Mistake("tuple-of-the-wrong-items", ("--config.model.hidden=wide",),
            says=("expected a tuple of int", "--config.model.hidden=128,128 or --config.model.hidden='(128, 128)'"), methods=EARLY),
    Mistake("metric-misspelt-as-a-bare-word", ("--mode", "eval", "--config.eval.metrics=fdi"),
            says=("Unknown eval.metrics ['fdi']",), methods=EARLY),
    Mistake("sample-seed-negative", ("--mode", "sample", "--config.sample.seed=-1"),
            says=("sample.seed must be None", "[0, 2**32)"), methods=EARLY),
    Mistake("restore-box-too-large", ("--mode", "inpaint", "--config.restore.box_fraction=1.5"),
            says=("restore.box_fraction must be a number strictly between 0 and 1", "got 1.5"), methods=EARLY),
    Mistake("dist-bad-choice", ("--config.dist.initialize=maybe",), says=("dist.initialize must be one of auto, yes, no",), methods=EARLY),
    Mistake("dist-cpu-devices-word", ("--config.dist.cpu_devices=two",),
            says=("dist.cpu_devices must be auto or a whole number >= 1", "got 'two'"), methods=EARLY),
    Mistake("dist-coordinator-alone", ("--config.dist.coordinator_address=localhost:1234",),
            says=("set --config.dist.num_processes and --config.dist.process_id",), methods=EARLY),
    # The workdir and its checkpoints (cases 4 and 6).
    *[Mistake(f"workdir-is-a-file-{mode}", ("--mode", mode), workdir="file", subprocess=mode == "train",
              says=("is a file, not a directory", "Pass a directory"), methods=EARLY) for mode in sorted(main.MODES)],
    Mistake("workdir-inside-a-file", workdir="under_file", says=("cannot be created", "is a file, not a directory"), methods=EARLY),
    Mistake("steps-past-the-checkpoint", ("--config.train.steps=10",), subprocess=True,
            says=("is at step 20, past train.steps=10", "Use --mode sample", "raise --config.train.steps above 20",
                  "new --workdir")),
    Mistake("another-experiment", ("--config.train.steps=30", "--config.model.width=8"),
            says=("holds checkpoints of another experiment", "model.width: 4 in the workdir, 8 now"),
            methods=("mdsm", "ml", "coop")),
    Mistake("another-experiment-cfebm", ("--config.train.steps=30", "--config.cfebm.widths=8,8,8"),
            says=("holds checkpoints of another experiment", "cfebm.widths: [4, 4, 4] in the workdir, [8, 8, 8] now"),
            methods=("cfebm",)),
    Mistake("another-experiment-coop", ("--config.train.steps=30", "--config.coop.latent_dim=8"),
            says=("holds checkpoints of another experiment", "coop.latent_dim: 4 in the workdir, 8 now"),
            methods=("coop",)),
    Mistake("another-experiment-multigrid", ("--config.train.steps=30", "--config.multigrid.widths=8,8"),
            says=("holds checkpoints of another experiment", "multigrid.widths: [4, 8] in the workdir, [8, 8] now"),
            methods=("multigrid",)),
    Mistake("another-experiment-gridnet", ("--mode", "sample", "--config.model.strided_layers=2"),
            says=("holds checkpoints of another experiment", "model.strided_layers: 3 in the workdir, 2 now"),
            methods=("mdsm", "ml", "coop")),
    Mistake("another-experiment-sample", ("--mode", "sample", "--config.data.pad=4"),
            says=("data.pad: 0 in the workdir, 4 now",), methods=("mdsm", "ml", "coop")),
    # (Multigrid's grids are checked against the image size first: data.pad=4 is the row below's error.)
    Mistake("another-experiment-sample-multigrid", ("--mode", "sample", "--config.multigrid.coarse_buffer=32"),
            says=("multigrid.coarse_buffer: 64 in the workdir, 32 now",), methods=("multigrid",)),
    Mistake("another-experiment-sample-generator", ("--mode", "sample", "--config.multigrid.generator=autoencode"),
            says=("multigrid.generator: 'teach' in the workdir, 'autoencode' now",), methods=("multigrid",)),
    # Settings that shape the saved state but not the parameters: the checkpoints are intact, so they
    # stay where they are (a mismatch is not damage) and the message names the setting.
    Mistake("moving-average-turned-on-when-resuming", ("--config.train.steps=30", "--config.train.ema_decay=0.9"),
            says=("written without a moving average of the parameters (train.ema_decay = 0)",
                  "resume with the train.ema_decay that wrote it", "It is intact and left where it is")),
    Mistake("image-size-does-not-fit-the-model", ("--config.data.pad=1", "--config.train.steps=30"),
            says=("shape (10, 10, 1)", "data.pad=1", "multiples of 8"), methods=("mdsm", "ml")),
    Mistake("image-size-does-not-fit-the-stages", ("--config.data.pad=1", "--config.train.steps=30"),
            says=("cfebm.resolutions must end at the image side",), methods=("cfebm",)),
    Mistake("image-size-does-not-fit-the-grids", ("--config.data.pad=1", "--config.train.steps=30"),
            says=("multigrid.grids must end at the image side 10",), methods=("multigrid",)),
    Mistake("batch-larger-than-the-dataset", ("--config.train.batch_size=2048", "--config.train.steps=30"),
            says=("train.batch_size = 2048 is larger than the dataset 'digits' (1442 examples)",)),
    # Sampling (case 1): the command, on a machine with 8 GB free.
    Mistake("sampling-batch-too-large-for-memory",
            ("--mode", "sample", "--config.sample.n=3000000", "--config.sample.batch_size=100000000"), free_gb=8,
            says=("Sampling 3000000 chains at once", "GB of host memory", "8.0 GB are free", "Nothing was written",
                  "Lower --config.sample.batch_size to")),
    Mistake("sampling-n-zero", ("--mode", "sample", "--config.sample.n=0"), says=("sample.n must be >= 1",)),
    # Classes (issue 24): a class the model does not have, a class asked of a model without classes,
    # rows of one class per batch that a batch cannot hold, and a workdir of another class count.
    Mistake("sample-label-out-of-range", ("--mode", "sample", "--config.sample.label=12"),
            says=("sample.label must be a class 0..9, or -1 for every class in turn", "got 12"), methods=LABELLED),
    Mistake("sample-label-without-classes", ("--mode", "sample", "--config.sample.label=3"),
            says=("sample.label = 3 needs a class-conditional model", "Drop --config.sample.label"), methods=EARLY),
    Mistake("sample-label-rows-across-batches", ("--mode", "sample", "--config.sample.label=-1", "--config.sample.n=300",
                                                 "--config.sample.batch_size=150"),
            says=("sample.batch_size must be a multiple of 100", "got 150"), methods=LABELLED),
    Mistake("classes-fewer-than-the-labels", ("--config.model.classes=5", "--config.train.steps=30"),
            says=("Dataset 'digits' has labels [5, 6, 7, 8, 9] outside 0..4", "set model.classes"), methods=LABELLED),
    Mistake("another-experiment-classes", ("--mode", "sample", "--config.model.classes=12"),
            says=("model.classes: 10 in the workdir, 12 now",), methods=LABELLED),
    # Broken data (issue 25): a user's own array, registered in their config file, refused before
    # anything trains on it, in every mode that reads it.
    *[Mistake(f"broken-data-{what}-{mode}", ("--mode", mode), config=digits_config_with(own_data(change)),
              says=("Dataset 'my_digits' (split 'train')", *says), methods=EARLY)
      for what, change, says in (
          ("nan", "x[7, 3, 3, 0] = np.nan", ("holds non-finite values (NaN or infinity) in example 7", "Clean the data")),
          ("out-of-range", "x = x * 255", ("holds values outside its range [0, 1]", "span [0, 255]",
                                           "rescale the data when preparing it")),
          ("rgba", "x = np.concatenate([x, x, x, np.ones_like(x)], axis=-1)",
           ("gives images with 4 channels (shape (8, 8, 4))", "Drop the alpha channel (x[..., :3])")),
          ("no-channel-axis", "x = x[..., 0]",
           ("gives examples of shape (8, 8)", "must be (height, width, channels)", "x[..., None]")))
      for mode in ("train", "sample")],
]


# The rows of the two-network, coarse-to-fine and multigrid methods train their own workdirs (about a
# minute each on 2 cores): part of the full suite, not of the quick pass (the checks every method
# shares keep their mdsm and ml rows there).
SLOW_RUNS = ("coop", "cfebm", "multigrid", *LABELLED)


@pytest.mark.parametrize("method,mistake", [
    pytest.param(m, x, marks=[pytest.mark.slow] if m in SLOW_RUNS else [])
    for m in RUNS for x in MISTAKES if x.methods is None or m in x.methods],
    ids=lambda v: v if isinstance(v, str) else v.id)
@pytest.mark.slow  # about 108 s on 2 CPU cores; the whole suite (CI) runs it
def test_mistake(method, mistake, trained_runs, tmp_path, capsys, monkeypatch):
    wd = copy_of(trained_runs(method), tmp_path)
    workdir = wd
    if mistake.workdir in ("file", "under_file"):
        notes = tmp_path / "notes.txt"
        notes.write_text("not a workdir\n")
        workdir = notes if mistake.workdir == "file" else notes / "run"
    config = DIGITS
    if mistake.config is not None:
        config = str(tmp_path / "my_config.py")
        pathlib.Path(config).write_text(mistake.config)
    args = ["--config", config, "--workdir", str(workdir), *TINY, *RUNS[method], *mistake.args]
    before = snapshot(tmp_path)
    if mistake.subprocess:
        assert mistake.free_gb is None
        proc = subprocess.run([sys.executable, "-m", "ebmjax.main", *args], env=subprocess_env(),
                              capture_output=True, text=True, timeout=300)
        code, err = proc.returncode, proc.stderr
    else:
        if mistake.free_gb is not None:
            monkeypatch.setattr(memory, "available_memory_bytes",
                                lambda mesh: (int(mistake.free_gb * 1e9), "host memory"))
        code = main.run(args)
        err = capsys.readouterr().err
    assert code == mistake.code, err
    assert_one_message(err, mistake.says)
    assert snapshot(tmp_path) == before  # config.json, checkpoints, samples, shards: nothing changed


@pytest.mark.slow  # about 25 s on 2 CPU cores; the whole suite (CI) runs it
def test_the_table_covers_every_mode_and_the_workdir_holds_samples(trained):
    assert {f"workdir-is-a-file-{m}" for m in main.MODES} <= {x.id for x in MISTAKES}
    assert len({x.id for x in MISTAKES}) == len(MISTAKES)
    assert (trained / "samples" / "samples.npz").exists() and list((trained / "samples" / "shards").rglob("shard_*"))


# ------------------------------------------------------------------------------------------------
# Beyond the table.


@pytest.mark.slow  # about 35 s on 2 CPU cores; the whole suite (CI) runs it
def test_no_progress_logs_one_line_per_logging_window(trained, tmp_path, caplog):
    """Issue 11, case 7: with --no-progress (CI logs, batch jobs) training is not silent: one log
    line per logging window. With the progress bar, the bar shows them instead."""
    wd = copy_of(trained, tmp_path)
    proc = subprocess.run(cli_command(wd, *TINY, "--config.train.steps=40"), env=subprocess_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = re.findall(r"^\d\d:\d\d:\d\d INFO (step \d+/40: loss .*)$", proc.stderr, flags=re.M)
    assert [line.split(":")[0] for line in lines] == ["step 30/40", "step 40/40"], proc.stderr
    assert all("steps_per_s" in line and "lr" in line and line.endswith("skipped 0") for line in lines)
    assert "it/s]" not in proc.stderr and "step/s]" not in proc.stderr  # no progress bar

    wd = copy_of(trained, tmp_path / "with_bar")
    with caplog.at_level(logging.INFO):
        assert main.run(["--config", DIGITS, "--workdir", str(wd), *[a for a in TINY if a != "--no-progress"],
                         "--config.train.steps=40"]) == 0
    assert not [r for r in caplog.records if r.getMessage().startswith("step ")]


def test_channels_that_do_not_fit_the_checkpoint(trained, tmp_path, capsys, monkeypatch):
    """The same data name, but three channels: the saved parameters' shapes give it away."""
    wd = copy_of(trained, tmp_path)
    before = snapshot(wd)
    real = ebmjax.data.load_source

    def rgb_digits(data_cfg, split):
        src = real(data_cfg, split)
        rgb = np.repeat(src.get(np.arange(len(src))), 3, axis=-1)
        return ArraySource(src.name, rgb, src.labels(np.arange(len(src))), split=split)

    monkeypatch.setattr(ebmjax.data, "load_source", rgb_digits)
    assert run(wd, "--config.train.steps=30") == 2
    assert_clear_error(capsys, "holds parameters of another shape", "(3, 3, 1, 4) in the checkpoint, (3, 3, 3, 4) now",
                       "Use a new --workdir")
    assert snapshot(wd) == before


def test_corrupt_latest_checkpoint_falls_back_and_resumes_exactly(trained, tmp_path, caplog):
    wd = copy_of(trained, tmp_path)
    for f in (wd / "checkpoints" / "20").rglob("*"):
        if f.is_file() and f.parent.name == "d":  # the array data files
            f.write_bytes(b"not a checkpoint")
    with caplog.at_level(logging.WARNING):
        assert run(wd, "--config.train.steps=20") == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings  # one paragraph
    assert "Checkpoint at step 20" in warnings[0] and "cannot be read" in warnings[0]
    assert "resuming from the checkpoint at step 10 instead" in warnings[0]
    assert (wd / "checkpoints_unreadable" / "20").is_dir()  # kept for inspection, not deleted
    # Steps 10..20 were redone from the checkpoint at 10 and give the very same parameters.
    assert bitwise_equal(final_params(trained, 20), final_params(wd, 20))
    losses = lambda w: [(r["step"], r["loss"]) for r in map(json.loads, (w / "metrics.jsonl").read_text().splitlines())]  # noqa: E731
    assert losses(wd) == losses(trained)


@pytest.mark.slow  # about 23 s on 2 CPU cores; the whole suite (CI) runs it
def test_truncated_checkpoint_files_cost_one_paragraph_on_stderr(trained, tmp_path):
    """Issue 11, case 3, as the user did it: every file under checkpoints/20/ cut to half its length.
    Orbax used to log errors for the damaged metadata, and TensorStore a traceback for every read
    still in flight; now stderr holds the one warning and the run's ordinary log lines."""
    wd = copy_of(trained, tmp_path)
    for f in (wd / "checkpoints" / "20").rglob("*"):
        if f.is_file():
            f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    # On the devices the workdir was trained on (in this process: 1 or 2, depending on whether JAX had
    # started before): another count would add a line saying so.
    devices = json.loads((wd / "devices.json").read_text())["devices"]
    proc = subprocess.run(cli_command(wd, *TINY, "--config.train.steps=20", f"--config.dist.cpu_devices={devices}"),
                          env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    warning = [line for line in lines if " INFO " not in line]
    assert len(warning) == 1, proc.stderr
    assert re.match(r"^\d\d:\d\d:\d\d WARNING Checkpoint at step 20 in .* cannot be read \(.+\)\. Moved to "
                    r".*checkpoints_unreadable \(kept, not deleted\); resuming from the checkpoint at step 10 instead",
                    warning[0]), warning[0]
    info = [line.split(" INFO ", 1)[1] for line in lines if " INFO " in line]
    assert info == [f"Resuming from the checkpoint at step 10 in {wd / 'checkpoints'}", info[1], info[2]], info
    assert re.fullmatch(r"Training on \d+ CPU devices?, \d+ examples each per step\.", info[1]), info
    assert info[2].startswith("step 20/20: loss")
    assert (wd / "checkpoints_unreadable" / "20").is_dir() and (wd / "checkpoints" / "20").is_dir()


def _orbax_like_failed_read(reported: list[int], threads: list[threading.Thread], n_reads: int,
                            delay: float) -> None:
    """What Orbax and TensorStore do with a damaged checkpoint, in miniature: reads run as tasks on a
    fresh event loop, each finished by a worker thread that reports back with call_soon_threadsafe
    (printing the traceback if that fails, as TensorStore does). The first read fails at once, the
    loop is closed while the others are still in flight, and a leftover task fails unretrieved.
    ``reported`` gets the reads that reported back (later, from the ``threads``)."""

    def worker(loop, future, i):
        time.sleep(delay)
        try:  # the report is recorded when the loop takes it
            loop.call_soon_threadsafe(lambda: (reported.append(i), future.set_result(i)))
        except RuntimeError:
            traceback.print_exc()

    async def read(i):
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        threads.append(threading.Thread(target=worker, args=(loop, future, i), daemon=True))
        threads[-1].start()
        return await future

    async def damaged():
        raise ValueError("DATA_LOSS: the file is cut short")

    async def restore():
        asyncio.ensure_future(damaged())  # never awaited: "Task exception was never retrieved"
        logging.getLogger("absl").error("Failed to read the checkpoint's metadata")
        await asyncio.gather(damaged(), *(read(i) for i in range(n_reads)))

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(restore())
    finally:
        loop.close()


def test_quiet_orbax_lets_reads_in_flight_end_quietly(capsys, caplog):
    """The noise of a damaged checkpoint, reproduced without its timing: without quiet_orbax every
    read in flight prints a traceback, and asyncio and absl log errors; with it, nothing, because the
    loop stays open until every read has reported back."""
    threads = []
    with caplog.at_level(logging.INFO):
        with pytest.raises(ValueError, match="DATA_LOSS"):
            _orbax_like_failed_read([], threads, 5, 0.2)
        for t in threads:
            t.join(timeout=30)
        gc.collect()
    err = capsys.readouterr().err
    assert err.count("RuntimeError: Event loop is closed") == 5  # the noise is real
    assert "Failed to read" in caplog.text and "never retrieved" in caplog.text
    caplog.clear()

    absl_level = logging.getLogger("absl").level
    reported, threads = [], []
    with caplog.at_level(logging.INFO):
        with pytest.raises(ValueError, match="DATA_LOSS"):
            with checkpoint.quiet_orbax():
                _orbax_like_failed_read(reported, threads, 5, 0.2)
        assert sorted(reported) == list(range(5))  # every read ended before quiet_orbax returned
        for t in threads:
            t.join(timeout=30)
        gc.collect()
    assert capsys.readouterr().err == ""
    assert caplog.text == ""
    assert logging.getLogger("absl").level == absl_level  # put back
    logging.getLogger("absl").error("heard again")
    assert "heard again" in caplog.text


def test_non_finite_values_in_the_data(tmp_path, capsys, monkeypatch):
    real = ebmjax.data.load_source
    n_train = len(real(load_config(DIGITS).data, "train"))
    bad = int(loop.batch_indices(0, 2, n_train, 8)[3])  # an example of the batch of step 2

    def with_nan(data_cfg, split):
        src = real(data_cfg, split)
        x = src.get(np.arange(len(src)))
        x[bad, 4, 4, 0] = np.nan
        return ArraySource(src.name, x, src.labels(np.arange(len(src))), split=split)

    monkeypatch.setattr(ebmjax.data, "load_source", with_nan)
    assert run(tmp_path, "--config.train.steps=20") == 2
    assert_clear_error(capsys, "non-finite values", "batch of step 2", f"examples [{bad}]", "Clean the data")
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()]


@pytest.mark.slow  # about 13 s on 2 CPU cores; the whole suite (CI) runs it
def test_persistent_divergence_names_the_last_good_checkpoint(trained, tmp_path, capsys):
    wd = copy_of(trained, tmp_path)
    # lr 1e6: the first update blows the parameters up; every later loss is non-finite and skipped.
    assert run(wd, "--config.train.steps=40", "--config.train.lr=1e6", "--config.train.checkpoint_every=1") == 2
    assert_clear_error(capsys, "Training diverged", "since step 21", "The last good checkpoint is step 20",
                       "Checkpoints [21]", "Lower train.lr")
    records = [json.loads(line) for line in (wd / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["skipped"], r["skipped_in_window"]) for r in records[2:]] == [(30, 9, 9), (40, 19, 10)]
    assert sorted(int(p.name) for p in (wd / "checkpoints").iterdir() if p.name.isdigit()) == [10, 20]
    assert (wd / "checkpoints_diverged" / "21").is_dir()
    # What a rerun resumes from: the good state of step 20, as trained.
    assert bitwise_equal(final_params(wd, 20), final_params(trained, 20))


def test_a_non_finite_gradient_skips_the_update_and_counts_it():
    import jax.numpy as jnp
    import optax

    from ebmjax.train.state import apply_if_finite, create

    opt = optax.adam(0.1)
    state = create({"w": jnp.ones(3)}, opt, carry={"buffer": jnp.zeros(2)})
    good = apply_if_finite(state, jnp.float32(1.0), {"w": jnp.ones(3)}, {"buffer": jnp.ones(2)}, opt)
    assert int(good.step) == 1 and int(good.skipped) == 0 and not np.allclose(good.params["w"], 1.0)
    assert np.allclose(good.carry["buffer"], 1.0)  # the method's new carried state is taken with the update
    for loss, grad, carry in ((jnp.float32(np.nan), jnp.ones(3), jnp.full(2, 2.0)),
                              (jnp.float32(1.0), jnp.array([1.0, np.inf, 0.0]), jnp.full(2, 2.0)),
                              (jnp.float32(1.0), jnp.ones(3), jnp.array([2.0, np.nan]))):
        bad = apply_if_finite(good, loss, {"w": grad}, {"buffer": carry}, opt)
        assert int(bad.step) == 2 and int(bad.skipped) == 1
        assert bitwise_equal((bad.params, bad.opt_state, bad.carry), (good.params, good.opt_state, good.carry))


@pytest.mark.slow  # three short training runs (~35 s on 2 cores)
def test_runaway_energies_stop_the_run_at_ml_energy_bound(trained_runs, tmp_path, capsys):
    """Maximum-likelihood divergence as users meet it: the energies run away while staying finite.
    With lr 10 the first update (step 21) sends them far beyond ml.energy_bound = 100; every later
    update is skipped, and a whole window of them stops the run with the last good checkpoint
    named. Nothing here is NaN: the bound, not the finiteness check, stops it."""
    trained = trained_runs("ml")
    wd = copy_of(trained, tmp_path)
    assert run(wd, *RUNS["ml"], "--config.train.steps=40", "--config.train.lr=10", "--config.ml.energy_bound=100",
               "--config.train.checkpoint_every=1") == 2
    assert_clear_error(capsys, "Training diverged", "or ml.energy_bound exceeded", "since step 21",
                       "The last good checkpoint is step 20", "Checkpoints [21]")
    records = [json.loads(line) for line in (wd / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["skipped"], r["skipped_in_window"]) for r in records[2:]] == [(30, 9, 9), (40, 19, 10)]
    last = records[-1]
    assert np.isfinite(last["loss"]) and np.isfinite(last["energy_data"]) and np.isfinite(last["energy_model"])
    assert max(abs(last["energy_data"]), abs(last["energy_model"])) > 100
    assert max(abs(records[1]["energy_data"]), abs(records[1]["energy_model"])) < 100  # the trained run was within
    assert sorted(int(p.name) for p in (wd / "checkpoints").iterdir() if p.name.isdigit()) == [10, 20]
    assert (wd / "checkpoints_diverged" / "21").is_dir()
    # The same run with the bound out of reach does not stop: the runaway energies stay finite.
    wd2 = copy_of(trained, tmp_path / "unbounded")
    assert run(wd2, *RUNS["ml"], "--config.train.steps=40", "--config.train.lr=10", "--config.ml.energy_bound=1e30") == 0
    capsys.readouterr()
    unbounded = [json.loads(line) for line in (wd2 / "metrics.jsonl").read_text().splitlines()][-1]
    assert unbounded["skipped"] == 0 and abs(unbounded["energy_data"]) > 100
    # What a rerun resumes from: the good state of step 20, buffer included, as trained.
    args = TINY + list(RUNS["ml"]) + ["--config.train.steps=20"]
    assert bitwise_equal(final_state(wd, args), final_state(trained, args))


# ------------------------------------------------------------------------------------------------
# A full disk (issue 25): the error is injected at the writer, as the operating system or TensorStore
# raises it (the checkpoint's text is TensorStore's, as a run on a 3 MB tmpfs printed it). Each row:
# the mode, the write that fails, what the message must say. After the failure the files written
# before are unchanged, no half-written file is left, and the same command, once there is space,
# ends exactly as an unbroken run.

def _tensorstore_disk_full(path: pathlib.Path) -> ValueError:
    return ValueError(
        f'RESOURCE_EXHAUSTED: Error writing "params.energy.conv0.kernel/0" in OCDBT database at local file "{path}/": '
        f'Failed writing: "{path}/d/7463f6481776e052fb64c3505f79db94": Failed to write 22457 bytes to file 15: '
        "No space left on device [os_error_code='28']")


def _fail_checkpoint_at(step: int):
    """Checkpoints.save raising at ``step`` as Orbax does when TensorStore cannot write."""
    def inject(monkeypatch):
        real = checkpoint.Checkpoints.save

        def save(self, state, *, force=False):
            if int(state.step) == step:
                raise _tensorstore_disk_full(self.directory / f"{step}.orbax-checkpoint-tmp" / "default")
            return real(self, state, force=force)

        monkeypatch.setattr(checkpoint.Checkpoints, "save", save)
    return inject


def _fail_npz_write(nth: int):
    """The ``nth`` np.savez (a sample shard) writes part of its bytes, then the disk is full."""
    def inject(monkeypatch):
        real, calls = np.savez, []

        def savez(file, *args, **kwargs):
            calls.append(file)
            if len(calls) == nth:
                file.write(b"PK\x03\x04 half a shard")
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(file, *args, **kwargs)

        monkeypatch.setattr(np, "savez", savez)
    return inject


def _fail_text_write(prefix: str):
    """Writing a text file whose (temporary) name starts with ``prefix`` writes part of it, then the
    disk is full."""
    def inject(monkeypatch):
        real = pathlib.Path.write_text

        def write_text(self, text, *args, **kwargs):
            if self.name.startswith(prefix):
                real(self, text[: len(text) // 2], *args, **kwargs)
                raise OSError(errno.ENOSPC, "No space left on device", str(self))
            return real(self, text, *args, **kwargs)

        monkeypatch.setattr(pathlib.Path, "write_text", write_text)
    return inject


# (The trained workdir holds one shard of samples/ already; the rows sample into samples_seed5/.)
FULL_DISK = {
    "checkpoint": (("--config.train.steps=40",), _fail_checkpoint_at(30),
                   ("The disk is full (No space left on device: '", "30.orbax-checkpoint-tmp",
                    "while --mode train was writing to", "The checkpoint at step 20 in", "is whole")),
    "sample-shard": (("--config.train.steps=20", "--mode", "sample", *TINY_SAMPLING, "--config.sample.n=12",
                      "--config.sample.seed=5"), _fail_npz_write(2),
                     ("The disk is full (No space left on device)", "while --mode sample", "is whole, and so are the 2 "
                      "finished sample shards in")),
    "sample-report": (("--config.train.steps=20", "--mode", "sample", *TINY_SAMPLING, "--config.sample.n=12",
                       "--config.sample.seed=5"), _fail_text_write(".summary.json.tmp"),
                      ("The disk is full (No space left on device: '", ".summary.json.tmp", "while --mode sample",
                       "is whole, and so are the 4 finished sample shards in")),
}


@pytest.mark.slow  # about 20 s each on 2 CPU cores; the whole suite (CI) runs them
@pytest.mark.parametrize("writer", sorted(FULL_DISK))
def test_a_full_disk_is_one_message_keeps_what_was_written_and_the_rerun_ends_as_an_unbroken_one(
        writer, trained, tmp_path, capsys, monkeypatch):
    args, inject, says = FULL_DISK[writer]
    wd = copy_of(trained, tmp_path)
    before = snapshot(wd)
    with monkeypatch.context() as m:
        inject(m)
        assert run(wd, *args) == 2
    err = assert_clear_error(capsys, *says, f"df -h {wd}", "run the same command again: it goes on from there")
    assert "Traceback" not in err
    after = snapshot(wd)
    # The checkpoints and samples written before are whole and untouched.
    changed = [f for f in before if f.startswith(("checkpoints/", "samples")) and after.get(f) != before[f]]
    assert not changed, changed
    assert not [f for f in after if ".tmp" in pathlib.Path(f).name]  # no half-written file left
    # Space is back: the same command finishes, as a run that never met a full disk does.
    assert run(wd, *args) == 0
    unbroken = copy_of(trained, tmp_path / "unbroken")
    assert run(unbroken, *args) == 0
    capsys.readouterr()
    if writer == "checkpoint":
        assert bitwise_equal(final_params(wd, 40), final_params(unbroken, 40))
        assert checkpoint_steps(wd) == checkpoint_steps(unbroken) == [20, 30, 40]
    else:
        a, b = (np.load(w / "samples_seed5" / "samples.npz")["images"] for w in (wd, unbroken))
        np.testing.assert_array_equal(a, b)
        summary = json.loads((wd / "samples_seed5" / "summary.json").read_text())
        # The shards written before the failure are not drawn again.
        assert (summary["batches_reused"], summary["batches_run"]) == {"sample-shard": (1, 2), "sample-report": (3, 0)}[writer]


# ------------------------------------------------------------------------------------------------
# Runs that recover by themselves (issue 24): train.recover = N.

def _final(workdir):
    return final_state(workdir, TINY + list(RUNS["ml"]) + ["--config.train.steps=40"])


@pytest.mark.slow  # five short training runs (about 60 s on 2 cores); CI runs it
def test_a_diverged_run_recovers_by_itself_and_a_kill_during_the_recovery_changes_nothing(
        trained_runs, tmp_path, capsys, caplog, monkeypatch):
    """The runaway run of the test above (lr 10 from step 21: every update after it skipped, the whole
    window up to step 40 included) with train.recover = 1: it restores checkpoint 20, scales the learning rate by
    recover_lr = 1e-4, draws a fresh data order and chains, and trains to the end; the recovery is
    logged and recorded. Killed while recovering (before and after the record is written) and rerun,
    it ends bitwise the same. With recover_lr = 1 the recovered run diverges again and stops, saying
    that it used its one recovery."""
    trained = trained_runs("ml")
    args = (*RUNS["ml"], "--config.train.steps=40", "--config.train.lr=10", "--config.ml.energy_bound=100",
            "--config.train.recover=1", "--config.train.recover_lr=1e-4")
    wd = copy_of(trained, tmp_path)
    with caplog.at_level(logging.WARNING):
        assert run(wd, *args) == 0
    capsys.readouterr()
    (record,) = json.loads((wd / "recoveries.json").read_text())
    assert (record["recovery"], record["diverged_at_step"], record["resumed_from_step"]) == (1, 40, 20)
    assert record["lr_scale"] == pytest.approx(1e-4) and record["seed"] != 0 and "Training diverged" in record["reason"]
    said = [r.getMessage() for r in caplog.records if "Recovery 1 of 1" in r.getMessage()]
    assert len(said) == 1 and "resuming from the checkpoint at step 20 with every learning rate x0.0001" in said[0]
    a = _final(wd)
    assert int(a.step) == 40 and int(a.skipped) == 0
    metrics = [json.loads(line) for line in (wd / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [10, 20, 30, 40] and metrics[-1]["skipped_in_window"] == 0
    assert metrics[-1]["lr"] < 10 * 1e-4  # the scaled schedule
    # Not the parameters of checkpoint 20: training went on after the recovery.
    assert not bitwise_equal(a.params, final_state(trained, TINY + list(RUNS["ml"]) + ["--config.train.steps=20"]).params)

    # A kill while recovering, before and after the record is written: the rerun ends the same.
    real = ebmjax.io.write_json_atomic
    for when in ("before", "after"):
        wd2 = copy_of(trained, tmp_path / when)

        def killed(path, obj, when=when):
            if pathlib.Path(path).name == "recoveries.json":
                if when == "after":
                    real(path, obj)
                raise SystemExit(f"killed {when} writing the record")
            return real(path, obj)

        with monkeypatch.context() as m:
            m.setattr(ebmjax.io, "write_json_atomic", killed)
            with pytest.raises(SystemExit):
                run(wd2, *args)
        assert (wd2 / "recoveries.json").exists() == (when == "after")
        assert run(wd2, *args) == 0
        capsys.readouterr()
        assert bitwise_equal(_final(wd2), a), when
        (again,) = json.loads((wd2 / "recoveries.json").read_text())
        again["reason"] = again["reason"].replace(str(wd2), str(wd))  # it names the workdir
        assert {k: v for k, v in again.items() if k != "time"} == {k: v for k, v in record.items() if k != "time"}

    # Recovery changes nothing the run can use: with the same learning rate it diverges again and stops.
    wd3 = copy_of(trained, tmp_path / "again")
    assert run(wd3, *args[:-1], "--config.train.recover_lr=1") == 2
    assert_clear_error(capsys, "Training diverged", "had recovered 1 time(s) already, the most train.recover = 1 allows")
