"""Regenerates the figures of the digits tables in docs/ from a fresh checkout, with the documented commands.

    python scripts/docs_figures.py [--out runs/readme] [--seeds 0 1 2] [--parts demo,eval,restore,toy,bench]
                                     [--pictures docs/figures] [--results docs/results.md]

Each part runs the commands a user would run (``python -m ebmjax.main ...``, ``python -m ebmjax.bench
...``) as subprocesses, times them, and reads what they wrote:

- ``demo``: the digits demo (train + sample) once per training seed (``--config.seed``), each sample
  set judged by ``scripts/digits_quality.py`` (a classifier ebmjax does not train against);
- ``ml``: the other methods' digits configs (short-run and persistent chains, multigrid,
  cooperative learning), trained, sampled and judged the same way, training seed 0;
- ``collapse``: Malhotra's "mode collapse" (§V): ``multigrid_digits`` and ``multigrid_gen_digits``
  trained 4x longer (``COLLAPSE_TRAIN``), every checkpoint scored by ``--mode eval
  --config.eval.checkpoints=all`` (``COLLAPSE_SCAN``), both scans drawn in one picture;
- ``eval``: ``--mode eval`` on the first seed's run (every metric of the digits config), timed;
- ``restore``: ``--mode inpaint`` and ``--mode denoise`` on the first seed's run;
- ``mnist_restore``: the same on the ``mnist_mdsm`` part's run (``RESTORE["mnist_restore"]``: the bottom
  half of 64 test digits hidden, 4 chains each; 100 test digits with noise), after that part;
- ``toy``: the eight-Gaussians demo (``configs/mdsm_toy2d.py``): mode shares of the data, of the
  annealed samples and of T = 1 chains, and the masses the learned density gives the modes;
- ``conditional``: ``configs/ml_conditional_digits.py`` (a class-conditional energy, one grid row per
  class) judged as above plus the share the judge gives the class asked for; a persistent-chain model of
  the bold digits (``CONDITIONAL_BOLD``); class 3 alone and class 3 times the bold-digit model
  (``--mode compose``), with their ink, in ``compose_bold3.png``;
- ``mdsm_conditional``, ``multigrid_conditional``, ``coop_conditional``, ``cfebm_conditional``:
  ``configs/<part>_digits.py`` (class-conditional MDSM, multigrid, cooperative learning and CF-EBM, one
  grid row per class), judged as above plus the share the judge gives the class asked for;
- ``jem``: ``configs/jem_digits.py`` and the same network trained as a plain classifier
  (``--config.jem.generative_weight=0``), then the variants of ``JEM_VARIANTS``, each trained, judged
  and evaluated (``--mode eval``: accuracy, calibration, OOD AUROC by energy and by max-softmax);
- ``bench``: ``python -m ebmjax.bench --config configs/mdsm_digits.py --compare-torch`` (skipped when
  torch is not installed: ``pip install torch``);
- ``bench_cifar``: the same on the CIFAR network (Res18 d=128) at batch 8 (see ``CIFAR_BENCH``);
- ``bench_mnist``: ``python -m ebmjax.bench`` (``BENCH_MNIST``) on each unconditional MNIST recipe, one
  after another: its training step (chains included) and the sampler ``--mode sample`` runs;
- ``mnist_<recipe>`` (one part per entry of ``MNIST_RECIPES``): ``configs/<recipe>_mnist.py`` on the
  5,000 bundled MNIST digits, trained and sampled once (seed 0) and judged by
  ``scripts/mnist_quality.py`` (the mnist5k judge: recognised, label entropy, nn ratio, FD in the
  judge's features; with the share judged as the class asked for when the recipe is class-conditional);
- ``mnist_compose``: ``configs/translate_mnist.py`` trained (its energy is that of bold digits), then
  ``--mode compose`` of the ``mnist_jem`` part's run (class 3) with it, at each weight of
  ``MNIST_COMPOSE_WEIGHTS``, the same chains each time; ink and the judge's figures, and
  ``mnist_compose_bold3.png``.

Writes ``<out>/figures.json`` (everything, with each part's commands, commit, date and machine) and
``<out>/figures.md`` (the tables of docs/); with ``--results docs/results.md`` the results page (every
part measured so far, each table under its commands and commit; the sections of parts not in
``figures.json`` are kept from the page as it was), and with ``--pictures DIR`` copies
the pictures the docs show into DIR. Runs that already finished are
reused (training resumes, sampling reuses its shards), so a second call only redoes what is missing;
delete ``<out>`` to start afresh. The whole set takes about 25 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import functools
import json
import pathlib
import shutil
import subprocess
import sys
import time
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
DIGITS = "configs/mdsm_digits.py"
TOY = "configs/mdsm_toy2d.py"
ML_CONFIGS = ("configs/ml_digits.py", "configs/pcd_digits.py", "configs/multigrid_digits.py",
              "configs/multigrid_gen_digits.py", "configs/coop_digits.py")
PARTS = ("demo", "ml", "collapse", "eval", "restore", "toy", "conditional", "mdsm_conditional",
         "multigrid_conditional", "coop_conditional", "cfebm_conditional", "jem", "bench", "bench_cifar")
# The MNIST recipes (configs/<recipe>_mnist.py), one part each, as a user runs them: train + sample, then
# the MNIST judge. Each takes minutes to the better part of an hour on 2 cores (docs/mnist.md).
MNIST_RECIPES = {f"mnist_{recipe}": f"configs/{recipe}_mnist.py" for recipe in (
    "pcd", "ml", "mdsm", "multigrid", "multigrid_gen", "coop", "cfebm", "ml_conditional", "mdsm_conditional",
    "multigrid_conditional", "coop_conditional", "cfebm_conditional", "jem")}
PARTS += tuple(MNIST_RECIPES) + ("mnist_restore", "mnist_compose", "bench_mnist")
# MNIST recipes whose part also runs --mode eval with these settings (a classifier's accuracy,
# calibration and OOD AUROC).
MNIST_EVAL = {"mnist_jem": ["--config.eval.metrics=classifier,ood"]}
CONDITIONAL = "configs/ml_conditional_digits.py"
# The parts that train one class-conditional recipe each and judge it (conditional_run).
CONDITIONAL_RECIPES = {part: f"configs/{part}_digits.py"
                       for part in ("mdsm_conditional", "multigrid_conditional", "coop_conditional", "cfebm_conditional")}
# The bold-digit model class 3 is multiplied by: configs/pcd_digits.py on the 2x2-dilated digits.
CONDITIONAL_BOLD = ["--config.data.name=digits_bold", "--config.ml.energy_l2=1", "--config.sample.n=100",
                    "--config.sample.batch_size=100"]
# The restoration parts: the config, the run they restore with (relative to --out), the part that trains
# that run, and each mode's settings.
RESTORE = {
    "restore": (DIGITS, "digits_seed{seed}", "demo", {"inpaint": [], "denoise": []}),
    "mnist_restore": (MNIST_RECIPES["mnist_mdsm"], pathlib.Path(MNIST_RECIPES["mnist_mdsm"]).stem, "mnist_mdsm", {
        "inpaint": ["--config.restore.mask=half", "--config.restore.n=64", "--config.restore.n_chains=4"],
        "denoise": ["--config.restore.n=100"]}),
}
# bench_mnist: the unconditional MNIST recipes, each timed alone by the benchmark (no PyTorch twin exists).
BENCH_MNIST_CONFIGS = tuple(MNIST_RECIPES[f"mnist_{r}"] for r in ("mdsm", "ml", "pcd", "multigrid", "multigrid_gen",
                                                                   "coop", "cfebm"))
BENCH_MNIST = ["--what", "train,langevin", "--min-seconds", "2", "--min-calls", "2"]
# mnist_compose: the weights of the bold-digit energy multiplied into jem_mnist's class 3 (0: the class alone).
MNIST_COMPOSE_WEIGHTS = (0, 0.5, 1)
JEM = "configs/jem_digits.py"
JEM_VARIANTS = {  # what else was tried for the recipe (seed 0 each)
    "plain classifier (jem.generative_weight = 0)": ["--config.jem.generative_weight=0"],
    "jem.classifier_weight = 3": ["--config.jem.classifier_weight=3"],
    "ml.energy_l2 = 0.1": ["--config.ml.energy_l2=0.1"],
}
# Malhotra §V's mode collapse: multigrid with and without its generator trained 4x longer than their
# configs, a checkpoint every 500 steps, every checkpoint scored by --mode eval's scan.
COLLAPSE_CONFIGS = {"multigrid": "configs/multigrid_digits.py", "multigrid + generator": "configs/multigrid_gen_digits.py"}
COLLAPSE_TRAIN = ["--config.train.steps=6000", "--config.train.checkpoint_every=500", "--config.train.keep_checkpoints=12",
                  "--config.sample.n=0"]
COLLAPSE_SCAN = ["--mode", "eval", "--config.eval.checkpoints=all", "--config.eval.scan_samples=300",
                 "--config.eval.metrics=coverage", "--config.eval.n_samples=300"]
# The CIFAR network (Res18 d=128) at batches a 2-core CPU times in about 5 minutes, both sides.
CIFAR_BENCH = ["--config", "configs/mdsm_cifar.py", "--config.train.batch_size=8", "--config.sample.batch_size=8",
               "--config.sample.chunk_steps=2", "--min-calls=1", "--min-seconds=0", "--rounds=3"]


COMMANDS: list[str] = []  # the commands the current part ran, for the results page


def run(args: list[str], log: pathlib.Path) -> float:
    """Runs ``python <args>`` in the repository root, its output appended to ``log``; returns seconds."""
    # Paths as a user in the repository root writes them (the page names no machine's folders).
    shown = [a.replace(f"{ROOT}/", "") for a in args]
    COMMANDS.append("python " + " ".join(a if a and " " not in a else repr(a) for a in shown))
    print("  $ python " + " ".join(args), flush=True)
    start = time.perf_counter()
    with open(log, "a") as f:
        done = subprocess.run([sys.executable, *args], cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        sys.exit(f"docs_figures: the command failed (exit {done.returncode}); see {log}")
    return time.perf_counter() - start


def main_args(config: str, workdir: pathlib.Path, *extra: str) -> list[str]:
    return ["-m", "ebmjax.main", "--config", config, "--workdir", str(workdir), "--no-progress", *extra]


def train(config: str, workdir: pathlib.Path, *extra: str, log: pathlib.Path) -> float:
    """Trains (and samples) ``config`` into a new ``workdir`` as a user would; returns seconds. A
    workdir left by an earlier call of the script is removed first: resuming it would time and judge
    the rest of an old run, not the recipe of this commit."""
    shutil.rmtree(workdir, ignore_errors=True)
    return run(main_args(config, workdir, *extra), log)


@functools.cache
def fitted_judge() -> tuple[Any, Any, float, dict[str, Any]]:
    """(the judge, training pixels, test digits' nearest-training distance, test digits' figures),
    fitted once per call of the script."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import digits_quality  # the independent judge

    clf, x_train, x_test = digits_quality.judge()
    d_test = digits_quality.nearest_distance(x_test, x_train)
    return clf, x_train, d_test, digits_quality.figures(x_test, clf, x_train, d_test)


