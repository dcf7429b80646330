"""The API reference (mkdocs.yml, docs/) builds in strict mode and documents what it says it does.

`mkdocs build --strict` fails on any warning: a page naming an object that does not exist, a
docstring whose "Args:" names a parameter the function does not have, a cross-reference
(``[name][ebmjax.x.y]``) to nothing. The build reads the sources statically (griffe), so it imports
neither ebmjax nor JAX and takes a few seconds.
"""

from __future__ import annotations

import pathlib
import json
import re
import subprocess
import sys

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PACKAGE = ROOT / "ebmjax"

# Modules of ebmjax that the reference deliberately leaves out: the commands' entry points (their
# applications are ebmjax.apps) and helpers of the command line's own files and pictures.
NOT_DOCUMENTED = {"main", "bench", "compare", "io", "visualize"}

# A page that renders nothing would still build; these names must appear on the samplers page.
SAMPLER_NAMES = ("run_chain", "run_chain_chunked", "langevin_kernel", "hmc", "decoupled", "buffer_draw",
                 "annealed_langevin", "denoise_jump")
DIRECTIVE = re.compile(r"^:::\s+(\S+)\s*$", re.M)


def _nav_pages(nav) -> list[str]:
    """The markdown files the nav lists, in order."""
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [page for item in nav for page in _nav_pages(item)]
    if isinstance(nav, dict):
        return [page for value in nav.values() for page in _nav_pages(value)]
    raise AssertionError(f"unexpected nav entry in mkdocs.yml: {nav!r}")


def _directives() -> dict[str, list[str]]:
    """{page: the identifiers of its ``::: ebmjax...`` directives} for every page in the nav."""
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    pages = _nav_pages(config["nav"])
    missing = [p for p in pages if not (DOCS / p).is_file()]
    assert not missing, f"mkdocs.yml lists pages that do not exist under docs/: {missing}"
    return {p: DIRECTIVE.findall((DOCS / p).read_text(encoding="utf-8")) for p in pages}


