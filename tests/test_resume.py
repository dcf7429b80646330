"""Never lose work: asynchronous keep-N checkpoints, and a run interrupted by SIGKILL, SIGTERM and
SIGINT that ends with exactly the parameters, samples and metrics of a run never interrupted."""

import json
import signal
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebmjax.config import load_config
from ebmjax.train.checkpoint import Checkpoints
from ebmjax.train.state import TrainState
from scale_helpers import (DIGITS, ROOT, TINY, TINY_SAMPLING, bitwise_equal, checkpoint_steps, cli_command,
                           final_state, kill_at_first_checkpoint, run_to_completion, subprocess_env, wait_for)


def test_checkpoints_are_asynchronous_and_keep_the_newest(tmp_path):
    ckpts = Checkpoints(tmp_path, load_config(DIGITS), keep=2)

    def state(step):  # 64 MB of parameters: writing them takes long enough to watch
        return TrainState(jnp.int32(step), {"w": jnp.full((4096, 4096), float(step))}, (), (), (), jnp.int32(0))

    ckpts.save(state(1))
    # save() has returned, the arrays are copied to host memory and are being written in the background:
    # the step directory appears (renamed from a temporary one) only when the write is complete.
    assert ckpts.manager.is_saving_in_progress()
    assert not (tmp_path / "checkpoints" / "1").exists()
    for step in (2, 3):
        ckpts.save(state(step))
    ckpts.close()
    assert checkpoint_steps(tmp_path) == [2, 3]
    restored = Checkpoints(tmp_path, load_config(DIGITS), keep=2).restore(jax.eval_shape(lambda: state(0)))
    assert int(restored.step) == 3 and float(restored.params["w"][7, 7]) == 3.0


def _metrics(workdir):
    """(step, mean loss, skipped, steps averaged) of every logged line."""
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    return [(r["step"], r["loss"], r["skipped"], r["window_steps"]) for r in map(json.loads, lines)]


