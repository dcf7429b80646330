"""Scale-out: the distributed start-up logic, 1 vs 8 (fake CPU) devices, and two cooperating processes.

Fake devices need ``XLA_FLAGS`` set before JAX is imported, and several processes need their own
JAX runtimes, so those tests run subprocesses (they run in CI like every other test).
"""

import json
import signal
import subprocess
import sys

import ml_collections
import numpy as np
import pytest

from ebmjax import parallel
from ebmjax.errors import ConfigError
from scale_helpers import (DIGITS, ROOT, TINY, TINY_SAMPLING, bitwise_equal, checkpoint_steps, cli_command,
                           final_state, subprocess_env, wait_for)


def dist(initialize="auto", address=None, num=None, pid=None) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict({"initialize": initialize, "coordinator_address": address,
                                      "num_processes": num, "process_id": pid})


SLURM = {"SLURM_JOB_ID": "7", "SLURM_STEP_NODELIST": "gpu[1-2]", "SLURM_NTASKS": "16", "SLURM_PROCID": "3",
         "SLURM_LOCALID": "3"}


def test_when_jax_distributed_is_started():
    args = parallel.distributed_args
    # Nothing says there are several processes: stay single-process.
    assert args(dist(), {}) is None
    assert args(dist("no", "h:1", 2, 0), {}) is None
    assert args(dist(), {**SLURM, "SLURM_NTASKS": "1"}) is None
    # Launchers: JAX finds the rest (SLURM variables, mpirun, TPU metadata).
    assert args(dist(), SLURM) == {}
    assert args(dist(), {"OMPI_COMM_WORLD_SIZE": "4"}) == {}
    assert args(dist("yes"), {}) == {}
    # launch/local_multiprocess.sh: everything from the environment.
    env = {"JAX_COORDINATOR_ADDRESS": "localhost:1234", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1"}
    assert args(dist(), env) == {"coordinator_address": "localhost:1234", "num_processes": 2, "process_id": 1}
    # The config wins over the environment.
    assert args(dist(address="node0:99", num=4, pid=3), env) == {"coordinator_address": "node0:99",
                                                                  "num_processes": 4, "process_id": 3}
    assert args(dist(num=1, pid=0), env) is None  # explicitly one process
    with pytest.raises(ConfigError, match=r"dist.process_id must lie in \[0, 2\)"):
        args(dist(num=2, pid=2), {})
    with pytest.raises(ConfigError, match="set --config.dist.num_processes"):
        args(dist(address="localhost:5"), {})
    with pytest.raises(ConfigError, match="dist.initialize must be one of"):
        args(dist("sometimes"), {})
    with pytest.raises(ConfigError, match="JAX_NUM_PROCESSES='two' must be an integer"):
        args(dist(), {**env, "JAX_NUM_PROCESSES": "two"})


def test_one_cpu_device_per_core_that_divides_the_split_rows():
    count = parallel.cpu_device_count
    assert count("auto", 128, 2) == 2
    assert count("auto", 128, 6) == 4  # 6 does not divide 128: the largest count that does
    assert count("auto", 7, 4) == 1
    assert count("auto", 12, 8) == 6
    assert count("auto", None, 3) == 3
    assert count("3", 128, 2) == 3 and count(5, 7, 2) == 5  # an explicit count is taken as it is
    for bad in ("two", "0", 0, -1, True, "1.5", ""):
        with pytest.raises(ConfigError, match="dist.cpu_devices must be auto or a whole number >= 1"):
            count(bad, 128, 2)


def test_split_rows_are_the_batch_and_the_carried_buffers():
    from ebmjax import methods
    from ebmjax.config import load_config

    assert methods.split_rows(load_config(DIGITS)) == 128
    ml = load_config(DIGITS, [("method.name", "ml"), ("ml.init", "buffer"), ("ml.buffer_size", "10000")])
    assert methods.split_rows(ml) == 16  # gcd(128, 10000)
    assert methods.split_rows(load_config(DIGITS, [("method.name", "ml"), ("ml.init", "noise")])) == 128
    grid = load_config(DIGITS, [("method.name", "multigrid"), ("multigrid.coarse_buffer", "1000"),
                                ("train.batch_size", "100")])
    assert methods.split_rows(grid) == 100


USE_CORES = """
import json, sys
import jax
from ebmjax import parallel
first = parallel.use_cpu_cores(sys.argv[1], int(sys.argv[2]))
n = jax.device_count()
again = parallel.use_cpu_cores("1")  # too late: the backend has started
print(json.dumps([first, n, again, jax.device_count()]))
"""


@pytest.mark.parametrize("flags,setting,expected", [
    ("", "3", [3, 3, None, 3]),
    ("", "auto", None),  # one per core of this machine that divides 4
    ("--xla_force_host_platform_device_count=5", "3", [None, 5, None, 5]),  # the user's XLA_FLAGS win
])
def test_use_cpu_cores_sets_the_device_count_before_jax_starts(tmp_path, flags, setting, expected):
    env = subprocess_env()
    env["XLA_FLAGS"] = flags
    proc = subprocess.run([sys.executable, "-c", USE_CORES, setting, "4"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    if expected is None:
        n = parallel.cpu_device_count("auto", 4, parallel.usable_cores())
        expected = [n, n, None, n]
    assert got == expected


@pytest.mark.slow  # about 39 s on 2 CPU cores; the whole suite (CI) runs it
def test_the_command_line_splits_the_batch_over_the_cpu_devices_it_asks_for(tmp_path):
    env = subprocess_env()
    env.pop("XLA_FLAGS", None)
    proc = subprocess.run(cli_command(tmp_path / "run", *TINY, "--config.train.steps=1", "--config.dist.cpu_devices=4"),
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Training on 4 CPU devices, 2 examples each per step." in proc.stderr


def test_initialize_distributed_calls_jax_and_explains_failures(monkeypatch):
    import jax

    calls = []
    monkeypatch.setattr(jax.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: calls.append(kw))
    monkeypatch.setattr(parallel, "detect_cluster", lambda environ=None: None)
    for var in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
        monkeypatch.delenv(var, raising=False)
    assert parallel.initialize_distributed(dist()) is False and calls == []
    assert parallel.initialize_distributed(dist("auto", "localhost:7", 2, 1)) is True
    assert calls == [{"coordinator_address": "localhost:7", "num_processes": 2, "process_id": 1}]

    def unreachable(**kw):
        raise RuntimeError("DEADLINE_EXCEEDED: Barrier timed out")

    monkeypatch.setattr(jax.distributed, "initialize", unreachable)
    with pytest.raises(ConfigError, match="Could not start jax.distributed .*Check dist.coordinator_address"):
        parallel.initialize_distributed(dist("yes", "localhost:7", 2, 1))


# Runs in a process with 8 fake CPU devices; prints one JSON line of results.
EIGHT_DEVICES = r"""
import contextlib, io, json, sys
import jax, numpy as np
from ebmjax import chains, parallel
from ebmjax.apps import main
from ebmjax.config import load_config
from ebmjax.train import loop
from scale_helpers import DIGITS, max_abs_diff, bitwise_equal, resume_on_other_devices

workdir, overrides = sys.argv[1], json.loads(sys.argv[2])
cfg = load_config(DIGITS, overrides)
out = {"devices": jax.device_count(), "rows": str(parallel.local_rows(parallel.make_mesh(), 16))}
states, losses = {}, {}
for n in (1, 8):
    mesh = parallel.make_mesh(jax.devices()[:n])
    state, method, source = loop.train(cfg, f"{workdir}/d{n}", progress=False, mesh=mesh)
    states[n] = jax.tree.map(np.asarray, state)
    losses[n] = json.loads(open(f"{workdir}/d{n}/metrics.jsonl").readline())["loss"]
out["step"] = int(states[8].step)
out["param_diff"] = max_abs_diff(states[1].params, states[8].params)
out["adam_diff"] = max_abs_diff(states[1].opt_state, states[8].opt_state)
out["param_bitwise"] = bitwise_equal(states[1].params, states[8].params)
out["loss_rel_diff"] = abs(losses[1] - losses[8]) / abs(losses[1])
# Sampling chains split over 1 or 8 devices, from the same parameters and key.
samples = {}
for n in (1, 8):
    mesh = parallel.make_mesh(jax.devices()[:n])
    params = parallel.put_replicated(states[1].params, mesh)
    samples[n], _ = chains.draw(method.sampler(params, ()), 8, jax.random.PRNGKey(3), batch_size=8,
                                  chunk_steps=cfg.sample.chunk_steps, mesh=mesh, progress=False)
out["sample_diff"] = max_abs_diff(samples[1], samples[8])
# One step further on the other device count (issue 24), against the run that stayed where it was.
for moved, (step, diff, _) in resume_on_other_devices(load_config(DIGITS, overrides + [["train.steps", "2"]]),
                                                      workdir).items():
    out[f"resumed_{moved}"] = [step, diff]
out["sample_shape"] = list(samples[8].shape)
err = io.StringIO()
with contextlib.redirect_stderr(err):
    out["odd_batch_code"] = main.run(["--config", DIGITS, "--workdir", f"{workdir}/odd", "--config.train.batch_size=12",
                                      "--config.train.steps=1", "--no-progress"])
out["odd_batch_message"] = err.getvalue()
print(json.dumps(out))
"""


@pytest.mark.slow  # a subprocess run; runs in CI (the README's test command)
def test_update_on_8_devices_equals_update_on_1(tmp_path):
    """One Adam update of the digits model with the batch split over 8 devices vs on 1 device.

    Tolerance: the 8-device gradient is summed in another order, so parameters may differ in the last
    bits: |difference| <= 1e-6, i.e. 0.1% of the size of the update (lr = 1e-3). Sampling chains hold
    no cross-chain sums, so samples split over 8 devices must match to 1e-5.
    """
    args = TINY + TINY_SAMPLING + ["--config.train.batch_size=16", "--config.train.steps=1",
                                   "--config.train.lr=1e-3", "--config.sample.batch_size=8"]
    over = [a[len("--config."):].split("=", 1) for a in args if a.startswith("--config.")]
    proc = subprocess.run([sys.executable, "-c", EIGHT_DEVICES, str(tmp_path), json.dumps(over)],
                          cwd=ROOT / "tests", env=subprocess_env(devices=8),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    print(r)  # the measured differences, for the record (pytest -s)
    assert r["devices"] == 8 and r["rows"] == "slice(0, 16, None)"  # one process holds every row
    assert r["step"] == 1
    assert r["param_diff"] <= 1e-6, r
    assert r["adam_diff"] <= 1e-6, r
    assert r["loss_rel_diff"] <= 1e-6, r
    assert r["sample_shape"] == [8, 8, 8, 1] and r["sample_diff"] <= 1e-5, r
    # The checkpoint of the 1-device run resumed on 8 devices, and the 8-device one on 1, end their
    # second step where the runs that stayed on their devices end (train state, to 1e-6).
    assert r["resumed_1to8"][0] == r["resumed_8to1"][0] == 2, r
    assert r["resumed_1to8"][1] <= 1e-6 and r["resumed_8to1"][1] <= 1e-6, r
    assert r["odd_batch_code"] == 2
    assert "train.batch_size = 12 is not divisible by the 8 devices in use; choose a multiple of 8" in r["odd_batch_message"]
    assert "Traceback" not in r["odd_batch_message"]


@pytest.mark.slow  # a subprocess run; runs in CI (the README's test command)
def test_two_processes_train_together_stop_together_and_agree(tmp_path):
    """Two CPU processes (one device each, gloo collectives) train the digits model together.

    Once training runs, process 1 alone gets SIGTERM: both stop at the same step with a checkpoint.
    launch/local_multiprocess.sh resumes them; the result is bitwise that of one process with 2
    devices (the same partial sums), both processes report the same parameter fingerprint, and only
    process 0 wrote metrics and samples (gathered from both).
    """
    args = TINY + TINY_SAMPLING + ["--config.train.steps=50", "--config.train.log_every=5",
                                   "--config.train.checkpoint_every=25"]
    wd, ref = tmp_path / "two", tmp_path / "ref"
    port = _free_port()
    procs = [subprocess.Popen(cli_command(wd, *args), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=subprocess_env(JAX_COORDINATOR_ADDRESS=f"localhost:{port}",
                                                            JAX_NUM_PROCESSES="2", JAX_PROCESS_ID=str(i)))
             for i in range(2)]
    try:
        wait_for(lambda: (wd / "metrics.jsonl").exists(), 400, "the first logged step", procs)
        procs[1].send_signal(signal.SIGTERM)
        outs = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            p.kill()
    errs = [e for _, e in outs]
    assert [p.returncode for p in procs] == [130, 130], errs
    assert "Stopped by a signal to another process at step" in errs[0] and "Traceback" not in errs[0]
    assert f"Stopped by signal {int(signal.SIGTERM)} at step" in errs[1] and "Traceback" not in errs[1]
    stop_step = int(errs[0].split("at step ")[1].split(";")[0])
    assert errs[1].split("at step ")[1].split(";")[0] == str(stop_step)
    assert 5 <= stop_step < 50 and checkpoint_steps(wd)[-1] == stop_step

    launch = subprocess.run(["bash", str(ROOT / "launch" / "local_multiprocess.sh"), "2", "--config", DIGITS,
                             "--workdir", str(wd), *args], cwd=ROOT, capture_output=True, text=True, timeout=400,
                            env=subprocess_env(PYTHON=sys.executable))
    assert launch.returncode == 0, launch.stdout + launch.stderr
    out = launch.stdout
    assert f"Resuming from the checkpoint at step {stop_step}" in out
    prints = [line.split("fingerprint ")[1] for line in out.splitlines() if "hold identical parameters" in line]
    assert len(prints) == 2 and prints[0] == prints[1], out
    wrote = [line for line in out.splitlines() if "Wrote 4 samples" in line]
    assert len(wrote) == 1 and wrote[0].startswith("[p0]"), out

    single = subprocess.run(cli_command(ref, *args), cwd=ROOT, capture_output=True, text=True, timeout=400,
                            env=subprocess_env(devices=2))
    assert single.returncode == 0, single.stderr
    assert bitwise_equal(final_state(wd, args), final_state(ref, args))
    # One line per logged step (only process 0 writes); the same losses wherever the window was whole
    # (the first line after the resume averages the steps since the stop only).
    logs = [[json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()] for d in (wd, ref)]
    assert [r["step"] for r in logs[0]] == [r["step"] for r in logs[1]] == list(range(5, 51, 5))
    whole = [(a["loss"], b["loss"]) for a, b in zip(*logs) if a["window_steps"] == 5]
    assert len(whole) >= 9 and all(a == b for a, b in whole)
    images = [np.load(d / "samples" / "samples.npz")["images"] for d in (wd, ref)]
    assert images[0].shape == (4, 8, 8, 1) and np.array_equal(images[0], images[1])


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


# Runs in a process with 8 fake CPU devices: two steps of a maximum-likelihood config (shrunk) on 1
# and on 8 devices; prints one JSON line of results.
ML_EIGHT_DEVICES = r"""
import json, sys
import jax, numpy as np
from ebmjax import parallel
from ebmjax.config import load_config
from ebmjax.train import loop
from scale_helpers import max_abs_diff, resume_on_other_devices

config, workdir, overrides = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
cfg = load_config(config, overrides)
out, states, losses = {}, {}, {}
for n in (1, 8):
    mesh = parallel.make_mesh(jax.devices()[:n])
    state, method, source = loop.train(cfg, f"{workdir}/d{n}", progress=False, mesh=mesh)
    leaves = jax.tree.leaves(state.carry)
    out[f"carry_devices_{n}"] = [len(x.sharding.device_set) for x in leaves]
    out[f"carry_rows_per_device_{n}"] = [sorted({s.data.shape[0] if s.data.ndim else 0 for s in x.addressable_shards})
                                         for x in leaves]  # 0: a scalar, on every device
    states[n] = jax.tree.map(np.asarray, state)
    losses[n] = [json.loads(line)["loss"] for line in open(f"{workdir}/d{n}/metrics.jsonl")]
out["networks"] = sorted(states[1].params)
out["step"] = int(states[8].step)
out["param_diff"] = max_abs_diff(states[1].params, states[8].params)
initial = method.init_params(jax.random.key(cfg.seed, impl="rbg"))  # the loop's initial parameters
out["moved"] = sorted(k for k in initial  # the networks that moved, so that comparing them means something
                     if max_abs_diff(states[1].params[k], jax.tree.map(np.asarray, initial[k])) > 1e-5)
out["adam_diff"] = max_abs_diff(states[1].opt_state, states[8].opt_state)
out["carry_diff"] = max_abs_diff(states[1].carry, states[8].carry) if leaves else 0.0
out["loss_diff"] = max(abs(a - b) for a, b in zip(losses[1], losses[8]))
out["skipped"] = [int(states[n].skipped) for n in (1, 8)]
# One step further on the other device count (issue 24): the checkpoint written on 1 device resumes
# on 8 and the one written on 8 on 1, each against the run that stayed where it was.
for moved, (step, diff, notes) in resume_on_other_devices(load_config(config, overrides + [["train.steps", "3"]]),
                                                          workdir).items():
    out[f"resumed_{moved}_step"], out[f"resumed_{moved}_diff"], out[f"resumed_{moved}_note"] = step, diff, notes
print(json.dumps(out))
"""

# (config, shrinking overrides, networks, rows of each carried array, networks two steps leave untouched):
# CF-EBM, the replay buffer of persistent chains with a label per row (64 rows each), multigrid's coarse starts (64 rows) with
# Malhotra's generator, coop (no carry). (MDSM: test_update_on_8_devices_equals_update_on_1.)
EIGHT_DEVICE_RUNS = {
    # CF-EBM: one network per stage; its carry is the count of images trained on (a scalar, 0 rows).
    "cfebm": ("cfebm_digits.py", ["--config.cfebm.resolutions=2,4,8", "--config.cfebm.widths=4,4,4",
                                  "--config.cfebm.head_width=4", "--config.cfebm.phase_images=16",
                                  "--config.cfebm.steps=2"], ["energy_2", "energy_4", "energy_8"], [0],
              "energy_8"),  # two steps of 16 images reach stage 4x4 only; the third fades 8x8 in
    # Persistent chains of a class-conditional energy: the replay buffer and the label of each of its
    # rows (64 each), split over the devices together.
    "pcd_conditional": ("ml_conditional_digits.py", ["--config.model.widths=4,8", "--config.ml.steps=5",
                                                     "--config.ml.buffer_size=64"], ["energy"], [64, 64]),
    "multigrid_gen": ("multigrid_gen_digits.py",
                      ["--config.multigrid.widths=4,8", "--config.multigrid.gen_width=4",
                       "--config.multigrid.gen_branch_width=2", "--config.multigrid.steps=3",
                       "--config.multigrid.coarse_buffer=64"],
                      ["energy_2", "energy_4", "energy_8", "generator"], [64]),
    "coop": ("coop_digits.py", ["--config.model.widths=4,8", "--config.coop.gen_widths=8,4", "--config.coop.steps=3",
                                "--config.coop.latent_dim=4"], ["energy", "generator"], []),
}


@pytest.mark.slow  # a subprocess run; runs in CI (the README's test command)
@pytest.mark.parametrize("run", sorted(EIGHT_DEVICE_RUNS))
def test_maximum_likelihood_updates_on_8_devices_equal_1(tmp_path, run):
    """Two updates of a maximum-likelihood config (shrunk) with the batch and the carried state split
    over 8 devices vs on 1 device: persistent chains (the second step draws replay-buffer rows the
    first wrote back, so the buffer's sharding, the draws and the write-back must agree across
    devices, not only the gradient), multigrid with Malhotra's generator (every grid's network and
    the generator; the coarse starts), and cooperative learning (energy and generator).

    Tolerance: as for MDSM, the 8-device gradient is summed in another order, so it may differ in
    the last bits. The loss is a difference of two nearly equal means, so some parameters' gradients
    are themselves at that level, and Adam with its default epsilon (1e-8) turns a gradient of 1e-9
    into a full step of +-lr whatever its sign: with train.eps = 1e-8 such parameters came out 2 lr
    apart while the Adam moments agreed to 1e-8. With train.eps = 1e-3 an update is proportional to
    the gradient for gradients below 1e-3, so the parameters compare the gradients themselves
    (|difference| <= 1e-6, against a change of > 1e-5 of every network). Langevin chains hold no
    cross-chain sums, so the carried state matches to 1e-5."""
    config, shrink, networks, rows, *still = EIGHT_DEVICE_RUNS[run]
    args = ["--config.model.width=4", "--config.model.blocks_per_stage=0", "--config.train.batch_size=16",
            "--config.train.steps=2", "--config.train.log_every=1", "--config.train.lr=1e-3",
            "--config.train.eps=1e-3", "--config.train.warmup_steps=0", "--config.sample.n=0", *shrink]
    over = [a[len("--config."):].split("=", 1) for a in args]
    proc = subprocess.run([sys.executable, "-c", ML_EIGHT_DEVICES, str(ROOT / "configs" / config),
                           str(tmp_path), json.dumps(over)],
                          cwd=ROOT / "tests", env=subprocess_env(devices=8),
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    print(r)  # the measured differences, for the record (pytest -s)
    assert r["step"] == 2 and r["skipped"] == [0, 0] and r["networks"] == networks
    assert r["carry_devices_8"] == [8] * len(rows) and r["carry_rows_per_device_8"] == [[n // 8] for n in rows]
    assert r["carry_devices_1"] == [1] * len(rows) and r["carry_rows_per_device_1"] == [[n] for n in rows]
    assert r["moved"] == [n for n in networks if n not in still], r  # so the comparison means something
    assert r["param_diff"] <= 1e-6, r
    assert r["adam_diff"] <= 1e-6, r
    assert r["carry_diff"] <= 1e-5, r
    assert r["loss_diff"] <= 1e-6, r
    # Resumed on the other device count: the run goes on, says so once, and ends where the run that
    # stayed on its devices ends, to the same tolerance (parameters, Adam, carried chains).
    for a, b in ((1, 8), (8, 1)):
        assert r[f"resumed_{a}to{b}_step"] == 3, r
        assert r[f"resumed_{a}to{b}_diff"] <= 1e-5, r
        s = "s" * (a > 1)
        assert r[f"resumed_{a}to{b}_note"] == [
            f"The checkpoint at step 2 was written by a run on {a} CPU device{s} in 1 process; this run has {b} CPU "
            f"device{'s' * (b > 1)} in 1 process. Checkpoints hold whole arrays, so it goes on: the batch and any "
            "carried chains are split over this run's devices, and sums over the batch come out in another order, "
            "so results differ from a run that stayed on the old devices in the last bits of floating point only."], r
