"""Compare methods: ``python -m ebmjax.compare [--configs C ...] [--workdir runs/compare]``.

Trains every config of a suite (``--suite digits``, the default: every bundled-digits demo, one per
method; ``--suite mnist``: every recipe on the bundled MNIST digits) or of ``--configs`` in its own
sub-workdir
``<workdir>/<config name>/``, draws the same number of samples from each, evaluates them with the
same ``--mode eval`` metrics and writes

- ``<workdir>/table.md`` and ``<workdir>/table.json``: one row per config, the same columns for
  every method (the dataset's judge's confident share and label entropy, and FID/KID/IS in its
  features: on digits the digits classifier, on MNIST the RBF-SVM judge, the one
  ``scripts/mnist_quality.py`` uses; Inception's on other data when
  ``--config.eval.inception_weights`` is given;
  nearest-training-image distance ratio, mode coverage, OOD AUROC of the energy on each standard OOD
  set, training and sampling speed, and the time the run spent training and sampling by its own clocks,
  summed over interruptions, so a comparison that resumed, or a run trained before it, counts in full);
- ``<workdir>/samples.png``: one labelled row of samples per method.

Each config runs as its own ``python -m ebmjax.main`` process (so each keeps its own device
settings, and a crash stays in its row). Every stage that finishes is recorded in
``<workdir>/<name>/compare.json``; run the same command again after an interruption and only the
missing stages run (training also resumes from its last checkpoint). A config whose training,
sampling or evaluation fails is reported in its row, with the last line of its log, and the others
go on. ``--config.a.b=value`` overrides apply to every config (e.g. to shrink a smoke test).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import pathlib
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ebmjax.errors import ConfigError, EbmjaxError

log = logging.getLogger(__name__)

# Every recipe with its own method, per bundled dataset (the translation recipes train on bold digits
# from chains started at plain ones, and are judged by scripts/translate_quality.py instead).
SUITES = {
    "digits": ("configs/mdsm_digits.py", "configs/ml_digits.py", "configs/pcd_digits.py",
               "configs/multigrid_digits.py", "configs/multigrid_gen_digits.py", "configs/coop_digits.py",
               "configs/cfebm_digits.py"),
    "mnist": ("configs/mdsm_mnist.py", "configs/ml_mnist.py", "configs/pcd_mnist.py", "configs/multigrid_mnist.py",
              "configs/multigrid_gen_mnist.py", "configs/coop_mnist.py", "configs/cfebm_mnist.py"),
}
SUITE_WORKDIRS = {"digits": "runs/compare", "mnist": "runs/compare_mnist"}  # where each suite's runs go by default
# What --mode eval computes for the table: no AIS (its bound is not comparable across methods whose
# energies are trained at different temperatures, and it is the slow part).
EVAL_METRICS = "fid,ood,neighbours,coverage"
STAGES = ("train", "eval")
ROW_SAMPLES = 12  # samples shown per method in samples.png


def _record_path(sub: pathlib.Path) -> pathlib.Path:
    return sub / "compare.json"


def _load_record(sub: pathlib.Path) -> dict[str, Any]:
    path = _record_path(sub)
    return json.loads(path.read_text()) if path.exists() else {}


def _save_record(sub: pathlib.Path, record: dict[str, Any]) -> None:
    tmp = _record_path(sub).with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(_record_path(sub))


def _done(record: dict[str, Any], stage: str) -> bool:
    """Whether ``stage`` ran to the end (it is recorded, without a failure)."""
    return stage in record and record[stage].get("failure") is None


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def _run_stage(args: list[str], log_path: pathlib.Path) -> tuple[float, str | None]:
    """Runs ``python -m ebmjax.main ARGS`` with its output appended to ``log_path``; returns (seconds,
    None) or (seconds, the reason it failed)."""
    t0 = time.perf_counter()
    with open(log_path, "a") as f:
        f.write(f"$ python -m ebmjax.main {' '.join(args)}\n")
        f.flush()
        done = subprocess.run([sys.executable, "-m", "ebmjax.main", *args], stdout=f, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - t0
    if done.returncode == 0:
        return seconds, None
    tail = _last_line(log_path.read_text())
    return seconds, f"exit code {done.returncode}: {tail}"


def _training_seconds(metrics_path: pathlib.Path) -> tuple[float | None, int | None, float | None]:
    """(seconds spent in training steps, steps, images per second) from ``metrics.jsonl``: every logged
    window's steps over its rate; the speed leaves out the first window, which holds the compilation."""
    if not metrics_path.exists():
        return None, None, None
    windows = [r for r in map(json.loads, metrics_path.read_text().splitlines())
               if r.get("steps_per_s") and r.get("window_steps")]
    if not windows:
        return None, None, None
    seconds = sum(r["window_steps"] / r["steps_per_s"] for r in windows)
    later = windows[1:] or windows
    steps_per_s = sum(r["window_steps"] for r in later) / sum(r["window_steps"] / r["steps_per_s"] for r in later)
    return seconds, int(windows[-1]["step"]), steps_per_s


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None