@pytest.mark.slow  # a subprocess run; runs in CI (the README's test command)
def test_killed_and_interrupted_run_ends_exactly_like_an_unbroken_one(tmp_path):
    """600 steps, checkpoints every 200, keep 2. The broken run is killed with SIGKILL after its first
    checkpoint, stopped with SIGTERM after its second, stopped with SIGINT a little later, and then
    finishes; every time the same command is rerun. Data order and noise derive from (seed, step),
    so parameters, optimiser state, samples and logged losses must be bitwise equal."""
    args = [*TINY, *TINY_SAMPLING, "--config.train.batch_size=32", "--config.train.steps=600",
            "--config.train.checkpoint_every=200", "--config.train.keep_checkpoints=2"]
    env = subprocess_env(tmp_path / "cache")
    unbroken, broken = tmp_path / "unbroken", tmp_path / "broken"

    def start(workdir):
        return subprocess.Popen(cli_command(workdir, *args), cwd=ROOT, env=env, text=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    # SIGKILL right after the first checkpoint is on disk: no chance to save anything more.
    assert kill_at_first_checkpoint(cli_command(broken, *args), broken, env) == [200]

    # SIGTERM after the next checkpoint: a checkpoint at the step it stops, exit code 130.
    run = start(broken)
    wait_for(lambda: checkpoint_steps(broken)[-1] >= 400, 400, "the second checkpoint", [run])
    run.send_signal(signal.SIGTERM)
    err = run.communicate(timeout=120)[1]
    assert run.returncode == 130, err
    assert "Resuming from the checkpoint at step 200" in err
    assert f"Stopped by signal {int(signal.SIGTERM)} at step" in err and "Traceback" not in err
    stopped = checkpoint_steps(broken)[-1]
    assert 400 <= stopped < 600 and f"at step {stopped};" in err

    # SIGINT (Ctrl-C) once the resumed run has logged a step.
    run = start(broken)
    wait_for(lambda: _metrics(broken)[-1][0] > stopped, 400, "a logged step", [run])
    run.send_signal(signal.SIGINT)
    err = run.communicate(timeout=120)[1]
    assert run.returncode == 130, err
    assert f"Stopped by signal {int(signal.SIGINT)} at step" in err and "Traceback" not in err
    assert stopped < checkpoint_steps(broken)[-1] < 600

    # The last rerun and the unbroken run (the compiled programs come from the shared cache).
    for workdir in (broken, unbroken):
        done = subprocess.run(cli_command(workdir, *args), cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=400)
        assert done.returncode == 0, done.stderr
    assert checkpoint_steps(unbroken) == [400, 600]  # keep_checkpoints=2
    assert checkpoint_steps(broken)[-1] == 600 and len(checkpoint_steps(broken)) == 2
    assert bitwise_equal(final_state(broken, args), final_state(unbroken, args))
    samples = [np.load(w / "samples" / "samples.npz")["images"] for w in (broken, unbroken)]
    assert samples[0].shape == (4, 8, 8, 1) and np.array_equal(samples[0], samples[1])
    # Lines logged after the last checkpoint by the killed run were dropped on resume; a run resumed
    # mid-window averages fewer steps in its first line (at most one such line per stop by signal).
    a, b = _metrics(broken), _metrics(unbroken)
    assert [m[0] for m in a] == [m[0] for m in b] == list(range(10, 601, 10))
    assert all(m[3] == 10 for m in b)
    partial = [x for x in a if x[3] != 10]
    assert len(partial) <= 2 and all(0 < x[3] < 10 for x in partial)
    assert [x for x in a if x[3] == 10] == [y for x, y in zip(a, b) if x[3] == 10]


PCD_DIGITS = str(ROOT / "configs" / "pcd_digits.py")
# pcd_digits shrunk: a small network, short chains, a buffer of 64 rows; 300 steps, checkpoints every 100.
PCD_TINY = ["--config.model.widths=4,8", "--config.model.width=4", "--config.model.blocks_per_stage=0",
            "--config.train.batch_size=16", "--config.train.steps=300", "--config.train.log_every=10",
            "--config.train.checkpoint_every=100", "--config.train.keep_checkpoints=2", "--config.ml.steps=4",
            "--config.ml.buffer_size=64", "--config.ml.sample_steps=6", "--config.sample.n=4",
            "--config.sample.batch_size=4", "--config.sample.chunk_steps=3", "--no-progress"]


def _pcd_state(workdir):
    from scale_helpers import overrides

    from ebmjax.train import loop

    state, _, _ = loop.load_trained(load_config(PCD_DIGITS, overrides(PCD_TINY)), workdir)
    return jax.tree.map(np.asarray, state)


@pytest.mark.slow  # subprocess runs; runs in CI (the README's test command)
def test_killed_persistent_chains_resume_exactly_buffer_included(tmp_path):
    """configs/pcd_digits.py (shrunk) killed with SIGKILL after its first checkpoint and rerun ends
    bitwise like a run never interrupted: parameters, Adam state and the replay buffer (every
    training step reads rows of it and writes chain ends back), the samples drawn from the buffer,
    and the logged losses."""
    env = subprocess_env(tmp_path / "cache")
    unbroken, broken = tmp_path / "unbroken", tmp_path / "broken"

    def command(workdir):
        return [sys.executable, "-m", "ebmjax.main", "--config", PCD_DIGITS, "--workdir", str(workdir), *PCD_TINY]

    killed_at = kill_at_first_checkpoint(command(broken), broken, env)
    assert killed_at and killed_at[-1] < 300, killed_at
    assert not (broken / "samples").exists()
    done = run_to_completion({w: command(w) for w in (broken, unbroken)}, env)
    assert f"Resuming from the checkpoint at step {killed_at[-1]}" in done[broken].stderr
    a, b = _pcd_state(broken), _pcd_state(unbroken)
    assert int(a.step) == int(b.step) == 300
    assert a.carry["buffer"].shape == (64, 8, 8, 1)
    # The buffer moved: chain ends were written into it (it is not the noise it started as).
    assert not np.allclose(a.carry["buffer"], _initial_buffer())
    assert np.array_equal(a.carry["buffer"], b.carry["buffer"])
    assert bitwise_equal(a, b)
    samples = [np.load(w / "samples" / "samples.npz")["images"] for w in (broken, unbroken)]
    assert samples[0].shape == (4, 8, 8, 1) and np.array_equal(samples[0], samples[1])
    la = {r["step"]: r["loss"] for r in map(json.loads, (broken / "metrics.jsonl").read_text().splitlines())
          if r["window_steps"] == 10}
    lb = {r["step"]: r["loss"] for r in map(json.loads, (unbroken / "metrics.jsonl").read_text().splitlines())}
    assert sorted(lb) == sorted(la) == list(range(10, 301, 10))
    assert all(la[s] == lb[s] for s in la)


def _initial_buffer():
    """The buffer a fresh pcd_digits (shrunk) run starts with (the key the training loop uses)."""
    from scale_helpers import overrides

    from ebmjax import methods

    cfg = load_config(PCD_DIGITS, overrides(PCD_TINY))
    key = jax.random.fold_in(jax.random.PRNGKey(cfg.seed), 7)
    return np.asarray(methods.build(cfg, (8, 8, 1)).init_carry(key)["buffer"])


MULTIGRID_GEN_DIGITS = str(ROOT / "configs" / "multigrid_gen_digits.py")
# multigrid_gen_digits shrunk: narrow per-grid networks and generator, 3-step chains per grid; 300 steps,
# checkpoints every 100.
MULTIGRID_TINY = ["--config.multigrid.widths=4,8", "--config.multigrid.gen_width=4",
                  "--config.multigrid.gen_branch_width=2", "--config.multigrid.steps=3", "--config.multigrid.sample_steps=4",
                  "--config.multigrid.coarse_buffer=64", "--config.train.batch_size=16", "--config.train.steps=300",
                  "--config.train.log_every=10", "--config.train.checkpoint_every=100",
                  "--config.train.keep_checkpoints=2", "--config.sample.n=4", "--config.sample.batch_size=4",
                  "--config.sample.chunk_steps=2", "--no-progress"]


@pytest.mark.slow  # subprocess runs; runs in CI (the README's test command)
def test_killed_multigrid_run_with_a_generator_resumes_exactly(tmp_path):
    """configs/multigrid_gen_digits.py (Malhotra's multigrid with a generator, shrunk) killed with
    SIGKILL after its first checkpoint and rerun ends bitwise like a run never interrupted: every
    grid's parameters and Adam state, the generator's, the carried coarse starts of sampling, the
    samples (whose chains start from those, through the generator) and the logged losses."""
    from scale_helpers import overrides

    from ebmjax.train import loop

    env = subprocess_env(tmp_path / "cache")
    unbroken, broken = tmp_path / "unbroken", tmp_path / "broken"

    def command(workdir):
        return [sys.executable, "-m", "ebmjax.main", "--config", MULTIGRID_GEN_DIGITS, "--workdir", str(workdir),
                *MULTIGRID_TINY]

    def state(workdir):
        s, _, _ = loop.load_trained(load_config(MULTIGRID_GEN_DIGITS, overrides(MULTIGRID_TINY)), workdir)
        return jax.tree.map(np.asarray, s)

    killed_at = kill_at_first_checkpoint(command(broken), broken, env)
    assert killed_at and killed_at[-1] < 300, killed_at
    done = run_to_completion({w: command(w) for w in (broken, unbroken)}, env)
    assert f"Resuming from the checkpoint at step {killed_at[-1]}" in done[broken].stderr
    a, b = state(broken), state(unbroken)
    assert int(a.step) == int(b.step) == 300
    assert sorted(a.params) == ["energy_2", "energy_4", "energy_8", "generator"]
    assert a.carry["coarse"].shape == (64, 1, 1, 1) and a.carry["coarse"].std() > 0  # digits' means
    assert bitwise_equal(a, b)
    samples = [np.load(w / "samples" / "samples.npz")["images"] for w in (broken, unbroken)]
    assert samples[0].shape == (4, 8, 8, 1) and np.array_equal(samples[0], samples[1])
    assert all((w / "samples" / "grids.png").exists() for w in (broken, unbroken))
    la = {r["step"]: r["loss"] for r in map(json.loads, (broken / "metrics.jsonl").read_text().splitlines())
          if r["window_steps"] == 10}
    lb = {r["step"]: r["loss"] for r in map(json.loads, (unbroken / "metrics.jsonl").read_text().splitlines())}
    assert sorted(lb) == sorted(la) == list(range(10, 301, 10))
    assert all(la[s] == lb[s] for s in la)


TRANSLATE_DIGITS = str(ROOT / "configs" / "translate_digits.py")
# translate_digits shrunk (chains from the source domain, ml.init = "source"): 300 steps, checkpoints every 100.
TRANSLATE_TINY = ["--config.model.widths=4,8", "--config.ml.steps=3", "--config.train.batch_size=16",
                  "--config.train.steps=300", "--config.train.log_every=10", "--config.train.checkpoint_every=100",
                  "--config.train.keep_checkpoints=2", "--config.translate.n=8", "--config.translate.batch_size=8",
                  "--config.translate.target_n=4", "--no-progress"]


@pytest.mark.slow  # subprocess runs; the full suite (see the README) runs it
def test_killed_two_domain_run_resumes_exactly(tmp_path):
    """configs/translate_digits.py (shrunk) killed with SIGKILL after its first checkpoint and rerun
    ends bitwise like a run never interrupted: the source-domain batches, drawn beside the data's in
    their own order, are the same after the resume, and so are the parameters and translations."""
    from scale_helpers import overrides

    from ebmjax.train import loop

    env = subprocess_env(tmp_path / "cache")
    unbroken, broken = tmp_path / "unbroken", tmp_path / "broken"

    def command(workdir):
        return [sys.executable, "-m", "ebmjax.main", "--config", TRANSLATE_DIGITS, "--workdir", str(workdir),
                *TRANSLATE_TINY]

    killed_at = kill_at_first_checkpoint(command(broken), broken, env)
    assert killed_at and killed_at[-1] < 300, killed_at
    done = run_to_completion({w: command(w) for w in (broken, unbroken)}, env)
    assert f"Resuming from the checkpoint at step {killed_at[-1]}" in done[broken].stderr
    cfg = load_config(TRANSLATE_DIGITS, overrides(TRANSLATE_TINY))
    a, b = (jax.tree.map(np.asarray, loop.load_trained(cfg, w)[0]) for w in (broken, unbroken))
    assert int(a.step) == int(b.step) == 300 and bitwise_equal(a, b)
    translated = [np.load(w / "translate" / "translated.npz")["translated"] for w in (broken, unbroken)]
    assert translated[0].shape == (8, 16, 16, 1) and np.array_equal(translated[0], translated[1])
