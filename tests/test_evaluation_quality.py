"""Sample-quality figures from class probabilities, against values computed by hand."""

import numpy as np
import pytest

from ebmjax.errors import ConfigError
from ebmjax.evaluation import quality


def test_confident_share_counts_rows_at_or_above_the_threshold():
    p = np.array([[0.95, 0.05], [0.9, 0.1], [0.6, 0.4], [0.2, 0.8]])
    assert quality.confident_share(p) == 0.5  # 0.95 and 0.9 (>= is inclusive); 0.8 is below
    assert quality.confident_share(p, threshold=0.7) == 0.75


def test_label_entropy_is_a_fraction_of_log_n_classes():
    assert quality.label_entropy(np.arange(10), 10) == pytest.approx(1.0)  # every class once
    assert quality.label_entropy(np.zeros(7, int), 10) == 0.0  # one class
    # Two classes out of four, equally often: log 2 / log 4 = 0.5.
    assert quality.label_entropy([0, 1, 0, 1], 4) == pytest.approx(0.5)
    # Counts (3, 1) over 4 classes: -(3/4 log 3/4 + 1/4 log 1/4) / log 4.
    h = -(0.75 * np.log(0.75) + 0.25 * np.log(0.25)) / np.log(4)
    assert quality.label_entropy([2, 2, 2, 3], 4) == pytest.approx(h)


def test_summary_uses_each_row_s_most_probable_class():
    p = np.array([[0.1, 0.85, 0.05], [0.05, 0.05, 0.9], [0.96, 0.02, 0.02], [0.5, 0.3, 0.2]])
    s = quality.summary(p, classifier="test")
    assert s["class_counts"] == [2, 1, 1] and s["n"] == 4 and s["classifier"] == "test"
    assert s["confident_share"] == 0.5
    assert s["label_entropy"] == pytest.approx(quality.label_entropy([1, 2, 0, 0], 3))


def test_bad_shapes_and_labels_are_config_errors():
    with pytest.raises(ConfigError, match="shape"):
        quality.confident_share(np.ones(5))
    with pytest.raises(ConfigError, match="lie in"):
        quality.label_entropy([0, 12], 10)


def test_digits_quality_script_judges_the_finite_samples_and_counts_the_rest(tmp_path, capsys):
    import importlib.util
    import json
    import pathlib

    from ebmjax.data import digits_source

    path = pathlib.Path(__file__).parents[1] / "scripts" / "digits_quality.py"
    spec = importlib.util.spec_from_file_location("digits_quality", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    train = digits_source("train")
    copies = train.get(np.arange(50))
    diverged = copies.copy()
    diverged[[0, 9, 20]] = np.nan  # three chains that diverged
    files = [tmp_path / "copies.npz", tmp_path / "diverged.npz", tmp_path / "all_nan.npz"]
    np.savez(files[0], images=copies)
    np.savez(files[1], images=diverged)
    np.savez(files[2], images=np.full((5, 8, 8, 1), np.inf, np.float32))
    assert script.main([str(f) for f in files] + ["--json", str(tmp_path / "q.json")]) == 0
    q = json.loads((tmp_path / "q.json").read_text())
    a, b, c = (q[str(f)] for f in files)
    assert (a["n"], a["non_finite"], a["nn_ratio"]) == (50, 0, 0.0)  # copies of training digits
    assert (b["n"], b["non_finite"], b["nn_ratio"]) == (47, 3, 0.0)
    clf, _, _ = script.judge()
    kept = np.delete(copies, [0, 9, 20], axis=0).reshape(47, -1)
    assert b["confident_share"] == pytest.approx(float(np.mean(clf.predict_proba(kept).max(1) >= 0.9)))
    assert (c["n"], c["non_finite"], c["confident_share"]) == (0, 5, None)
    out = capsys.readouterr().out
    assert "3 more hold NaN or infinite values" in out and "nothing to judge: all 5 images" in out