def judged_runs(out: pathlib.Path, config: str, seeds: list[int]) -> dict[str, Any]:
    """Trains and samples ``config`` once per training seed; the independent judge's figures."""
    import numpy as np

    clf, x_train, d_test, test_figures = fitted_judge()
    import digits_quality  # on the path once fitted_judge has run
    result: dict[str, Any] = {"test_digits": test_figures, "seeds": {}}
    name = pathlib.Path(config).stem
    for seed in seeds:
        wd = out / (f"digits_seed{seed}" if config == DIGITS else f"{name}_seed{seed}")
        seconds = train(config, wd, f"--config.seed={seed}", log=out / f"{wd.name}.log")
        with np.load(wd / "samples" / "samples.npz") as f:
            judged = digits_quality.figures(f["images"], clf, x_train, d_test)
        summary = json.loads((wd / "samples" / "summary.json").read_text())
        result["seeds"][seed] = {"train_and_sample_s": seconds, **judged, "own_quality": summary.get("quality")}
        print(f"  {name} seed {seed}: {seconds:.0f} s, recognised {judged['confident_share']:.3f}, entropy "
              f"{judged['label_entropy']:.3f}, nn ratio {judged['nn_ratio']:.2f}", flush=True)
    rows = list(result["seeds"].values())
    result["mean"] = {k: float(np.mean([r[k] for r in rows]))
                      for k in ("confident_share", "label_entropy", "nn_ratio", "train_and_sample_s")}
    return result


