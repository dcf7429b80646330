"""How well a plain -> bold digits translation worked, judged by a classifier ebmjax does not train against.

    python scripts/translate_quality.py runs/translate_digits/translate/translated.npz [--json out.json]
    python scripts/translate_quality.py runs/<mnist5k -> mnist5k_bold run>/translate/translated.npz

The file is the ``translated.npz`` of ``--mode translate`` (configs/translate_digits.py, or a
model of mnist5k_bold translating mnist5k): ``source`` (plain digits, NHWC in [0, 1]), ``source_labels``,
``translated`` and ``target`` (bold training digits). The source dataset is read from the
``report.json`` beside it (``--source-data`` overrides; without either: digits). Printed figures:

- label kept: the share of translations to which the judge gives the source's label. On the
  bundled 8x8 digits the judge is a scikit-learn logistic regression (C = 1, fixed solver:
  deterministic) fit on the pixels of the plain-domain TRAIN digits at the translations' size (as
  scripts/digits_quality.py does at 8x8); on other sources it is that dataset's own judge
  (``ebmjax.data.Dataset.judge``, seed 0: for mnist5k the RBF-SVM of scripts/mnist_quality.py). Its
  accuracy on the source images themselves and on their true bold versions (the 2x2 dilation of each
  source, the translation a paired method would aim at) is printed as the reference: a translation
  cannot be expected to keep labels better than the judge reads bold digits.
- stroke weight of source, translated and target images: ink (mean grey level) and ink area (share
  of pixels above 0.5). A translation should move from the source's figures to near the target's.
- distance to the true bold version (RMS per pixel) of the sources and of the translations: a good
  translation is closer to dilate(source) than the source itself is.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np

from ebmjax import data
from ebmjax.data import dilate_2x2, digits_source


def judge(size: int):
    """A logistic regression fit on the plain digits' train split at ``size`` x ``size``."""
    from sklearn.linear_model import LogisticRegression

    train = digits_source("train", image_size=None if size == 8 else size)
    x = train.get(np.arange(len(train))).reshape(len(train), -1)
    return LogisticRegression(C=1.0, max_iter=5000).fit(x, train.labels(np.arange(len(train))))


def source_data(path: str, given: str | None) -> str:
    """The source dataset's name: ``given``, else the one the translation's report.json names, else digits."""
    if given:
        return given
    report = pathlib.Path(path).with_name("report.json")
    return json.loads(report.read_text()).get("source_data", "digits") if report.exists() else "digits"


def predictor(name: str, size: int):
    """images (n, H, W, C) -> (n,) labels: the logistic regression on the digits, else the dataset's judge."""
    if name == "digits":
        clf = judge(size)
        return lambda images: clf.predict(_flat(images))
    dataset = data.get(name)
    if dataset.judge is None:
        raise SystemExit(f"The source dataset {name!r} has no judge (ebmjax.data.Dataset.judge): its labels cannot "
                         "be checked.")
    return dataset.judge(0).predict


def _flat(images: np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(images, np.float64).reshape(len(images), -1), 0.0, 1.0)


def figures(path: str, source_name: str | None = None) -> dict:
    with np.load(path) as f:
        if "source_labels" not in f:
            raise SystemExit(f"{path} has no source_labels: translate a labelled source (the digits).")
        source, translated, target = f["source"], f["translated"], f["target"]
        labels = f["source_labels"]
    name = source_data(path, source_name)
    predict = predictor(name, source.shape[1])
    truth = dilate_2x2(source)  # the paired answer: each source digit with its strokes dilated

    def kept(images):
        return float(np.mean(predict(np.clip(images, 0.0, 1.0)) == labels))

    def rms(a, b):
        return float(np.sqrt(np.mean((np.clip(a, 0, 1) - b) ** 2)))

    return {
        "source_data": name,
        "n": int(len(source)),
        "label_kept": kept(translated),
        "judge_accuracy_source": kept(source),
        "judge_accuracy_true_bold": kept(truth),
        "ink": {"source": float(np.clip(source, 0, 1).mean()), "translated": float(np.clip(translated, 0, 1).mean()),
                "target": float(np.clip(target, 0, 1).mean()), "true_bold": float(truth.mean())},
        "ink_area": {"source": float((source > 0.5).mean()), "translated": float((translated > 0.5).mean()),
                     "target": float((target > 0.5).mean()), "true_bold": float((truth > 0.5).mean())},
        "rms_to_true_bold": {"source": rms(source, truth), "translated": rms(translated, truth)},
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", help="translated.npz of --mode translate")
    parser.add_argument("--json", default=None, help="also write the figures here")
    parser.add_argument("--source-data", default=None, help="the source dataset's data.name (default: the one "
                        "report.json beside the file names, else digits)")
    args = parser.parse_args(argv)
    r = figures(args.file, args.source_data)
    ink, area, dist = r["ink"], r["ink_area"], r["rms_to_true_bold"]
    print(f"{args.file}: {r['n']} translations of {r['source_data']}")
    print(f"  label kept (judge gives the source's label): {r['label_kept']:.3f} "
          f"(judge on the sources {r['judge_accuracy_source']:.3f}, on their true bold versions "
          f"{r['judge_accuracy_true_bold']:.3f})")
    print(f"  ink (mean grey): source {ink['source']:.3f}, translated {ink['translated']:.3f}, target "
          f"{ink['target']:.3f} (true bold {ink['true_bold']:.3f})")
    print(f"  ink area (> 0.5): source {area['source']:.3f}, translated {area['translated']:.3f}, target "
          f"{area['target']:.3f} (true bold {area['true_bold']:.3f})")
    print(f"  RMS to the true bold version: source {dist['source']:.3f}, translated {dist['translated']:.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(r, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
