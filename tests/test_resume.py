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
                           TINY_LABELLED, TINY_METHODS, final_state, kill_at_first_checkpoint, subprocess_env, wait_for)


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
    env = subprocess_env()
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


# The kill harness (scripts/kill_and_resume.py, issue 25) on every method's tiny run: SIGKILL while a
# checkpoint is being written, at a logged step (for CF-EBM the step where the 8x8 stage starts to
# fade in and its network first trains), for MDSM also while sample shards are written, and for
# translation (two domains drawn side by side, then --mode translate) as training ends; each
# restart must resume from the newest complete checkpoint, and the run end as an unbroken one:
# bitwise the same train state (parameters, Adam, carried chains), samples and logged losses.
# Plain maximum likelihood and the multigrid without classes are not run on their own: JEM's carry is
# the replay buffer of persistent chains plus a label per row, and the class-conditional multigrid has
# every grid's network, the generator and the coarse starts plus their labels, so each covers the
# other's checkpointed state and more (about 80 s each on 2 cores saved from the suite).
SAMPLE = ("--config.sample.n=8", "--config.sample.batch_size=4", "--config.sample.chunk_steps=16",
          "--config.mdsm.n_hot=3", "--config.mdsm.n_anneal=10", "--config.mdsm.n_cool=3")
KILLS = {"mdsm": ("checkpoint,shard", SAMPLE),
         "coop": ("checkpoint", (*SAMPLE, "--config.coop.infer_steps=2")),  # latent inference on
         "cfebm": ("step=24", SAMPLE),  # the step where the 8x8 stage starts to fade in
         # Translation (chains from the source domain, then --mode translate after training): killed at
         # a checkpoint write, and as training ends and translation starts.
         "translation": ("checkpoint,step=30", ()),
         # JEM (the classifier's logits, persistent chains and their labels in the carry) and a
         # class-conditional multigrid (coarse starts with their labels), sampling class 3.
         "jem": ("checkpoint", SAMPLE),
         "multigrid, classes": ("checkpoint", (*SAMPLE, "--config.sample.label=3"))}
# The config of each run (configs/mdsm_digits.py with the method's TINY_METHODS arguments, or its own).
KILL_CONFIGS = {"translation": (str(ROOT / "configs" / "translate_digits.py"), [
    "--config.model.widths=4,8", "--config.ml.steps=3", "--config.train.batch_size=16", "--config.translate.n=8",
    "--config.translate.batch_size=4", "--config.translate.target_n=4", "--config.train.checkpoint_every=10",
    "--config.train.warmup_steps=0", "--config.sample.n=0"]),
    **{run: (DIGITS, [a for a in TINY if a != "--no-progress"] + list(args)) for run, args in TINY_LABELLED.items()}}


@pytest.mark.slow  # three or four starts of a tiny run each (about 50 s on 2 cores); CI runs them
@pytest.mark.parametrize("method", sorted(KILLS))
def test_the_kill_harness_finds_every_method_resumes_exactly(method, tmp_path):
    moments, extra = KILLS[method]
    config, base = KILL_CONFIGS.get(method, (DIGITS, [a for a in TINY if a != "--no-progress"] + list(
        TINY_METHODS.get(method, ()))))
    args = [*base, "--config.train.steps=30", "--config.train.log_every=4", *extra]
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "kill_and_resume.py"), "--config", config,
                           "--workdir", str(tmp_path / "h"), "--kills", str(moments.count(",") + 1), "--at", moments,
                           "--json", str(tmp_path / "report.json"), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    kills = report["kills"]
    assert [k["moment"] for k in kills] == moments.split(",") and all(k["killed"] for k in kills), kills
    assert report["state_equal"] and report["metrics_equal"] and report["problems"] == []
    assert report["samples_equal"] is (None if method == "translation" else True)
    if method == "translation":  # the translations are compared as every other array file is
        assert "translate/translated.npz" in report["outputs_compared"]
    first = kills[0]
    if first["moment"] == "checkpoint":  # killed while checkpoint 20 was being written: it goes on from 10
        assert (first["checkpoint"], first["resumed_from"]) == (10, 10), kills
    else:  # killed at step 24: from the newest complete checkpoint, 20 (or 10 if 20 was still being written)
        assert first["logged_step"] >= 24 and first["resumed_from"] in (10, 20), kills
    if method == "mdsm":  # killed between sample shards: training was done
        assert (kills[1]["checkpoint"], kills[1]["resumed_from"]) == (30, 30), kills