def part_demo(out: pathlib.Path, seeds: list[int]) -> dict[str, Any]:
    return judged_runs(out, DIGITS, seeds)


def part_ml(out: pathlib.Path) -> dict[str, Any]:
    return {config: judged_runs(out, config, [0]) for config in ML_CONFIGS}


def part_collapse(out: pathlib.Path) -> dict[str, Any]:
    from ebmjax.evaluation import plots

    result: dict[str, Any] = {}
    for label, config in COLLAPSE_CONFIGS.items():
        wd = out / f"collapse_{pathlib.Path(config).stem}"
        train_s = train(config, wd, *COLLAPSE_TRAIN, log=out / f"{wd.name}.log")
        scan_s = run(main_args(config, wd, *COLLAPSE_TRAIN, *COLLAPSE_SCAN), out / f"{wd.name}.log")
        scan = json.loads((wd / "eval" / "best_checkpoint.json").read_text())
        result[label] = {"config": config, "train_s": train_s, "scan_s": scan_s, "scores": scan["scores"]}
        print(f"  {label}: " + ", ".join(f"{s['step']}: {s['confident_share']:.2f}/{s['label_entropy']:.2f}"
                                         for s in scan["scores"]), flush=True)
    plots.runs_quality_vs_step({k: v["scores"] for k, v in result.items()}, out / "multigrid_collapse.png",
                               title="multigrid on digits, with and without Malhotra's generator: 300 samples "
                                     "per checkpoint")
    return result


def part_eval(out: pathlib.Path, seed: int) -> dict[str, Any]:
    wd = out / f"digits_seed{seed}"
    seconds = run(main_args(DIGITS, wd, f"--config.seed={seed}", "--mode", "eval"), out / "eval.log")
    return {"seconds": seconds, "report": json.loads((wd / "eval" / "report.json").read_text())}


def trained_run(wd: pathlib.Path, part: str, trained_by: str) -> pathlib.Path:
    """``wd``, the run another part trained; a clear stop naming that part when it has not been trained."""
    if not (wd / "checkpoints").exists():
        raise SystemExit(f"part {part} reads the run in {wd}, which has not been trained: run the part {trained_by} first")
    return wd


def part_restore(out: pathlib.Path, part: str, seed: int) -> dict[str, Any]:
    """``--mode inpaint`` and ``--mode denoise`` on a trained run, as ``RESTORE[part]`` says."""
    config, run_dir, trained_by, modes = RESTORE[part]
    wd = trained_run(out / run_dir.format(seed=seed), part, trained_by)
    result = {}
    for mode, extra in modes.items():
        seconds = run(main_args(config, wd, f"--config.seed={seed}", "--mode", mode, *extra), out / f"{mode}.log")
        report = json.loads((wd / mode / "report.json").read_text())
        result[mode] = {"seconds": seconds, "mean_psnr": report["mean_psnr"],
                        "improved_share": report["improved_share"], "n": len(report["psnr"]["corrupted"])}
    return result


def part_toy(out: pathlib.Path) -> dict[str, Any]:
    wd = out / "toy"
    seconds = train(TOY, wd, log=out / "toy.log")
    summary = json.loads((wd / "samples" / "summary.json").read_text())
    return {"train_and_sample_s": seconds, "density": summary["density"]}


def conditional_run(out: pathlib.Path, config: str) -> tuple[dict[str, Any], pathlib.Path]:
    """A class-conditional recipe trained and judged as ``judged_runs`` does (training seed 0), plus the
    share of samples the judge gives the class asked for; and its workdir."""
    result = judged_runs(out, config, [0])
    wd = out / f"{pathlib.Path(config).stem}_seed0"
    result["label_agreement"] = json.loads((wd / "samples" / "summary.json").read_text())["quality"]["label_agreement"]
    return result, wd


def part_conditional(out: pathlib.Path) -> dict[str, Any]:
    import numpy as np

    from ebmjax import visualize

    result, wd = conditional_run(out, CONDITIONAL)
    bold = out / "bold_digits"
    result["bold_train_and_sample_s"] = train("configs/pcd_digits.py", bold, *CONDITIONAL_BOLD,
                                              log=out / "bold_digits.log")
    three = ["--config.sample.label=3", "--config.sample.n=100", "--config.sample.batch_size=100"]
    run(main_args(CONDITIONAL, wd, "--config.seed=0", "--mode", "sample", *three, "--config.sample.seed=3"),
        out / f"{wd.name}.log")
    result["compose_s"] = run(main_args(CONDITIONAL, wd, "--config.seed=0", "--mode", "compose", *three,
                                        f"--config.compose.workdirs={bold}"), out / f"{wd.name}.log")
    plain = np.load(wd / "samples_seed3" / "samples.npz")["images"]
    composed = np.load(wd / "compose" / "samples.npz")["images"]
    summaries = {k: json.loads((wd / d / "summary.json").read_text())["quality"]
                 for k, d in (("class 3", "samples_seed3"), ("class 3 x bold digits", "compose"))}
    result["compose"] = ink_of_threes({"class 3": plain, "class 3 x bold digits": composed}, summaries, "digits")
    visualize.save_panels([("class 3", plain[:20]), ("class 3 x bold digits", composed[:20])],
                          out / "compose_bold3.png", title="--mode compose: a bold 3")
    return result


