"""Sample quality of an MNIST run (data.name = "mnist5k"), judged by a classifier ebmjax does not train against.

    python scripts/mnist_quality.py runs/mdsm_mnist/samples/samples.npz [more.npz ...] [--json out.json]

The judge is the mnist5k dataset's own (``ebmjax.data.mnist5k.judge``): an RBF support vector
machine (C = 10, gamma "scale", one-vs-one with Platt-calibrated pairwise probabilities coupled into
ten class probabilities) fitted on the 4,500 training digits (test accuracy 0.968), cached once
fitted. A classifier fitted on the pixels rather than trained against the model: it gives scribbles
and noise low confidence (see tests/test_mnist.py). For each file of samples (key ``images``, NHWC
28x28x1 or padded 32x32x1, in [0, 1]) it prints

- recognised: the share of samples the judge classifies with probability >= 0.9 (held-out test
  digits: 0.86; uniform noise: 0.00);
- label entropy: the entropy of the judge's labels over the ten classes, as a fraction of its
  maximum (1: every class equally often);
- nn ratio: the mean distance to the nearest of the 4,500 training digits, divided by that of the
  500 held-out test digits (1: as far as new digits are; well below 1: copies of training digits);
- FD: the Frechet distance between the samples and the test digits in the judge's features, the 64
  leading principal components of the training digits (NOT the Inception FID, whose weights cannot
  be downloaded here: only comparable between runs judged by this script or by ``--mode eval`` on
  mnist5k, which computes the same figures).

The test digits' own figures are printed first, as the reference. ``--controls`` also judges five
sets of 500 images that are not digits, or not clean ones, to show what the judge accepts: the test
digits blurred (Gaussian, sigma 1 pixel), pixel-wise means of two test digits, random scribbles
(smoothed noise thresholded to the digits' ink share), uniform noise and constant images. Distances are taken in the
samples' own space (a padded sample is compared with padded digits), as ``--mode eval`` does.
Samples holding NaN or infinite values (chains that diverged) are left out and counted
(``non_finite``), as the in-run judge does: the figures are then of the finite samples.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np

from ebmjax import data
from ebmjax.apps.sample import finite_rows
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


def scribbles(n: int, rng: np.random.Generator, side: int = SIDE) -> np.ndarray:
    """Smooth random blobs and strokes thresholded to the digits' ink share (about 18% of pixels):
    what a model that has learned strokes but not digits draws."""
    from scipy.ndimage import gaussian_filter

    z = gaussian_filter(rng.normal(size=(n, side, side)), sigma=(0, 1.5, 1.5))
    z = np.clip((z - np.quantile(z, 0.82, axis=(1, 2), keepdims=True)) * 8, 0, 1)
    return z[..., None].astype(np.float32)


def controls(x_test: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """Images the judge should mostly reject (and blurred digits, which it should mostly accept)."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    n, side = len(x_test), x_test.shape[1]
    return {"control: test digits blurred (sigma 1)": gaussian_filter(x_test, sigma=(0, 1, 1, 0)),
            "control: means of two test digits": (x_test + x_test[rng.permutation(n)]) / 2,
            "control: scribbles": scribbles(n, rng, side),
            "control: uniform noise": rng.random(x_test.shape, dtype=np.float32),
            "control: constant images": np.ones(x_test.shape, np.float32) * rng.random((n, 1, 1, 1), dtype=np.float32)}


def figures(images: np.ndarray, judge, x_train: np.ndarray, test_distance: float, test_features: np.ndarray) -> dict:
    """The judge's figures for the finite ``images`` (``n``), and how many were not (``non_finite``);
    None for the figures when no image is finite."""
    x = np.asarray(images, np.float32)
    finite = finite_rows(x)
    x, non_finite = x[finite], int(np.sum(~finite))
    if not len(x):
        return {"confident_share": None, "label_entropy": None, "nn_distance": None, "nn_ratio": None,
                "frechet_judge": None, "class_counts": None, "n": 0, "non_finite": non_finite}
    logits, feats = judge.logits_and_features(x)
    z = np.exp(logits - logits.max(1, keepdims=True))
    q = quality.summary(z / z.sum(1, keepdims=True), classifier=judge.describe())
    d = float(neighbours.nearest_neighbours(x, x_train, 1).distances[:, 0].mean())
    return {"confident_share": q["confident_share"], "label_entropy": q["label_entropy"], "nn_distance": d,
            "nn_ratio": d / test_distance, "frechet_judge": metrics.frechet_distance(feats, test_features),
            "class_counts": q["class_counts"], "n": q["n"], "non_finite": non_finite}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="*", help=".npz files with key 'images'")
    parser.add_argument("--json", default=None, help="also write the figures here")
    parser.add_argument("--controls", action="store_true", help="also judge images that are not clean digits")
    args = parser.parse_args(argv)
    if not args.files and not args.controls:
        parser.error("give .npz files of samples, or --controls")
    loaded = {}
    for path in args.files:
        if not pathlib.Path(path).is_file():
            parser.error(f"no file {path}: pass the samples.npz a run wrote (<workdir>/samples/samples.npz), "
                         "after its training and sampling finished")
        with np.load(path) as f:
            if "images" not in f:
                parser.error(f"{path} holds {sorted(f.files)}, not the key 'images' that samples.npz files have")
            loaded[path] = np.asarray(f["images"], np.float32)
    sides = {x.shape[1] for x in loaded.values()} or {SIDE}
    if len(sides) != 1:
        raise SystemExit(f"judge files of one image size at a time; got sides {sorted(sides)}.")
    judge, x_train, x_test = references(sides.pop())
    d_test = float(neighbours.nearest_neighbours(x_test, x_train, 1).distances[:, 0].mean())
    f_test = judge.features(x_test)
    out = {"test_digits": figures(x_test, judge, x_train, d_test, f_test)}
    for path, x in {**(controls(x_test) if args.controls else {}), **loaded}.items():
        out[path] = figures(x, judge, x_train, d_test, f_test)
    print(f"judge: {judge.describe()}")
    quality.report_judged(out, lambda r: f"nn ratio {r['nn_ratio']:.2f}x test digits', FD in the judge's "
                                         f"features {r['frechet_judge']:.1f}", args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
