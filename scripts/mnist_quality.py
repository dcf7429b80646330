"""Sample quality of an MNIST run (data.name = "mnist5k"), judged by a classifier ebmjax does not train against.

    python scripts/mnist_quality.py runs/mdsm_mnist/samples/samples.npz [more.npz ...] [--json out.json]

The judge is the mnist5k dataset's own (``ebmjax.data.mnist5k.judge``): scikit-learn's
MLPClassifier 784-256-10 fitted on the 4,500 training digits (test accuracy 0.956), cached once
fitted. For each file of samples (key ``images``, NHWC 28x28x1 or padded 32x32x1, in [0, 1]) it
prints

- recognised: the share of samples the judge classifies with probability >= 0.9 (held-out test
  digits: 0.84; uniform noise: 0.04);
- label entropy: the entropy of the judge's labels over the ten classes, as a fraction of its
  maximum (1: every class equally often);
- nn ratio: the mean distance to the nearest of the 4,500 training digits, divided by that of the
  500 held-out test digits (1: as far as new digits are; well below 1: copies of training digits);
- FD: the Frechet distance between the samples and the test digits in the judge's 256 hidden
  units (NOT the Inception FID, whose weights cannot be downloaded here: only comparable between
  runs judged by this script or by ``--mode eval`` on mnist5k, which computes the same figures).

The test digits' own figures are printed first, as the reference. Distances are taken in the
samples' own space (a padded sample is compared with padded digits), as ``--mode eval`` does.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from ebmjax import data
from ebmjax.evaluation import metrics, neighbours, quality

SIDE = 28


def references(side: int):
    """(judge for images of this side, train digits, test digits), padded to ``side``."""
    if side < SIDE or (side - SIDE) % 2:
        raise SystemExit(f"mnist_quality takes 28x28 digits or digits padded evenly (e.g. 32x32); got {side}x{side}.")
    cfg = {"name": "mnist5k", "pad": (side - SIDE) // 2}
    train, test = data.load_source(cfg, "train"), data.load_source(cfg, "test")
    judge = data.judge_for(cfg, 0, (side, side, 1))
    return judge, train.get(np.arange(len(train))), test.get(np.arange(len(test)))


def figures(images: np.ndarray, judge, x_train: np.ndarray, test_distance: float, test_features: np.ndarray) -> dict:
    x = np.asarray(images, np.float32)
    logits, feats = judge.logits_and_features(x)
    z = np.exp(logits - logits.max(1, keepdims=True))
    q = quality.summary(z / z.sum(1, keepdims=True), classifier=judge.describe())
    d = float(neighbours.nearest_neighbours(x, x_train, 1).distances[:, 0].mean())
    return {"confident_share": q["confident_share"], "label_entropy": q["label_entropy"], "nn_distance": d,
            "nn_ratio": d / test_distance, "frechet_judge": metrics.frechet_distance(feats, test_features),
            "class_counts": q["class_counts"], "n": q["n"]}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", help=".npz files with key 'images'")
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    loaded = {}
    for path in args.files:
        with np.load(path) as f:
            loaded[path] = np.asarray(f["images"], np.float32)
    sides = {x.shape[1] for x in loaded.values()}
    if len(sides) != 1:
        raise SystemExit(f"judge files of one image size at a time; got sides {sorted(sides)}.")
    judge, x_train, x_test = references(sides.pop())
    d_test = float(neighbours.nearest_neighbours(x_test, x_train, 1).distances[:, 0].mean())
    f_test = judge.features(x_test)
    out = {"test_digits": figures(x_test, judge, x_train, d_test, f_test)}
    for path, x in loaded.items():
        out[path] = figures(x, judge, x_train, d_test, f_test)
    print(f"judge: {judge.describe()}")
    for name, r in out.items():
        print(f"{name}: recognised (p >= 0.9) {r['confident_share']:.3f}, label entropy {r['label_entropy']:.3f}, "
              f"nn ratio {r['nn_ratio']:.2f}x test digits', FD in the judge's features {r['frechet_judge']:.1f} "
              f"({r['n']} images)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
