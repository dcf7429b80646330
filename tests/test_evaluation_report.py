"""The digits classifier, stacked-digit mode coverage, and ``--mode eval`` end to end."""

import json
import pathlib

import numpy as np
import pytest
from conftest import DIGITS_CONFIG, TRAINED_DIGITS_OVERRIDES

from ebmjax import evaluation as ev
from ebmjax.apps import main
from ebmjax.data import digits_source
from ebmjax.data import digits_classifier as clf_mod

# On the worker that trains the session's digits energy (conftest.trained_digits) and this module's classifier once.
pytestmark = pytest.mark.xdist_group("trained_digits")


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """The digits classifier, trained once into a temporary cache that the whole module (and the
    CLI runs inside it) uses, so nothing is written to the user's cache."""
    cache = tmp_path_factory.mktemp("ebmjax_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EBMJAX_CACHE_DIR", str(cache))
        yield clf_mod.load_digits_classifier(0), cache


@pytest.mark.slow  # about 14 s on 2 CPU cores; the whole suite (CI) runs it
def test_digits_classifier_is_accurate_cached_and_reloaded_exactly(classifier):
    clf, cache = classifier
    assert clf.test_accuracy > 0.95
    files = list(cache.glob("digits_classifier_v*_seed0.npz"))
    assert len(files) == 1
    again = clf_mod.load_digits_classifier(0)  # from the cache file, not retrained
    assert again.test_accuracy == clf.test_accuracy
    test = digits_source("test")
    x = test.get(np.arange(50))
    np.testing.assert_array_equal(again.logits_and_features(x)[0], clf.logits_and_features(x)[0])
    p = clf.probabilities(x)
    assert p.shape == (50, 10) and np.allclose(p.sum(1), 1.0)
    assert clf.features(x).shape == (50, clf_mod.FEATURE_DIM)


def test_digits_features_separate_real_digits_from_noise(classifier):
    """Known orderings: real train vs test digits are close (small FID, IS near 10 for a 97%+
    classifier on balanced classes); uniform noise is far."""
    clf, _ = classifier
    train, test = digits_source("train"), digits_source("test")
    xt, xr = test.get(np.arange(len(test))), train.get(np.arange(len(train)))
    noise = np.random.default_rng(0).random(xt.shape, dtype=np.float32)
    fid_real = ev.frechet_distance(clf.features(xr), clf.features(xt))
    fid_noise = ev.frechet_distance(clf.features(noise), clf.features(xt))
    assert fid_real < 0.05 * fid_noise
    assert ev.inception_score(clf.probabilities(xt), n_splits=1).score > 8.5


def test_stacked_test_digits_cover_the_modes_a_uniform_draw_would(classifier):
    clf, _ = classifier
    test = digits_source("test")
    stacks, labels = ev.stacked_digits(test.get(np.arange(len(test))), test.labels(np.arange(len(test))), 2000,
                                       seed=3)
    predicted = ev.channel_labels(stacks, clf.predict)
    assert np.mean(predicted == labels) > 0.95
    res = ev.mode_coverage(predicted)
    expected = ev.expected_covered_modes(2000, 1000)  # 1000 (1 - 0.999^2000) = 864.8
    assert res.n_modes == 1000 and abs(res.n_covered - expected) < 40
    assert res.kl_to_uniform < 0.6


EVAL_SMALL = [
    "--config.eval.n_samples=64", "--config.sample.batch_size=64", "--config.mdsm.n_hot=5",
    "--config.mdsm.n_anneal=30", "--config.mdsm.n_cool=5", "--config.sample.chunk_steps=40",
    "--config.eval.ais.n_betas=20", "--config.eval.ais.n_chains=8", "--config.eval.ais.n_data=8",
    "--config.eval.ais.chunk=10", "--config.eval.ais.n_leapfrog=3", "--config.eval.ood.n=100", "--config.eval.neighbours_summary=32",
    "--config.eval.kid_subsets=5", "--no-progress",
]