def ink_of_threes(images: dict[str, Any], summaries: dict[str, dict[str, Any]], dataset: str) -> dict[str, Any]:
    """Mean ink, ink area and the judge's figures of each sample set of 3s, and the ink of the dataset's
    test 3s and of their bold versions (``<dataset>_bold``)."""
    import numpy as np

    from ebmjax import data

    test = data.load_source({"name": dataset}, "test")
    idx = np.flatnonzero(test.labels(np.arange(len(test))) == 3)
    plain, bold = test.get(idx), data.load_source({"name": f"{dataset}_bold", "image_size": None}, "test").get(idx)
    rows = {k: {"ink": float(x.mean()), "ink_area": float((x > 0.5).mean()),
                "label_agreement": summaries[k]["label_agreement"], "confident_share": summaries[k]["confident_share"]}
            for k, x in images.items()}
    rows["test 3s / their bold versions"] = {"ink": f"{plain.mean():.3f} / {bold.mean():.3f}",
                                             "ink_area": f"{(plain > 0.5).mean():.3f} / {(bold > 0.5).mean():.3f}"}
    return rows


def part_mnist_compose(out: pathlib.Path) -> dict[str, Any]:
    """Class 3 of the mnist_jem part's run times the bold-digit energy of configs/translate_mnist.py, at the
    weights of ``MNIST_COMPOSE_WEIGHTS`` (0: the class model alone, the same chains)."""
    import numpy as np

    from ebmjax import visualize

    config = MNIST_RECIPES["mnist_jem"]
    wd = trained_run(out / pathlib.Path(config).stem, "mnist_compose", "mnist_jem")
    bold = out / "translate_mnist"
    result: dict[str, Any] = {"bold_train_s": train("configs/translate_mnist.py", bold, log=out / "translate_mnist.log")}
    three = ["--config.sample.label=3", "--config.sample.n=100", "--config.sample.batch_size=100"]
    images, summaries = {}, {}
    for w in MNIST_COMPOSE_WEIGHTS:
        key = f"class 3 x bold digits, weight {w}"
        result[f"compose_s_{w}"] = run(main_args(config, wd, "--mode", "compose", *three,
                                                 f"--config.compose.workdirs={bold}", f"--config.compose.weights={w}"),
                                       out / "mnist_compose.log")
        images[key] = np.load(wd / "compose" / "samples.npz")["images"]
        summaries[key] = json.loads((wd / "compose" / "summary.json").read_text())["quality"]
    result["compose"] = ink_of_threes(images, summaries, "mnist5k")
    visualize.save_panels([(f"bold weight {w}", x[:20]) for w, x in zip(MNIST_COMPOSE_WEIGHTS, images.values())],
                          out / "mnist_compose_bold3.png",
                          title="jem_mnist's class 3 x translate_mnist's bold digits")
    return result


def part_conditional_recipe(out: pathlib.Path, config: str) -> dict[str, Any]:
    return conditional_run(out, config)[0]


def part_jem(out: pathlib.Path) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for label, extra in {"JEM (configs/jem_digits.py)": [], **JEM_VARIANTS}.items():
        judged = judged_runs_with(out, JEM, extra, label)
        wd = judged.pop("workdir")
        eval_s = run(main_args(JEM, wd, *extra, "--mode", "eval"), out / f"{wd.name}.log")
        m = json.loads((wd / "eval" / "report.json").read_text())["metrics"]
        c = m["classifier"]
        result[label] = {**judged, "eval_s": eval_s, "accuracy": c["accuracy"], "ece": c["ece"], "nll": c["nll"],
                         "ood": c["ood"], "workdir": wd.name}
        print(f"  {label}: accuracy {c['accuracy']:.3f}, ECE {c['ece']:.3f}", flush=True)
    return result


def judged_runs_with(out: pathlib.Path, config: str, extra: list[str], label: str) -> dict[str, Any]:
    """Trains and samples ``config`` with ``extra`` settings (training seed 0); the judge's figures."""
    import numpy as np

    clf, x_train, d_test, _ = fitted_judge()
    import digits_quality

    wd = out / ("jem_" + "".join(ch if ch.isalnum() else "_" for ch in label.split(" (")[0]).strip("_").lower())
    seconds = train(config, wd, *extra, log=out / f"{wd.name}.log")
    with np.load(wd / "samples" / "samples.npz") as f:
        judged = digits_quality.figures(f["images"], clf, x_train, d_test)
    return {"workdir": wd, "train_and_sample_s": seconds, **judged}