def _sampling_seconds(summary: dict[str, Any]) -> float | None:
    """Every batch's drawing time, also of batches an earlier call drew (``drawing_seconds``); from a
    summary older than that field, its call's own seconds when it reused nothing, else unknown."""
    if "drawing_seconds" in summary:
        return _num(summary["drawing_seconds"])
    return _num(summary.get("seconds")) if not summary.get("batches_reused") else None


def row_figures(sub: pathlib.Path) -> dict[str, Any]:
    """The table's figures for one finished sub-workdir (None where a figure is missing)."""
    out: dict[str, Any] = {}
    summary_path = sub / "samples" / "summary.json"
    if summary_path.exists():
        summary = json.loads(summary_path.read_text())
        quality = summary.get("quality") or {}
        out.update(method=summary.get("method"), n_samples=summary.get("n"),
                   confident_share=_num(quality.get("confident_share")),
                   label_entropy=_num(quality.get("label_entropy")),
                   sample_img_steps_per_s=_num(summary.get("img_steps_per_s")),
                   chain_steps=summary.get("chain_steps"), sample_s=_sampling_seconds(summary))
    # The run's own clocks, summed over every interruption and resume (a stage's wall time would count
    # only the last call, and start-up): its logged training windows, and the drawing of every batch.
    train_s, steps, steps_per_s = _training_seconds(sub / "metrics.jsonl")
    out.update(train_steps=steps, train_steps_s=train_s, train_img_per_s=None)
    config_path = sub / "config.json"
    if config_path.exists() and steps_per_s:
        out["train_img_per_s"] = steps_per_s * json.loads(config_path.read_text())["train"]["batch_size"]
    report_path = sub / "eval" / "report.json"
    if report_path.exists():
        m = json.loads(report_path.read_text())["metrics"]
        # FID/KID/IS in the features of the dataset's judge (a section named after the dataset), else
        # Inception's (when its weights were given): never mixed within one table, since a table
        # compares one dataset.
        nets = {name: r for name, r in (m.get("fid") or {}).items() if isinstance(r, dict) and "samples_vs_test" in r}
        net = next((n for n in nets if n != "inception"), "inception" if "inception" in nets else None)
        fid = nets[net]["samples_vs_test"] if net else {}
        out.update(fid_network=net, fid=_num(fid.get("fid")), kid=_num(fid.get("kid")),
                   inception_score=_num(fid.get("is")))
        out["nn_ratio"] = _num((m.get("neighbours") or {}).get("ratio_sample_to_test"))
        out["modes_covered"] = (m.get("coverage") or {}).get("modes_covered")
        out["ood_auroc"] = {name: _num(s.get("auroc")) for name, s in ((m.get("ood") or {}).get("sets") or {}).items()}
    return out


def run_config(config: str, workdir: pathlib.Path, n_samples: int, overrides: Sequence[str]) -> dict[str, Any]:
    """Trains, samples and evaluates one config in ``workdir/<name>/`` (stages already recorded as
    done are skipped); returns its row."""
    name = pathlib.Path(config).stem
    sub = workdir / name
    sub.mkdir(parents=True, exist_ok=True)
    record = _load_record(sub)
    record.setdefault("config", config)
    common = ["--config", config, "--workdir", str(sub), "--no-progress", f"--config.sample.n={n_samples}",
              f"--config.eval.samples_file={sub / 'samples' / 'samples.npz'}", f"--config.eval.metrics={EVAL_METRICS}",
              *overrides]
    log_path = sub / "compare.log"
    for stage in STAGES:
        if _done(record, stage):
            continue
        log.info("%s: %s", name, "training and sampling" if stage == "train" else "evaluating")
        args = common if stage == "train" else [*common, "--mode", "eval"]
        seconds, failure = _run_stage(args, log_path)
        record[stage] = {"seconds": seconds, "failure": failure}
        _save_record(sub, record)
        if failure is not None:
            log.warning("%s: %s failed (%s); see %s", name, stage, failure, log_path)
            break
    failure = next((f"{stage}: {record[stage]['failure']}" for stage in STAGES
                    if stage in record and not _done(record, stage)), None)
    return {"name": name, "config": config, "failure": failure, "log": str(log_path),
            "eval_s": (record.get("eval") or {}).get("seconds"), **row_figures(sub)}


def _fmt(x: Any, spec: str) -> str:
    return "–" if x is None else format(x, spec)


