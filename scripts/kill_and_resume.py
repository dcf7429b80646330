"""Kill a run at chosen or random moments, resume it each time, and check that it ends exactly as a
run that was never killed.

    python scripts/kill_and_resume.py --config configs/mdsm_digits.py --workdir runs/killtest \
        [--kills 4] [--at time,checkpoint,shard] [--seed 0] [--json report.json] [--config.x.y=v ...]
    python scripts/kill_and_resume.py --config C --workdir W --mode eval --from runs/trained [...]

What it does, with the command ``python -m ebmjax.main --config C --workdir W/<name> --mode M [--config...]``
(``--mode train`` unless given; other modes start from copies of the trained workdir ``--from``):

1. ``W/unbroken``: the command runs to its end (training, then sampling when ``sample.n`` > 0);
   its wall time T is measured.
2. ``W/killed``: the command is started ``--kills`` times and each start is killed with SIGKILL (the
   whole process group: nothing gets to clean up) at the next moment of ``--at``, taken in turn:
   - ``time``: after a random share (0.1 to 0.9, drawn from ``--seed``) of T (a warm-up run first
     fills the compilation cache, so that T and the restarts do not include compiling); when the
     first start ends before its moment (the machine ran it faster than the unbroken run), it is
     started again from the same state with the moment half as far in, up to ``TIME_RETRIES`` times;
   - ``checkpoint``: as soon as a checkpoint write is under way (Orbax's temporary folder appears)
     while an older checkpoint exists, so that the kill costs a resume from that one;
   - ``shard``: as soon as a new sample shard (or its temporary file) appears;
   - ``step=N``: as soon as ``metrics.jsonl`` logs step N or later (e.g. a CF-EBM stage boundary).
   A start that ends before its moment comes is recorded as such, and ends the kills (the run is done).
3. ``W/killed`` is run once more, to its end.

Checks (exit code 1 if one fails): every restart resumes from the newest checkpoint that was
complete when it was killed, reads no damaged checkpoint, and loses only the steps since that
checkpoint; the final train state (parameters, optimiser, carried chains, step) is bitwise that of
the unbroken run, and so are every loss logged over a whole window and every array file the runs
wrote (samples and their shards, restorations, translations; for ``--mode eval`` also the report's
figures). A table of the kills and the verdict are printed; ``--json``
writes them. Runs share a JAX compilation cache (``W/jax_cache``) so restarts skip compiling.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np

from ebmjax.train.checkpoint import complete_steps

POLL_S = 0.002
START_LIMIT_S = 3600
TIME_RETRIES = 3  # a first "time" kill that came after the run ended is retried this often, each moment half as far in


def command(config: str, workdir: pathlib.Path, overrides: list[str], mode: str = "train") -> list[str]:
    return [sys.executable, "-m", "ebmjax.main", "--config", config, "--workdir", str(workdir), "--mode", mode,
            "--no-progress", *overrides]


def checkpoint_steps(workdir: pathlib.Path) -> list[int]:
    return complete_steps(workdir / "checkpoints")


def logged_step(workdir: pathlib.Path) -> int:
    """The last step ``metrics.jsonl`` records (a line cut short by the kill is skipped)."""
    path = workdir / "metrics.jsonl"
    if not path.exists():
        return 0
    steps = [0]
    for line in path.read_text().splitlines():
        try:
            steps.append(int(json.loads(line)["step"]))
        except (ValueError, KeyError, TypeError):
            pass
    return max(steps)


def checkpoint_writes(workdir: pathlib.Path) -> set[str]:
    d = workdir / "checkpoints"
    return {p.name for p in d.iterdir() if "orbax-checkpoint-tmp" in p.name} if d.is_dir() else set()


def shard_files(workdir: pathlib.Path) -> set[str]:
    return {str(p) for p in workdir.glob("samples*/shards/*/*") if "shard_" in p.name}


def moment_reached(moment: str, workdir: pathlib.Path, before: dict, started: float, delay: float) -> bool:
    if moment == "time":
        return time.monotonic() - started >= delay
    if moment == "checkpoint":  # a write under way, with an older checkpoint to fall back to
        return bool(checkpoint_writes(workdir) - before["writes"]) and bool(checkpoint_steps(workdir))
    if moment == "shard":
        return bool(shard_files(workdir) - before["shards"])
    if moment.startswith("step="):
        return logged_step(workdir) >= int(moment.split("=", 1)[1])
    raise ValueError(moment)


def parse_moments(text: str) -> list[str]:
    moments = [m.strip() for m in text.split(",") if m.strip()]
    for m in moments:
        if m not in ("time", "checkpoint", "shard") and not re.fullmatch(r"step=\d+", m):
            raise SystemExit(f"kill_and_resume: unknown moment {m!r} in --at; use time, checkpoint, shard or step=N.")
    return moments or ["time"]


def run_to_end(cmd: list[str], env: dict, log: pathlib.Path) -> float:
    t0 = time.monotonic()
    with log.open("a") as out:
        proc = subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=START_LIMIT_S)
    if proc.returncode != 0:
        raise SystemExit(f"kill_and_resume: {' '.join(cmd)} failed with exit code {proc.returncode}; see {log}.")
    return time.monotonic() - t0


def start_and_kill(cmd: list[str], env: dict, workdir: pathlib.Path, moment: str, delay: float,
                   log: pathlib.Path) -> dict:
    """One start of ``cmd``, killed at ``moment``; what was on disk then."""
    before = {"writes": checkpoint_writes(workdir), "shards": shard_files(workdir), "ckpt": checkpoint_steps(workdir)}
    with log.open("a") as out:
        out.write(f"\n=== start, to be killed at {moment} ===\n")
        out.flush()
        started = time.monotonic()
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        while proc.poll() is None and not moment_reached(moment, workdir, before, started, delay):
            if time.monotonic() - started > START_LIMIT_S:
                break
            time.sleep(POLL_S)
        killed = proc.poll() is None
        if killed:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    steps = checkpoint_steps(workdir)
    record = {"moment": moment, "after_s": round(time.monotonic() - started, 2), "killed": killed,
              "exit_code": None if killed else proc.returncode,
              "logged_step": logged_step(workdir), "checkpoint": steps[-1] if steps else 0}
    record["lost_steps"] = max(0, record["logged_step"] - record["checkpoint"])
    return record


def resumed_from(log_text: str) -> int:
    found = re.findall(r"Resuming from the checkpoint at step (\d+)", log_text)
    return int(found[-1]) if found else 0


def load_state(config: str, overrides: list[str], workdir: pathlib.Path):
    import jax

    from ebmjax.config import load_config
    from ebmjax.train import loop

    pairs = [tuple(a[len("--config."):].split("=", 1)) for a in overrides if a.startswith("--config.")]
    state, _, _ = loop.load_trained(load_config(config, pairs), workdir)
    return jax.tree.map(np.asarray, state)


def same_arrays(a, b) -> bool:
    import jax

    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(la) == len(lb) and all(np.array_equal(x, y) for x, y in zip(la, lb))


# Arrays that record a clock, not a result (a sample shard's drawing seconds): compared for presence only.
CLOCKS = ("seconds",)


def same_files(a: pathlib.Path, b: pathlib.Path) -> bool | None:
    """Whether two .npz files hold equal arrays, clocks aside (None when neither exists)."""
    if not a.exists() and not b.exists():
        return None
    if not (a.exists() and b.exists()):
        return False
    with np.load(a) as fa, np.load(b) as fb:
        return sorted(fa.files) == sorted(fb.files) and all(np.array_equal(fa[k], fb[k]) for k in fa.files
                                                            if k not in CLOCKS)


def outputs(workdir: pathlib.Path) -> dict[str, pathlib.Path]:
    """Every array file a run wrote (samples, shards, restorations, translations, evaluation caches),
    by path relative to ``workdir``; checkpoints are compared as train states instead."""
    return {str(p.relative_to(workdir)): p for p in sorted(workdir.rglob("*.npz"))
            if not str(p.relative_to(workdir)).startswith(("checkpoints", "jax_cache"))}


def different_outputs(a: pathlib.Path, b: pathlib.Path) -> list[str]:
    """The array files of ``a`` that ``b`` lacks or holds other values in, and an evaluation report
    whose figures differ."""
    fa, fb = outputs(a), outputs(b)
    bad = [name for name in fa if name not in fb or not same_files(fa[name], fb[name])]
    ra, rb = a / "eval" / "report.json", b / "eval" / "report.json"
    if ra.exists() and (not rb.exists() or json.loads(ra.read_text()).get("metrics") != json.loads(rb.read_text()).get("metrics")):
        bad.append("eval/report.json")
    return bad


def same_losses(a: pathlib.Path, b: pathlib.Path) -> bool:
    """Whether every step logged in both ``metrics.jsonl`` over a whole window (the first line after a
    resume averages fewer steps) has the same loss."""
    def losses(w):
        lines = (w / "metrics.jsonl").read_text().splitlines() if (w / "metrics.jsonl").exists() else []
        return {r["step"]: (r["window_steps"], r["loss"]) for r in map(json.loads, lines)}
    la, lb = losses(a), losses(b)
    return sorted(la) == sorted(lb) and all(la[s][1] == lb[s][1] for s in la if la[s][0] == lb[s][0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--workdir", required=True, type=pathlib.Path, help="holds unbroken/, killed/ and the logs")
    parser.add_argument("--kills", type=int, default=4)
    parser.add_argument("--at", default="time,checkpoint,shard", help="moments, taken in turn (see the module doc)")
    parser.add_argument("--mode", default="train", help="the run's --mode (train, sample, eval, inpaint, denoise, translate)")
    parser.add_argument("--from", dest="start", type=pathlib.Path,
                        help="a trained workdir both runs start as a copy of (needed for modes other than train)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=pathlib.Path)
    args, overrides = parser.parse_known_args(argv)
    bad = [a for a in overrides if not a.startswith("--config.")]
    if bad:
        parser.error(f"unknown arguments {bad}; config overrides look like --config.train.steps=200")
    moments = parse_moments(args.at)
    if args.workdir.exists() and any(args.workdir.iterdir()):
        parser.error(f"--workdir {args.workdir} is not empty; pass a new one")
    args.workdir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.setdefault("JAX_COMPILATION_CACHE_DIR", str(args.workdir / "jax_cache"))
    env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    rng = np.random.default_rng(args.seed)

    if args.mode != "train" and args.start is None:
        parser.error(f"--mode {args.mode} needs --from <a trained workdir>")
    ref, wd = args.workdir / "unbroken", args.workdir / "killed"

    def fresh(workdir):
        """``workdir`` as every run starts it: empty, or a copy of ``--from``."""
        shutil.rmtree(workdir, ignore_errors=True)
        if args.start is not None:
            shutil.copytree(args.start, workdir)

    for name in ["warmup", "unbroken", "killed"] if "time" in moments else ["unbroken", "killed"]:
        fresh(args.workdir / name)

    def cmd(workdir):
        return command(args.config, workdir, overrides, args.mode)

    if "time" in moments:  # random times are shares of a run that does not compile: compile once first
        print("Warm-up run (fills the compilation cache) ...", flush=True)
        run_to_end(cmd(args.workdir / "warmup"), env, args.workdir / "warmup.log")
    print(f"Unbroken run in {ref} ...", flush=True)
    wall = run_to_end(cmd(ref), env, args.workdir / "unbroken.log")
    print(f"  {wall:.1f} s", flush=True)

    kills = []
    for i in range(args.kills):
        moment = moments[i % len(moments)]
        delay = float(rng.uniform(0.1, 0.9)) * wall
        log = args.workdir / f"killed_{i}.log"
        rec = start_and_kill(cmd(wd), env, wd, moment, delay, log)
        retries = 0
        while not rec["killed"] and moment == "time" and i == 0 and retries < TIME_RETRIES:
            # The run ended before its random moment (it ran faster than the unbroken run, on a machine
            # whose load changed): start again from the same state, the moment half as far in.
            fresh(wd)
            retries, delay = retries + 1, delay / 2
            rec = start_and_kill(cmd(wd), env, wd, moment, delay, log)
        rec["retries"] = retries
        kills.append(rec)
        print(f"  start {i}: {'killed' if rec['killed'] else 'ended (exit ' + str(rec['exit_code']) + ')'} at "
              f"{moment} after {rec['after_s']} s; logged step {rec['logged_step']}, newest checkpoint "
              f"{rec['checkpoint']}", flush=True)
        if not rec["killed"]:  # the run got to its end before the moment came: nothing left to kill
            break
    final_log = args.workdir / "killed_final.log"
    run_to_end(cmd(wd), env, final_log)

    # Each start after a kill resumed from the newest complete checkpoint of the moment of the kill.
    logs = [args.workdir / f"killed_{i}.log" for i in range(1, len(kills))] + [final_log]
    problems = []
    for rec, log in zip(kills, logs):
        if not rec["killed"]:
            continue
        text = log.read_text()
        rec["resumed_from"] = resumed_from(text)
        if args.mode == "train" and rec["resumed_from"] != rec["checkpoint"]:
            problems.append(f"after the kill at {rec['moment']} the run resumed from step {rec['resumed_from']}, "
                            f"not from the newest checkpoint {rec['checkpoint']}")
        if "cannot be read" in text:
            problems.append(f"a checkpoint was damaged by the kill at {rec['moment']} (see {log})")
    state_equal = same_arrays(load_state(args.config, overrides, ref), load_state(args.config, overrides, wd))
    if not state_equal:
        problems.append("the final train state differs from the unbroken run's")
    samples_equal = same_files(ref / "samples" / "samples.npz", wd / "samples" / "samples.npz")
    if samples_equal is False:
        problems.append("the samples differ from the unbroken run's")
    outputs_differ = different_outputs(ref, wd)
    if outputs_differ:
        problems.append(f"these outputs differ from the unbroken run's: {', '.join(outputs_differ)}")
    metrics_equal = same_losses(ref, wd)
    if not metrics_equal:
        problems.append("a logged loss differs from the unbroken run's")
    report = {"config": args.config, "overrides": overrides, "unbroken_s": round(wall, 2), "kills": kills,
              "mode": args.mode, "state_equal": state_equal, "samples_equal": samples_equal,
              "metrics_equal": metrics_equal, "outputs_compared": sorted(outputs(ref)), "outputs_differ": outputs_differ,
              "max_lost_steps": max([k["lost_steps"] for k in kills if k["killed"]], default=0),
              "problems": problems}
    print(f"{sum(k['killed'] for k in kills)} kills; most steps lost to one kill: {report['max_lost_steps']}; final "
          f"state {'bitwise equal to' if state_equal else 'DIFFERENT from'} the unbroken run's"
          + ("" if samples_equal is None else f"; samples {'equal' if samples_equal else 'DIFFERENT'}"), flush=True)
    for p in problems:
        print(f"PROBLEM: {p}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