def _module_file(dotted: str) -> pathlib.Path | None:
    """The source file of module ``dotted`` (e.g. ebmjax.train.state), or None if there is none."""
    path = ROOT.joinpath(*dotted.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def test_nav_names_existing_modules_and_covers_the_package():
    directives = _directives()
    identifiers = [i for ids in directives.values() for i in ids]
    assert identifiers, "no ::: directives found in the pages of the nav"
    for identifier in identifiers:
        parts = identifier.split(".")
        assert parts[0] == "ebmjax", f"{identifier}: the reference documents ebmjax only"
        # The longest prefix that is a module must exist; what follows it names an object in it.
        modules = [".".join(parts[:n]) for n in range(len(parts), 0, -1) if _module_file(".".join(parts[:n]))]
        assert modules, f"{identifier}: no module of that name under {PACKAGE.name}/"
        rest = parts[len(modules[0].split(".")):]
        if rest:
            source = _module_file(modules[0]).read_text(encoding="utf-8")
            assert re.search(rf"\b{re.escape(rest[0])}\b", source), \
                f"{identifier}: {modules[0]} has no name {rest[0]!r}"
    documented = {i.split(".")[1] for i in identifiers if i.count(".") >= 1}
    public = {p.stem if p.suffix == ".py" else p.name for p in PACKAGE.iterdir()
              if not p.name.startswith("_") and (p.suffix == ".py" or (p / "__init__.py").is_file())}
    undocumented = public - documented - NOT_DOCUMENTED
    assert not undocumented, (f"ebmjax modules with no page in the API reference: {sorted(undocumented)}; "
                              "add a docs/api/ page and a nav entry in mkdocs.yml, or list them in "
                              "NOT_DOCUMENTED in tests/test_docs.py")


def test_mkdocs_build_strict(tmp_path):
    site = tmp_path / "site"
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"mkdocs build --strict failed (exit {result.returncode}):\n{output}"

    # Every directive rendered its object: its heading anchor is on the built page.
    for page, identifiers in _directives().items():
        html_path = site / pathlib.Path(page).with_suffix("") / "index.html"
        if page == "index.md":
            html_path = site / "index.html"
        assert html_path.is_file(), f"{page} was not built ({html_path} missing)\n{output}"
        html = html_path.read_text(encoding="utf-8")
        for identifier in identifiers:
            assert f'id="{identifier}"' in html, f"{page}: ::: {identifier} rendered nothing"

    samplers = (site / "api" / "samplers" / "index.html").read_text(encoding="utf-8")
    absent = [name for name in SAMPLER_NAMES if f'id="ebmjax.samplers.{name}"' not in samplers]
    assert not absent, f"the samplers page does not document {absent}"
    assert 'id="ebmjax.samplers.langevin.langevin"' in samplers


def import_docs_figures():
    """scripts/docs_figures.py as a module."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import docs_figures
    finally:
        sys.path.pop(0)
    return docs_figures


def test_the_results_page_keeps_the_sections_of_parts_it_did_not_measure():
    """scripts/docs_figures.py --results: a rerun of one part rewrites that part's section and keeps
    every other section of the page as it was (their figures.json may live on another machine)."""
    docs_figures = import_docs_figures()
    old = docs_figures.results_page({}, "# Results\n\nintro\n\n## " + docs_figures.TITLES["toy"]
                                    + "\n\n| old toy table |\n\n## Not a part\n\nstale\n")
    assert "| old toy table |" in old and "stale" not in old
    fig = {"mdsm_conditional": {"seeds": {"0": {"confident_share": 0.94, "label_entropy": 1.0, "nn_ratio": 0.82,
                                                "train_and_sample_s": 330.0}},
                                "label_agreement": 0.99, "test_digits": {"confident_share": 0.75, "label_entropy": 1.0}},
           "_meta": {"mdsm_conditional": {"commit": "abc", "date": "d", "machine": "m", "commands": ["python x"]}}}
    new = docs_figures.results_page(fig, old)
    assert "| old toy table |" in new and "| `mdsm_conditional_digits` (a row per class) | 0.94 | 1.000 | 0.99 |" in new
    assert new.index(docs_figures.TITLES["toy"]) < new.index(docs_figures.TITLES["mdsm_conditional"])
    assert docs_figures.results_page(fig, new) == new  # idempotent


def test_a_results_part_trains_into_a_new_workdir(tmp_path, monkeypatch):
    """scripts/docs_figures.py trains each recipe from step 0: a workdir an earlier call left behind
    is removed first (resuming it timed and judged the rest of an old run as the recipe of the commit)."""
    docs_figures = import_docs_figures()
    wd = tmp_path / "pcd_mnist"
    (wd / "checkpoints" / "2000").mkdir(parents=True)
    seen = []
    monkeypatch.setattr(docs_figures, "run", lambda args, log: seen.append((args, wd.exists())) or 12.5)
    assert docs_figures.train("configs/pcd_mnist.py", wd, "--config.seed=1", log=tmp_path / "log") == 12.5
    (args, existed), = seen
    assert not existed, "the old workdir was still there when the recipe ran"
    assert args[args.index("--workdir") + 1] == str(wd) and args[-1] == "--config.seed=1"


def test_the_mnist_restore_part_restores_with_the_mdsm_mnist_run(tmp_path, monkeypatch):
    """scripts/docs_figures.py's mnist_restore part inpaints and denoises with the mnist_mdsm part's run, with
    the settings docs/mnist.md names, and refuses (naming the part to run first) when that run is missing."""
    docs_figures = import_docs_figures()
    with pytest.raises(SystemExit, match="mnist_mdsm"):
        docs_figures.part_restore(tmp_path, "mnist_restore", 0)
    wd = tmp_path / "mdsm_mnist"
    (wd / "checkpoints").mkdir(parents=True)
    seen = []

    def fake_run(args, log):
        mode = args[args.index("--mode") + 1]
        seen.append(args)
        (wd / mode).mkdir(exist_ok=True)
        (wd / mode / "report.json").write_text(json.dumps({
            "mean_psnr": {"corrupted": 9.3, "restored": 15.1}, "improved_share": {"restored": 1.0},
            "psnr": {"corrupted": [9.0] * (64 if mode == "inpaint" else 100)}}))
        return 60.0

    monkeypatch.setattr(docs_figures, "run", fake_run)
    result = docs_figures.part_restore(tmp_path, "mnist_restore", 0)
    assert [a[a.index("--config") + 1] for a in seen] == ["configs/mdsm_mnist.py"] * 2
    assert "--config.restore.mask=half" in seen[0] and "--config.restore.n_chains=4" in seen[0]
    assert result["inpaint"]["n"] == 64 and result["denoise"]["n"] == 100
    table = docs_figures.tables({"mnist_restore": result})
    assert "| inpaint (restored) | 9.3 dB | 15.1 dB | 100% of 64 | 1.0 min |" in table


def test_the_mnist_compose_part_composes_jem_mnist_with_the_translation_energy(tmp_path, monkeypatch):
    """scripts/docs_figures.py's mnist_compose part needs the mnist_jem part's run (and says so), trains
    configs/translate_mnist.py afresh and composes class 3 with it at each weight; its table gives the ink."""
    import numpy as np

    docs_figures = import_docs_figures()
    with pytest.raises(SystemExit, match="mnist_jem"):
        docs_figures.part_mnist_compose(tmp_path)
    wd = tmp_path / "jem_mnist"
    (wd / "checkpoints").mkdir(parents=True)
    seen = []

    def fake_run(args, log):
        seen.append(args)
        if "compose" in args:
            w = float(next(a for a in args if a.startswith("--config.compose.weights=")).split("=")[1])
            (wd / "compose").mkdir(exist_ok=True)
            np.savez(wd / "compose" / "samples.npz", images=np.full((100, 28, 28, 1), 0.1 + 0.1 * w, np.float32))
            (wd / "compose" / "summary.json").write_text(json.dumps(
                {"quality": {"label_agreement": 1.0, "confident_share": 0.9}}))
        return 30.0

    monkeypatch.setattr(docs_figures, "run", fake_run)
    result = docs_figures.part_mnist_compose(tmp_path)
    assert seen[0][seen[0].index("--config") + 1] == "configs/translate_mnist.py"
    assert [a for args in seen[1:] for a in args if a.startswith("--config.compose.workdirs=")] == [
        f"--config.compose.workdirs={tmp_path / 'translate_mnist'}"] * len(docs_figures.MNIST_COMPOSE_WEIGHTS)
    assert result["compose"]["class 3 x bold digits, weight 1"]["ink"] == pytest.approx(0.2)
    assert (tmp_path / "mnist_compose_bold3.png").exists()
    table = docs_figures.tables({"mnist_compose": result})
    assert "| class 3 x bold digits, weight 0.5 | 0.150 | 0.000 | 1.00 | 0.90 |" in table
    assert "| test 3s / their bold versions |" in table


def test_the_bench_mnist_part_times_every_unconditional_mnist_recipe(tmp_path, monkeypatch):
    """scripts/docs_figures.py's bench_mnist part runs the benchmark once per unconditional MNIST recipe and
    tables its training rate (images and steps per second) and its sampler's rate."""
    docs_figures = import_docs_figures()
    seen = []

    def fake_run(args, cwd, stdout, stderr):
        seen.append(args[args.index("--config") + 1])
        stdout.write(json.dumps({"bench": "train", "batch": 64, "train_img_per_s": 96.0}) + "\n")
        stdout.write(json.dumps({"bench": "langevin", "batch": 300, "langevin_img_steps_per_s": 4649.4,
                                 "method": "multigrid", "stage": "28x28", "gflop_per_img_step": 0.0163}) + "\n")
        return subprocess.CompletedProcess(args, 0)

    monkeypatch.setattr(docs_figures.subprocess, "run", fake_run)
    result = docs_figures.part_bench_mnist(tmp_path)
    assert seen == list(docs_figures.BENCH_MNIST_CONFIGS) and "configs/mdsm_mnist.py" in seen
    table = docs_figures.tables({"bench_mnist": result})
    assert "| `multigrid_mnist` | 96 (64) | 1.50 | 4,649 (300) | multigrid: stage 28x28 | 0.016 |" in table