def table_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """``table.md``: one row per config; failures say where they failed."""
    ood_sets = sorted({s for r in rows for s in (r.get("ood_auroc") or {})})
    nets = {r.get("fid_network") for r in rows if r.get("fid_network")}
    net = nets.pop() if len(nets) == 1 else "mixed"
    head = (["method", "config", "recognised (p >= 0.9)", "label entropy", f"FID ({net})", f"KID ({net})", f"IS ({net})",
             "nn ratio", "modes"] + [f"OOD AUROC {s}" for s in ood_sets]
            + ["train steps", "train (img/s)", "sampling (img-steps/s)", "training", "sampling", "eval"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if r.get("failure"):
            lines.append(f"| {r.get('method') or '?'} | `{r['name']}` | failed in {r['failure']} (log: "
                         f"`{r['log']}`) |" + " |" * (len(head) - 3))
            continue
        ood = r.get("ood_auroc") or {}
        cells = [r.get("method") or "?", f"`{r['name']}`", _fmt(r.get("confident_share"), ".2f"),
                 _fmt(r.get("label_entropy"), ".2f"), _fmt(r.get("fid"), ".1f"), _fmt(r.get("kid"), ".3g"),
                 _fmt(r.get("inception_score"), ".2f"), _fmt(r.get("nn_ratio"), ".2f"),
                 _fmt(r.get("modes_covered"), "d"), *(_fmt(ood.get(s), ".2f") for s in ood_sets),
                 _fmt(r.get("train_steps"), ",d"), _fmt(r.get("train_img_per_s"), ",.0f"),
                 _fmt(r.get("sample_img_steps_per_s"), ",.0f"),
                 *("–" if r.get(k) is None else f"{r[k] / 60:.1f} min" for k in ("train_steps_s", "sample_s", "eval_s"))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def save_samples_picture(rows: Sequence[dict[str, Any]], workdir: pathlib.Path, path: pathlib.Path) -> bool:
    """``samples.png``: the first ``ROW_SAMPLES`` samples of every config that has them, one row each,
    labelled with the method and config. Returns whether there was anything to draw."""
    from ebmjax import visualize

    shown = []
    for r in rows:
        f = workdir / r["name"] / "samples" / "samples.npz"
        if f.exists():
            with np.load(f) as z:
                shown.append((f"{r.get('method') or '?'} ({r['name']})", z["images"][:ROW_SAMPLES]))
    if not shown:
        return False
    visualize.save_labelled_rows(shown, path, title=f"the first {ROW_SAMPLES} samples of every method")
    return True


def compare(configs: Sequence[str], workdir: pathlib.Path, n_samples: int, overrides: Sequence[str]) -> list[dict]:
    """Runs every config (resuming what is done) and writes the table and the picture."""
    missing = [c for c in configs if not pathlib.Path(c).is_file()]
    if missing:
        raise ConfigError(f"No config file {', '.join(missing)}. Run from the repository root (the default configs "
                          "live in configs/) or pass --configs with paths to config files.")
    if n_samples < 1:
        raise ConfigError(f"--n-samples must be >= 1, got {n_samples}.")
    workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, config in enumerate(configs):
        log.info("[%d/%d] %s", i + 1, len(configs), config)
        rows.append(run_config(config, workdir, n_samples, overrides))
        # Written after every config, so an interrupted comparison still leaves a table of what ran.
        (workdir / "table.json").write_text(json.dumps(rows, indent=1))
        (workdir / "table.md").write_text(table_markdown(rows))
    save_samples_picture(rows, workdir, workdir / "samples.png")
    return rows


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    """The options, and the ``--config.a.b=value`` overrides as arguments for every config's run."""
    from ebmjax.apps.main import parse_with_overrides  # one parser for --config.a.b=value overrides

    parser = argparse.ArgumentParser(prog="python -m ebmjax.compare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", default="digits", choices=sorted(SUITES),
                        help="the recipes to compare: digits (every bundled-digits demo) or mnist (every MNIST recipe)")
    parser.add_argument("--configs", nargs="+", default=None, help="config files to compare instead of a suite")
    parser.add_argument("--workdir", default=None, help="where the runs, table and picture go (default: "
                        "the suite's, SUITE_WORKDIRS: runs/compare for digits, runs/compare_mnist for mnist)")
    parser.add_argument("--n-samples", type=int, default=300, help="samples drawn from every method")
    args, overrides = parse_with_overrides(parser, argv)
    if args.configs is None:
        args.configs = list(SUITES[args.suite])
    if args.workdir is None:
        args.workdir = SUITE_WORKDIRS[args.suite]
    return args, [f"--config.{key}={value}" for key, value in overrides]


def run(argv: Sequence[str]) -> int:
    args, overrides = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    try:
        rows = compare(args.configs, pathlib.Path(args.workdir), args.n_samples, overrides)
    except EbmjaxError as e:
        print(f"ebmjax.compare: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ebmjax.compare: interrupted; run the same command again to resume.", file=sys.stderr)
        return 130
    workdir = pathlib.Path(args.workdir)
    print(table_markdown(rows))
    print(f"Wrote {workdir / 'table.md'}, {workdir / 'table.json'} and {workdir / 'samples.png'}.")
    failed = [r["name"] for r in rows if r["failure"]]
    if failed:
        print(f"ebmjax.compare: {len(failed)} of {len(rows)} configs failed: {', '.join(failed)} (see their rows).",
              file=sys.stderr)
        return 1
    return 0


def main() -> None:
    sys.exit(run(sys.argv[1:]))