@pytest.mark.slow
def test_eval_cli_writes_the_report(trained_digits, classifier):
    _, workdir, _, _, _ = trained_digits
    model_args = [f"--config.{k}={v}" for k, v in TRAINED_DIGITS_OVERRIDES]
    argv = ["--config", DIGITS_CONFIG, "--workdir", str(workdir), "--mode", "eval", *model_args, *EVAL_SMALL]
    assert main.run(argv) == 0
    out = pathlib.Path(workdir) / "eval"
    report = json.loads((out / "report.json").read_text())
    for f in report["files"]:
        assert (out / f).is_file(), f
    pictures = {"samples.png", "ais.png", "ood_hist.png", "ood_roc.png", "neighbours.png", "coverage.png"}
    assert pictures <= set(report["files"])
    m = report["metrics"]
    assert set(m) == {"fid", "ais", "ood", "neighbours", "coverage"}
    assert report["samples"]["n"] == 64

    digits = m["fid"]["digits"]
    assert digits["samples_vs_test"]["fid"] > digits["train_vs_test"]["fid"] >= 0
    assert 1.0 <= digits["samples_vs_test"]["is"] <= 10.0
    assert m["fid"]["inception"].startswith("skipped: no Inception weights file")

    a = m["ais"]
    assert np.isfinite(a["log_z_lower"]) and np.isfinite(a["log_z_upper"])
    assert a["dim"] == 64
    # With 20 betas the mean-of-log estimators (the reported bounds) are far apart, forward below reverse.
    assert a["log_z_lower"] < a["log_z_upper"] and a["brackets"] is True
    assert a["summary"].startswith("log Z in [")
    # bits/dim on [0, 255] is the [0, 1] figure plus log2(255), for both bounds.
    assert a["bits_per_dim_255_lower"] == pytest.approx(a["bits_per_dim_01_lower"] + np.log2(255))
    assert a["bits_per_dim_255_upper"] == pytest.approx(a["bits_per_dim_01_upper"] + np.log2(255))

    sets = m["ood"]["sets"]
    assert set(sets) == {"uniform", "constant", "interpolation", "faces"}
    # The fixture's promise: its energy prefers digits over noise by a wide margin.
    assert sets["uniform"]["auroc"] > 0.95 and sets["uniform"]["auroc_noisy"] > 0.95
    assert sets["faces"]["n"] == 100
    # A small energy trained briefly has not memorised its training images: their energies and the
    # test images' are alike (AUROC near 0.5, against 1.0 for uniform noise).
    assert abs(m["ood"]["train_vs_test_auroc"] - 0.5) < 0.15

    nb = m["neighbours"]
    assert nb["k"] == 10 and nb["n_shown"] == 16 and nb["sample_to_train_nn_distance_mean"] > 0
    cov = m["coverage"]
    # 64 samples of a model of all ten digits: most classes appear (uniform sampling would cover ~9.99).
    assert cov["n_modes"] == 10 and cov["modes_covered"] >= 7
    assert cov["reference"]["modes_covered"] == 10

    # One metric alone; an unprepared tfds set is skipped with its reason, the rest still runs.
    argv_ood = [*argv, "--config.eval.metrics=('ood',)", "--config.eval.ood.sets=('uniform', 'svhn_cropped')",
                f"--config.data.data_dir={workdir / 'no_tfds_here'}"]
    assert main.run(argv_ood) == 0
    report = json.loads((out / "report.json").read_text())
    assert set(report["metrics"]) == {"ood"} and "samples" not in report
    assert report["metrics"]["ood"]["sets"]["svhn_cropped"].startswith("skipped:")
    assert report["metrics"]["ood"]["sets"]["uniform"]["auroc"] == pytest.approx(sets["uniform"]["auroc"])


def test_eval_config_mistakes_are_one_line_errors(tmp_path, capsys):
    argv = ["--config", DIGITS_CONFIG, "--workdir", str(tmp_path), "--mode", "eval", "--no-progress"]
    assert main.run([*argv, "--config.eval.metrics=('fid', 'bpd')"]) == 2
    assert "Unknown eval.metrics ['bpd']" in capsys.readouterr().err
    assert main.run([*argv, "--config.eval.ood.sets=('gaussian',)"]) == 2
    assert "Unknown eval.ood.sets" in capsys.readouterr().err
    assert main.run([*argv, "--config.eval.ais.kernel=ula"]) == 2
    assert "hmc or mala" in capsys.readouterr().err
    assert main.run(argv) == 2  # no checkpoint yet
    assert "train first" in capsys.readouterr().err