def part_mnist(out: pathlib.Path, config: str, evaluate: list[str] | None = None) -> dict[str, Any]:
    """An MNIST recipe trained and sampled as a user would (seed 0), judged by scripts/mnist_quality.py;
    with ``evaluate``, also ``--mode eval`` with those settings (its classifier's figures)."""
    wd = out / pathlib.Path(config).stem
    seconds = train(config, wd, log=out / f"{wd.name}.log")
    judged = out / f"{wd.name}_judged.json"
    run(["scripts/mnist_quality.py", str(wd / "samples" / "samples.npz"), "--json", str(judged)], out / f"{wd.name}.log")
    figures = json.loads(judged.read_text())
    quality = json.loads((wd / "samples" / "summary.json").read_text()).get("quality", {})
    samples = next(v for k, v in figures.items() if k != "test_digits")
    result = {"config": config, "train_and_sample_s": seconds, "test_digits": figures["test_digits"], **samples,
              "label_agreement": quality.get("label_agreement")}
    if evaluate is not None:
        result["eval_s"] = run(main_args(config, wd, "--mode", "eval", *evaluate), out / f"{wd.name}.log")
        c = json.loads((wd / "eval" / "report.json").read_text())["metrics"]["classifier"]
        result["classifier"] = {k: c[k] for k in ("n", "accuracy", "ece", "nll", "ood")}
    print(f"  {wd.name}: {seconds / 60:.1f} min, recognised {samples['confident_share']:.3f}, entropy "
          f"{samples['label_entropy']:.3f}, nn ratio {samples['nn_ratio']:.2f}, FD {samples['frechet_judge']:.1f}", flush=True)
    return result


def bench_records(out: pathlib.Path, args: list[str], name: str) -> list[dict[str, Any]]:
    """``python -m ebmjax.bench ARGS``'s records (one JSON line each), its output kept in <out>/<name>.jsonl."""
    lines = out / f"{name}.jsonl"
    lines.unlink(missing_ok=True)
    COMMANDS.append(f"python -m ebmjax.bench {' '.join(args)}")
    print(f"  $ python -m ebmjax.bench {' '.join(args)} > {lines}", flush=True)
    with open(lines, "w") as f, open(out / f"{name}.log", "w") as err:
        done = subprocess.run([sys.executable, "-m", "ebmjax.bench", *args], cwd=ROOT, stdout=f, stderr=err)
    if done.returncode != 0:
        sys.exit(f"docs_figures: the benchmark failed; see {out / f'{name}.log'}")
    return [json.loads(line) for line in lines.read_text().splitlines() if line.strip()]


def part_bench(out: pathlib.Path, args: list[str], name: str = "bench") -> dict[str, Any]:
    try:
        import torch  # noqa: F401
    except ImportError:
        return {"skipped": "torch is not installed (pip install torch)"}
    return {"records": bench_records(out, [*args, "--compare-torch"], name)}


def part_bench_mnist(out: pathlib.Path) -> dict[str, Any]:
    """Every unconditional MNIST recipe's training step and sampler timed by the benchmark, one after another."""
    return {config: bench_records(out, ["--config", config, *BENCH_MNIST], f"bench_{pathlib.Path(config).stem}")
            for config in BENCH_MNIST_CONFIGS}


# ---------------------------------------------------------------------------------------------------
# Tables.


def conditional_table(config: str, c: dict[str, Any]) -> list[str]:
    """The header and seed 0's row of a class-conditional recipe judged by ``judged_runs``."""
    r = c["seeds"]["0"] if "0" in c["seeds"] else c["seeds"][0]
    return ["| run | recognised (p >= 0.9) | label entropy | judged as the class asked for | nearest-training-digit "
            "distance | train + sample |", "|---|---|---|---|---|---|",
            f"| `{pathlib.Path(config).stem}` (a row per class) | {r['confident_share']:.2f} | {r['label_entropy']:.3f} | "
            f"{c['label_agreement']:.2f} | {r['nn_ratio']:.2f}x test digits' | {r['train_and_sample_s'] / 60:.1f} min |"]


def compose_table(compose: dict[str, Any]) -> list[str]:
    """The rows of a composition: ink, ink area and the judge's figures of each sample set of 3s."""
    md = ["| 100 samples | mean ink | ink area (> 0.5) | judged as 3 | recognised |", "|---|---|---|---|---|"]
    for k, v in compose.items():
        if "label_agreement" in v:
            md.append(f"| {k} | {v['ink']:.3f} | {v['ink_area']:.3f} | {v['label_agreement']:.2f} | "
                      f"{v['confident_share']:.2f} |")
        else:
            md.append(f"| {k} | {v['ink']} | {v['ink_area']} | | |")
    return md + [""]


