"""Shared pieces of the scale-out and reliability tests (test_parallel, test_resume, test_bad_inputs):
the tiny digits run and subprocess environments (which share the run's JAX compilation cache, set up
once by conftest.py, so the many short runs of these tests compile each program once)."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
DIGITS = str(ROOT / "configs" / "mdsm_digits.py")
# The smallest digits run: one down block per stage at width 4; a few seconds to compile.
TINY = ["--config.model.width=4", "--config.model.blocks_per_stage=0", "--config.train.batch_size=8",
        "--config.train.log_every=10", "--config.train.checkpoint_every=10", "--config.sample.n=0",
        "--config.train.warmup_steps=0", "--no-progress"]
# A short annealing schedule for tests that also sample.
TINY_SAMPLING = ["--config.sample.n=4", "--config.sample.batch_size=4", "--config.mdsm.n_hot=3",
                 "--config.mdsm.n_anneal=10", "--config.mdsm.n_cool=3", "--config.sample.chunk_steps=16"]


# One tiny run per training method: the arguments that, added to TINY, train the method in seconds on
# 2 CPU cores. A new method joins by adding its entry here: the bad-input table (test_bad_inputs) and
# the kill harness (test_resume) then run against it too.
TINY_METHODS = {
    "mdsm": (),
    # Maximum likelihood with a replay buffer (its carried state) and samples drawn from it.
    "ml": ("--config.method.name=ml", "--config.ml.init=buffer", "--config.ml.buffer_size=64",
           "--config.ml.steps=4", "--config.ml.sample_steps=6", "--config.ml.sample_from=buffer"),
    # Multigrid with Malhotra's generator: one network per grid (1 -> 2 -> 4 -> 8) and the
    # generator in front of every grid's chain, the coarse starts of sampling in the carry.
    "multigrid": ("--config.method.name=multigrid", "--config.multigrid.grids=1,2,4,8",
                  "--config.multigrid.widths=4,8", "--config.multigrid.steps=3",
                  "--config.multigrid.sample_steps=4", "--config.multigrid.coarse_buffer=64",
                  "--config.multigrid.generator=teach", "--config.multigrid.gen_width=4",
                  "--config.multigrid.gen_branch_width=2"),
    # Cooperative learning: two networks (the energy, a latent generator), no carried state.
    "coop": ("--config.method.name=coop", "--config.coop.gen_widths=8,4", "--config.coop.latent_dim=4",
             "--config.coop.steps=3", "--config.coop.sample_steps=4"),
    # CF-EBM: stages 2 -> 4 -> 8 of 8 steps each phase; 20 steps end mid-fade of stage 4x4.
    "cfebm": ("--config.method.name=cfebm", "--config.cfebm.resolutions=2,4,8", "--config.cfebm.widths=4,4,4",
              "--config.cfebm.head_width=4", "--config.cfebm.phase_images=64", "--config.cfebm.steps=2",
              "--config.cfebm.sample_steps=3")}
# Tiny runs that learn from the digits' labels: JEM (the classifier's logits; persistent chains and
# their labels carried) and a class-conditional multigrid (coarse starts with their labels).
TINY_LABELLED = {
    "jem": ("--config.method.name=jem", "--config.model.classes=10", "--config.ml.init=buffer",
            "--config.ml.buffer_size=64", "--config.ml.steps=4", "--config.ml.sample_steps=6",
            "--config.ml.sample_from=buffer"),
    "multigrid, classes": (*TINY_METHODS["multigrid"], "--config.model.classes=10")}


def overrides(args: list[str]) -> list[tuple[str, str]]:
    """``--config.a.b=v`` arguments as (key, value) pairs for ``load_config``."""
    return [tuple(a[len("--config."):].split("=", 1)) for a in args if a.startswith("--config.")]


def final_state(workdir: pathlib.Path, args: list[str]):
    """The train state of the latest checkpoint in ``workdir`` as numpy arrays (restored in this process)."""
    from ebmjax.config import load_config
    from ebmjax.train import loop

    state, _, _ = loop.load_trained(load_config(DIGITS, overrides(args)), workdir)
    return jax.tree.map(np.asarray, state)


def max_abs_diff(a, b) -> float:
    return max(float(np.max(np.abs(np.asarray(x, np.float64) - y))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def bitwise_equal(a, b) -> bool:
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(la) == len(lb) and all(np.array_equal(x, y) for x, y in zip(la, lb))



def resume_on_other_devices(cfg, workdir: str) -> dict:
    """For checkpoints in ``<workdir>/d1`` (written on 1 device) and ``<workdir>/d8`` (on 8): a copy of
    each trained on by the other device count up to ``cfg.train.steps``, against the original trained
    on by its own. {"1to8" and "8to1": (final step, largest difference of the two train states, the
    lines the moved run logged about its devices)}. Needs 8 (fake) devices."""
    import io
    import logging
    import shutil

    from ebmjax import parallel
    from ebmjax.train import loop

    out = {}
    for a, b in ((1, 8), (8, 1)):
        shutil.copytree(f"{workdir}/d{a}", f"{workdir}/d{a}to{b}")
        log = io.StringIO()
        handler, logger = logging.StreamHandler(log), logging.getLogger("ebmjax")
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        try:
            moved, _, _ = loop.train(cfg, f"{workdir}/d{a}to{b}", progress=False,
                                     mesh=parallel.make_mesh(jax.devices()[:b]))
        finally:
            logger.removeHandler(handler)
        stayed, _, _ = loop.train(cfg, f"{workdir}/d{a}", progress=False, mesh=parallel.make_mesh(jax.devices()[:a]))
        notes = [line for line in log.getvalue().splitlines() if "was written by a run on" in line]
        out[f"{a}to{b}"] = (int(moved.step), max_abs_diff(jax.tree.map(np.asarray, moved),
                                                          jax.tree.map(np.asarray, stayed)), notes)
    return out

def subprocess_env(devices: int | None = None, **extra: str) -> dict[str, str]:
    """Environment for an ebmjax subprocess: this test run's environment, whose JAX compilation cache
    (set for the whole run by conftest.py) the subprocess shares, on the CPU, and, if given, a number of
    fake CPU devices (the XLA flag must be set before JAX is imported, hence a new process)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_COORDINATOR", "JAX_NUM_PROC", "JAX_PROCESS"))}
    env.update(JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")
    if devices is not None:
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}".strip()
    env.update(extra)
    return env