@pytest.fixture(scope="module")
def trained_tiny(tmp_path_factory):
    """The tiny MDSM run trained to 20 steps, for the modes that start from a trained workdir."""
    wd = tmp_path_factory.mktemp("trained_tiny") / "run"
    proc = subprocess.run(cli_command(wd, *TINY, "--config.train.steps=20"), cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    return wd


# Modes that start from a trained workdir, killed at a random moment of the run (after a warm-up run
# that compiles) or, for sampling, between shards; what they wrote must equal an unbroken run's.
MODES = {"sample": ("shard", ("--config.sample.n=12", "--config.sample.batch_size=4", "--config.mdsm.n_hot=3",
                              "--config.mdsm.n_anneal=10", "--config.mdsm.n_cool=3", "--config.sample.chunk_steps=4")),
         "eval": ("time", ("--config.eval.metrics=fid,ood,neighbours", "--config.eval.n_samples=16",
                           "--config.eval.n_data=64", "--config.eval.ood.n=32", "--config.eval.kid_subsets=2",
                           "--config.sample.batch_size=8", "--config.mdsm.n_hot=3", "--config.mdsm.n_anneal=10",
                           "--config.mdsm.n_cool=3")),
         "inpaint": ("time", ("--config.restore.n=16", "--config.restore.batch_size=4", "--config.restore.n_chains=2", "--config.mdsm.n_hot=3",
                              "--config.mdsm.n_anneal=10", "--config.mdsm.n_cool=3"))}


@pytest.mark.slow  # three or four starts each (about 40 s on 2 cores); CI runs them
@pytest.mark.xdist_group("trained_tiny")  # one worker trains the fixture once
@pytest.mark.parametrize("mode", sorted(MODES))
def test_the_kill_harness_on_the_modes_that_read_a_trained_workdir(mode, trained_tiny, tmp_path):
    moment, extra = MODES[mode]
    args = [a for a in TINY if a != "--no-progress"] + ["--config.train.steps=20", *extra]
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "kill_and_resume.py"), "--config", DIGITS,
                           "--workdir", str(tmp_path / "h"), "--mode", mode, "--from", str(trained_tiny),
                           "--kills", "1", "--at", moment, "--json", str(tmp_path / "report.json"), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert len(report["kills"]) == 1 and report["kills"][0]["killed"], report["kills"]
    assert report["mode"] == mode and report["problems"] == [] and report["outputs_differ"] == []
    assert report["state_equal"]  # the modes read the checkpoint and leave it as it was
    written = {"sample": "samples/samples.npz", "eval": "eval/", "inpaint": "inpaint/restored.npz"}[mode]
    assert any(name.startswith(written) for name in report["outputs_compared"]), report["outputs_compared"]


def test_a_state_arranged_otherwise_is_refused_and_left_where_it_is(tmp_path):
    """The same arrays in other containers (a setting that arranges the optimiser state changed) is not
    damage: the restore is refused with a message, and the checkpoint is not moved aside."""
    from ebmjax.errors import CheckpointError

    def state(opt_state):
        return TrainState(jnp.int32(5), {"w": jnp.ones(3)}, opt_state, (), (), jnp.int32(0))

    ckpts = Checkpoints(tmp_path, load_config(DIGITS))
    ckpts.save(state({"mu": jnp.zeros(3), "count": jnp.zeros((), jnp.int32)}))
    ckpts.close()
    other = jax.eval_shape(lambda: state(({"mu": jnp.zeros(3)}, {"count": jnp.zeros((), jnp.int32)})))
    for step in (None, 5):
        with pytest.raises(CheckpointError, match="arranged otherwise than this run's.*It is intact and left where it is"):
            Checkpoints(tmp_path, load_config(DIGITS)).restore(other, step)
    assert checkpoint_steps(tmp_path) == [5] and not (tmp_path / "checkpoints_unreadable").exists()
    same = jax.eval_shape(lambda: state({"mu": jnp.zeros(3), "count": jnp.zeros((), jnp.int32)}))
    assert int(Checkpoints(tmp_path, load_config(DIGITS)).restore(same).step) == 5