def tables(fig: dict[str, Any]) -> str:
    md: list[str] = []
    if "demo" in fig:
        d = fig["demo"]
        t = d["test_digits"]
        md += ["| run | recognised (p >= 0.9) | label entropy | nearest-training-digit distance | train + sample |",
               "|---|---|---|---|---|"]
        for seed, r in d["seeds"].items():
            md.append(f"| seed {seed} | {r['confident_share']:.2f} | {r['label_entropy']:.2f} | "
                      f"{r['nn_ratio']:.2f}x test digits' | {r['train_and_sample_s'] / 60:.1f} min |")
        m = d["mean"]
        md.append(f"| **mean** | **{m['confident_share']:.2f}** | **{m['label_entropy']:.2f}** | "
                  f"**{m['nn_ratio']:.2f}x** | {m['train_and_sample_s'] / 60:.1f} min |")
        md.append(f"| real test digits | {t['confident_share']:.2f} | {t['label_entropy']:.2f} | 1.00x | |")
        md.append("")
    if "ml" in fig:
        md += ["| config | recognised (p >= 0.9) | label entropy | nearest-training-digit distance | train + sample |",
               "|---|---|---|---|---|"]
        for config, d in fig["ml"].items():
            r = d["seeds"]["0"] if "0" in d["seeds"] else d["seeds"][0]
            md.append(f"| `{config}` | {r['confident_share']:.2f} | {r['label_entropy']:.2f} | {r['nn_ratio']:.2f}x "
                      f"test digits' | {r['train_and_sample_s'] / 60:.1f} min |")
        md.append("")
    if "collapse" in fig:
        runs = fig["collapse"]
        steps = [s["step"] for s in next(iter(runs.values()))["scores"]]
        md += ["| run | " + " | ".join(f"step {s}" for s in steps) + " |", "|---|" + "---|" * len(steps)]
        for label, r in runs.items():
            md.append(f"| {label} (recognised / entropy) | "
                      + " | ".join(f"{s['confident_share']:.2f} / {s['label_entropy']:.2f}" for s in r["scores"]) + " |")
        md.append("")
    if "eval" in fig:
        e = fig["eval"]
        m = e["report"]["metrics"]
        md.append(f"`--mode eval`: {e['seconds'] / 60:.1f} min in all "
                  + ", ".join(f"{k} {v:.0f} s" for k, v in e["report"]["seconds"].items() if k != "total") + ".")
        md.append("")
        md += ["| metric | model samples | reference |", "|---|---|---|"]
        if isinstance(m.get("fid"), dict):
            s, tt = m["fid"]["digits"]["samples_vs_test"], m["fid"]["digits"]["train_vs_test"]
            md.append(f"| digits FID | {s['fid']:.1f} | train vs test: {tt['fid']:.2f} |")
            md.append(f"| digits IS | {s['is']:.2f} ± {s['is_std']:.2f} | test images: "
                      f"{m['fid']['digits']['is_test_images']:.2f} |")
        if isinstance(m.get("coverage"), dict) and "modes_covered" in m["coverage"]:
            c = m["coverage"]
            md.append(f"| classes covered | {c['modes_covered']} of {c['n_modes']} (KL to uniform "
                      f"{c['kl_to_uniform_nats']:.3f} nats) | test images: {c['reference']['kl_to_uniform_nats']:.4f} nats |")
        if isinstance(m.get("neighbours"), dict) and "ratio_sample_to_test" in m["neighbours"]:
            n = m["neighbours"]
            md.append(f"| distance to nearest training image | {n['sample_to_train_nn_distance_mean']:.2f} | "
                      f"test images: {n['test_to_train_nn_distance_mean']:.2f} |")
        md.append("")
        if isinstance(m.get("ood"), dict):
            md += ["| OOD set | AUROC (clean) | AUROC (σ0 noise) |", "|---|---|---|"]
            for name, s in m["ood"]["sets"].items():
                if isinstance(s, dict):
                    md.append(f"| {name} | {s['auroc']:.3f} | {s.get('auroc_noisy', float('nan')):.3f} |")
            md.append("")
        if isinstance(m.get("ais"), dict):
            a = m["ais"]
            md.append(f"AIS: {a['summary']}; bounds {'bracket' if a['brackets'] else 'do NOT bracket'} log Z.")
            md.append("")
    for part in (p for p in RESTORE if p in fig):
        md += ["| task | corrupted | restored | better than the corrupted input | time |", "|---|---|---|---|---|"]
        for mode, r in fig[part].items():
            p, share = r["mean_psnr"], r["improved_share"]
            for k in (kk for kk in p if kk != "corrupted"):
                md.append(f"| {mode} ({k}) | {p['corrupted']:.1f} dB | {p[k]:.1f} dB | {100 * share[k]:.0f}% of "
                          f"{r['n']} | {r['seconds'] / 60:.1f} min |")
        md.append("")
    if "toy" in fig:
        dens = fig["toy"]["density"]
        shares = dens["mode_shares"]
        md += ["| eight Gaussians | min mode share | max mode share | off all modes |", "|---|---|---|---|"]
        for k, v in shares.items():
            if isinstance(v, dict) and "shares" in v:
                md.append(f"| {k} | {min(v['shares']):.3f} | {max(v['shares']):.3f} | {v['off_support']:.3f} |")
        if "learned_density_mass" in shares:
            m = shares["learned_density_mass"]
            md.append(f"| mass of the learned density | {min(m):.4f} | {max(m):.4f} | (largest / smallest: "
                      f"{dens.get('learned_mass_max_over_min', float('nan')):.0f}) |")
        md.append("")
    if "conditional" in fig:
        md += conditional_table(CONDITIONAL, fig["conditional"]) + [""] + compose_table(fig["conditional"]["compose"])
    if "mnist_compose" in fig:
        md += compose_table(fig["mnist_compose"]["compose"])
    for part, config in CONDITIONAL_RECIPES.items():
        if part in fig:
            c = fig[part]
            md += conditional_table(config, c) + [
                f"| held-out test digits | {c['test_digits']['confident_share']:.2f} | "
                f"{c['test_digits']['label_entropy']:.3f} | | 1.00x | |", ""]
    if "jem" in fig:
        md += ["| run | test accuracy | ECE | NLL | OOD AUROC by E(x): noise / constant / interpolation / faces | "
               "by max-softmax | samples recognised / entropy | train + sample |", "|---|---|---|---|---|---|---|---|"]
        for label, r in fig["jem"].items():
            sets = ("uniform", "constant", "interpolation", "faces")
            auc = lambda k: " / ".join(f"{r['ood'][s][k]:.2f}" if isinstance(r["ood"].get(s), dict) else "-"  # noqa: E731
                                       for s in sets)
            md.append(f"| {label} | {r['accuracy']:.3f} | {r['ece']:.3f} | {r['nll']:.3f} | {auc('ood_auroc_energy')} | "
                      f"{auc('ood_auroc_max_softmax')} | {r['confident_share']:.2f} / {r['label_entropy']:.2f} | "
                      f"{r['train_and_sample_s'] / 60:.1f} min |")
        md.append("")
    for part in MNIST_RECIPES:
        if part in fig:
            r, t = fig[part], fig[part]["test_digits"]
            asked = r.get("label_agreement") is not None
            md += ["| images | recognised (p >= 0.9) | label entropy | " + ("judged as the class asked for | " if asked else "")
                   + "nn ratio | FD (judge's features) | train + sample |", "|---|---|---|" + ("---|" if asked else "") + "---|---|---|",
                   f"| `{pathlib.Path(r['config']).stem}`, {r['n']} samples | {r['confident_share']:.3f} | {r['label_entropy']:.3f} | "
                   + (f"{r['label_agreement']:.3f} | " if asked else "")
                   + f"{r['nn_ratio']:.2f} | {r['frechet_judge']:.1f} | {r['train_and_sample_s'] / 60:.1f} min |",
                   f"| held-out test digits | {t['confident_share']:.3f} | {t['label_entropy']:.3f} | " + ("| " if asked else "")
                   + f"{t['nn_ratio']:.2f} | {t['frechet_judge']:.1f} | |", ""]
            if "classifier" in r:
                c = r["classifier"]
                md += ["| test digits | accuracy | ECE | NLL | " + " | ".join(f"OOD AUROC {k}: by E(x) / max-softmax"
                                                                         for k in c["ood"]) + " | `--mode eval` |",
                       "|---|---|---|---|" + "---|" * len(c["ood"]) + "---|",
                       f"| {c['n']} | {c['accuracy']:.3f} | {c['ece']:.3f} | {c['nll']:.3f} | "
                       + " | ".join(f"{v['ood_auroc_energy']:.3f} / {v['ood_auroc_max_softmax']:.3f}"
                                    for v in c["ood"].values()) + f" | {r['eval_s'] / 60:.1f} min |", ""]
    if "bench_mnist" in fig:
        md += ["| recipe | training (img/s, batch) | steps/s | sampler (img-steps/s, chains) | what the sampler runs | "
               "GFLOP per chain step |", "|---|---|---|---|---|---|"]
        for config, records in fig["bench_mnist"].items():
            t = next(r for r in records if r["bench"] == "train")
            c = next(r for r in records if r["bench"] == "langevin")
            gflop = "" if c.get("gflop_per_img_step") is None else f"{c['gflop_per_img_step']:.3f}"
            md.append(f"| `{pathlib.Path(config).stem}` | {t['train_img_per_s']:,.0f} ({t['batch']}) | "
                      f"{t['train_img_per_s'] / t['batch']:.2f} | {c['langevin_img_steps_per_s']:,.0f} ({c['batch']}) | "
                      f"{c.get('method', '')}: stage {c.get('stage', '')} | {gflop} |")
        md.append("")
    bench = [r for part in ("bench", "bench_cifar") for r in fig.get(part, {}).get("records", [])]
    if bench:
        md += ["| network | measurement | batch | ebmjax | PyTorch original | ratio (median of rounds) | ebmjax GFLOP/s "
               "(share of peak) |", "|---|---|---|---|---|---|---|"]
        for r in bench:
            key = "train_img_per_s" if r["bench"] == "train" else "langevin_img_steps_per_s"
            unit = "images/s" if r["bench"] == "train" else "image-steps/s"
            if f"torch_{key}" in r:
                share = "" if r.get("utilisation") is None else f" ({100 * r['utilisation']:.0f}%)"
                md.append(f"| `{pathlib.Path(r['config']).stem}` | {r['bench']} | {r.get('batch', '')} | "
                          f"{r[key]:,.1f} {unit} | {r[f'torch_{key}']:,.1f} | {r['ratio_to_torch']:.2f}x | "
                          f"{1000 * r['tflops']:.0f}{share} |")
        notes = sorted({r["peak_note"] for r in bench if r.get("utilisation") is not None and r.get("peak_note")})
        if notes:  # the peak is an estimate from the clock the OS reports; turbo runs the cores faster
            md += ["", "The share of peak is of an estimated peak (" + "; ".join(notes) + ") at the clock "
                   "`/proc/cpuinfo` reports; a share above 100% means the cores ran faster than that clock."]
        md.append("")
    return "\n".join(md)