def cli_command(workdir: pathlib.Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "ebmjax.main", "--config", DIGITS, "--workdir", str(workdir), *args]


def checkpoint_steps(workdir: pathlib.Path) -> list[int]:
    d = workdir / "checkpoints"
    return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit()) if d.is_dir() else []


def wait_for(condition, timeout: float, what: str, procs=()) -> None:
    """Polls ``condition()`` every 10 ms; fails if it is still false after ``timeout`` seconds or if
    one of ``procs`` exits first."""
    deadline = time.monotonic() + timeout
    while not condition():
        for p in procs:
            if p.poll() is not None:
                raise AssertionError(f"process exited with {p.returncode} before {what}:\n{p.stderr.read() if p.stderr else ''}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def kill_at_first_checkpoint(command: list[str], workdir: pathlib.Path, env: dict[str, str]) -> list[int]:
    """Starts ``command`` (writing to ``workdir``), sends SIGKILL as soon as its first checkpoint is on
    disk and returns the checkpoint steps it left."""
    run = subprocess.Popen(command, cwd=ROOT, env=env, text=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: checkpoint_steps(workdir), 400, "the first checkpoint", [run])
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=60)
    finally:
        run.kill()
    assert run.returncode == -signal.SIGKILL
    return checkpoint_steps(workdir)