PICTURES = {  # docs picture -> where a run writes it, relative to <out>
    "digits_grid.png": "digits_seed{seed}/samples/grid.png",
    "digits_curves.png": "digits_seed{seed}/curves.png",
    "digits_inpaint.png": "digits_seed{seed}/inpaint/panels.png",
    "digits_denoise.png": "digits_seed{seed}/denoise/panels.png",
    "mnist_inpaint.png": "mdsm_mnist/inpaint/panels.png",
    "mnist_denoise.png": "mdsm_mnist/denoise/panels.png",
    "toy_density.png": "toy/samples/density.png",
    "multigrid_collapse.png": "multigrid_collapse.png",
    "multigrid_gen_grids.png": "multigrid_gen_digits_seed0/samples/grids.png",
    "conditional_digits.png": "ml_conditional_digits_seed0/samples/grid.png",
    "mdsm_conditional_digits.png": "mdsm_conditional_digits_seed0/samples/grid.png",
    "multigrid_conditional_digits.png": "multigrid_conditional_digits_seed0/samples/grid.png",
    "cfebm_conditional_digits.png": "cfebm_conditional_digits_seed0/samples/grid.png",
    "coop_conditional_digits.png": "coop_conditional_digits_seed0/samples/grid.png",
    "compose_bold3.png": "compose_bold3.png",
    "mnist_compose_bold3.png": "mnist_compose_bold3.png",
    "jem_digits_calibration.png": "jem_jem/eval/calibration.png",
    "jem_digits_plain_calibration.png": "jem_plain_classifier/eval/calibration.png",
    **{f"mnist_{pathlib.Path(c).stem.removesuffix('_mnist')}_grid.png": f"{pathlib.Path(c).stem}/samples/grid.png"
       for c in MNIST_RECIPES.values()},
}


TITLES = {  # the results page's section of each part
    "demo": "The digits demo (MDSM), one run per training seed",
    "ml": "The maximum-likelihood digits recipes",
    "collapse": "Multigrid's mode collapse (Malhotra §V)",
    "eval": "`--mode eval` on the digits demo",
    "restore": "Inpainting and denoising the digits",
    "toy": "Eight Gaussians (MDSM)",
    "conditional": "A class-conditional energy, and a bold 3 by composition",
    "mdsm_conditional": "Class-conditional MDSM",
    "multigrid_conditional": "Class-conditional multigrid",
    "coop_conditional": "Class-conditional cooperative learning",
    "cfebm_conditional": "Class-conditional CF-EBM",
    "jem": "JEM against a plain classifier",
    "bench": "Speed: the digits network against the PyTorch original",
    "bench_cifar": "Speed: the CIFAR network against the PyTorch original",
    **{part: f"MNIST: `{pathlib.Path(config).stem}`" for part, config in MNIST_RECIPES.items()},
    "mnist_restore": "MNIST: inpainting and denoising with `mdsm_mnist`",
    "mnist_compose": "MNIST: a bold 3 by composition",
    "bench_mnist": "Speed: every MNIST recipe",
}


def provenance() -> dict[str, str]:
    """The commit (with "+ local changes" when the tree differs from it), the date and the machine."""
    import os
    import platform

    def git(*a):
        done = subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True, check=False)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    if git("status", "--porcelain", "--untracked-files=no"):
        commit += " + local changes"
    cpu = next((line.split(":", 1)[1].strip() for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if pathlib.Path("/proc/cpuinfo").exists() \
        else platform.processor()
    return {"commit": commit, "date": time.strftime("%Y-%m-%d"),
            "machine": f"{os.cpu_count()} CPU cores ({cpu}), {platform.system()}"}


def page_sections(page: str) -> dict[str, str]:
    """The sections of a results page as it stands, by their "## " titles."""
    sections: dict[str, str] = {}
    for chunk in page.split("\n## ")[1:]:
        title, _, body = chunk.partition("\n")
        sections[title.strip()] = body.strip("\n")
    return sections


def results_page(fig: dict[str, Any], old_page: str = "") -> str:
    """docs/results.md: every part measured so far, each table with the commands that made it, the
    commit and the machine; a part this ``figures.json`` lacks keeps its section of ``old_page``."""
    kept = page_sections(old_page)
    md = ["# Results", "",
          "Every table on this page was written by `python scripts/docs_figures.py --results docs/results.md`, which",
          "runs the commands shown under each table (as a user would, from a fresh checkout), reads what they",
          "wrote, and notes the commit and the machine. Rerun a part with `--parts <name>`; finished runs are",
          "reused, so delete its folder under `--out` to measure it afresh. Do not edit this page by hand.", ""]
    for part in PARTS:
        if part not in fig:
            if TITLES[part] in kept:
                md += [f"## {TITLES[part]}", "", kept[TITLES[part]], ""]
            continue
        meta = fig.get("_meta", {}).get(part, {})
        md += [f"## {TITLES[part]}", "", tables({part: fig[part]}).rstrip(), ""]
        if meta:
            md += [f"Measured on commit `{meta['commit']}`, {meta['date']}, {meta['machine']} (part `{part}`):", "",
                   "```bash", *meta["commands"], "```", ""]
    return "\n".join(md)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/readme", help="where the runs and figures go")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds of the demo")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma list of {', '.join(PARTS)}")
    parser.add_argument("--pictures", default=None, help="copy the docs' pictures into this directory")
    parser.add_argument("--results", default=None, help="write the results page (docs/results.md) here")
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    if bad := [p for p in parts if p not in PARTS]:
        parser.error(f"unknown part(s) {', '.join(bad)}; choose from {', '.join(PARTS)}")
    out = pathlib.Path(args.out) if pathlib.Path(args.out).is_absolute() else ROOT / args.out
    out.mkdir(parents=True, exist_ok=True)
    fig_path = out / "figures.json"
    fig: dict[str, Any] = json.loads(fig_path.read_text()) if fig_path.exists() else {}
    seed = args.seeds[0]
    steps = {"demo": lambda: part_demo(out, args.seeds), "ml": lambda: part_ml(out), "collapse": lambda: part_collapse(out),
             "eval": lambda: part_eval(out, seed),
             **{part: functools.partial(part_restore, out, part, seed) for part in RESTORE}, "toy": lambda: part_toy(out),
             "conditional": lambda: part_conditional(out),
             **{part: functools.partial(part_conditional_recipe, out, config) for part, config in CONDITIONAL_RECIPES.items()},
             "jem": lambda: part_jem(out), "mnist_compose": lambda: part_mnist_compose(out),
             "bench": lambda: part_bench(out, ["--config", DIGITS]),
             "bench_cifar": lambda: part_bench(out, CIFAR_BENCH, "bench_cifar"),
             "bench_mnist": lambda: part_bench_mnist(out),
             **{part: functools.partial(part_mnist, out, config, MNIST_EVAL.get(part))
                for part, config in MNIST_RECIPES.items()}}
    for part in parts:
        print(f"[{part}]", flush=True)
        COMMANDS.clear()
        fig[part] = steps[part]()
        fig.setdefault("_meta", {})[part] = {**provenance(), "commands": list(COMMANDS)}
        fig_path.write_text(json.dumps(fig, indent=1, default=str))
    (out / "figures.md").write_text(tables(fig))
    print(tables(fig))
    if args.results:
        page = pathlib.Path(args.results)
        page.write_text(results_page(fig, page.read_text() if page.exists() else ""))
        print(f"wrote {args.results}")
    if args.pictures:
        dest = pathlib.Path(args.pictures)
        dest.mkdir(parents=True, exist_ok=True)
        for name, src in PICTURES.items():
            path = out / src.format(seed=seed)
            if path.exists():
                shutil.copyfile(path, dest / name)
                print(f"copied {path} -> {dest / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
