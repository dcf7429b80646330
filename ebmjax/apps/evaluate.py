"""``--mode eval``: every measurement of the MDSM paper on a trained energy, in one report.

Layer 4 (an application over :mod:`ebmjax.evaluation`). :func:`evaluate_to_workdir` writes ``<workdir>/eval/report.json`` and pictures; the
metrics are chosen by ``eval.metrics`` (see ``ebmjax.config``):

- ``fid``: FID, KID and IS of model samples against test images, with every feature network that
  applies: the dataset's judge (``ebmjax.data.judges``; on digits the digits classifier, on mnist5k
  the MNIST judge; the section is named after the dataset and says which network: comparable between
  ebmjax runs on that dataset only, never with Inception numbers) and Inception-v3 when
  ``eval.inception_weights`` names the weights file (otherwise the report says it was skipped;
  nothing is ever estimated without it). Reference rows: the same metrics of training images
  against test images, the floor a perfect model reaches.
- ``ais``: log Z by forward AIS (stochastic lower bound) and reverse AIS from test images
  (stochastic upper bound), and the test NLL in bits/dim from each: lower and upper bound, on
  pixels in [0, eval.ais.pixel_scale] (the paper's convention: 255). ``ais.png``.
- ``ood``: energy AUROC of test images against each OOD set (higher energy = OOD), clean and after
  sigma0 noise (the paper's variant); train-vs-test AUROC (0.5: no overfitting of the energy).
  ``ood_hist.png``, ``ood_roc.png``.
- ``neighbours``: samples beside their k nearest training images (``neighbours.png``), and the
  mean distance to the nearest training image of samples vs. of test images.
- ``classifier``: for a method whose network is also a classifier (``Method.classifier``: JEM, a
  class-conditional energy): test accuracy (``accuracy``), negative log-likelihood and expected
  calibration error (``calibration.png``, a reliability diagram), the mean confidence (against the
  accuracy: over- or under-confident), the same figures on the training images (``train``), the
  test figures after temperature scaling with T fitted on the training images (``temperature_scaled``,
  ``calibration_scaled.png``), and each
  OOD set's AUROC scored by 1 - max softmax beside its AUROC by the energy E(x) (``ood_auroc_energy``,
  the same numbers as the ``ood`` section's clean AUROC). Skipped, saying so, for a method that has
  no classifier.
- ``coverage``: modes hit by the samples (10^C modes for C channels of a one-channel dataset's
  classes: stacked digits) counted by the dataset's judge per channel, with the KL to uniform
  (``coverage.png``).

Samples are drawn by the method's sampler (``eval.n_samples`` of them, cached in
``eval/samples.npz`` with a fingerprint of the parameters and settings) or read from
``eval.samples_file``. Everything runs on the default device of each process; process 0 writes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import pathlib
import time
from typing import Any, Callable

import jax
import ml_collections
import numpy as np
from tqdm.auto import tqdm

from ebmjax import chains, data, io, keys, samplers, visualize
from ebmjax.apps.sample import grid_title
from ebmjax.errors import ConfigError, DataError
from ebmjax.evaluation import ais, calibration, coverage, metrics, neighbours, ood, plots

log = logging.getLogger(__name__)

__all__ = ["METRICS", "check_config", "evaluate_to_workdir"]

METRICS = ("fid", "ais", "ood", "neighbours", "coverage", "classifier")
INCEPTION_MISSING = (
    "skipped: no Inception weights file. Set --config.eval.inception_weights=PATH to "
    "pt_inception-2015-12-05-6726825d.pth (needs torch) or its .npz conversion (see "
    "ebmjax.evaluation.inception.CONVERT_COMMAND). Inception FID/KID/IS are never estimated without it."
)


def check_config(cfg: ml_collections.ConfigDict) -> None:
    """Checks ``cfg.eval`` before any work: unknown metric or OOD set names, impossible counts."""
    e = cfg.eval
    bad = [m for m in e.metrics if m not in METRICS]
    if bad:
        raise ConfigError(f"Unknown eval.metrics {bad}; choose from {', '.join(METRICS)}, "
                          f"e.g. --config.eval.metrics='(\"fid\", \"ood\")'.")
    if e.checkpoints not in ("latest", "all"):
        raise ConfigError(f"eval.checkpoints must be latest or all, got {e.checkpoints!r}.")
    from ebmjax.evaluation.scan import SELECT_BY

    if e.select_by not in SELECT_BY:
        raise ConfigError(f"eval.select_by must be one of {', '.join(SELECT_BY)}, got {e.select_by!r}.")
    for name in ("n_samples", "n_data", "batch_size", "kid_subsets", "kid_subset_size", "is_splits",
                 "neighbours_k", "neighbours_n", "neighbours_summary", "neighbours_train", "scan_samples"):
        if e[name] < 1:
            raise ConfigError(f"eval.{name} must be >= 1, got {e[name]}.")
    a = e.ais
    for name in ("n_chains", "n_data", "n_betas", "n_leapfrog", "chunk"):
        if a[name] < 1:
            raise ConfigError(f"eval.ais.{name} must be >= 1, got {a[name]}.")
    if a.kernel not in ("hmc", "mala"):
        raise ConfigError(f"eval.ais.kernel must be hmc or mala, got {a.kernel!r}.")
    if a.schedule not in ais.SCHEDULES:
        raise ConfigError(f"eval.ais.schedule must be one of {', '.join(ais.SCHEDULES)}, got {a.schedule!r}.")
    for name in ("step_size", "ref_std", "temperature", "pixel_scale"):
        if a[name] <= 0:
            raise ConfigError(f"eval.ais.{name} must be > 0, got {a[name]}.")
    if a.ref_step_size is not None and a.ref_step_size <= 0:
        raise ConfigError(f"eval.ais.ref_step_size must be > 0 or None, got {a.ref_step_size}.")
    known = set(data.SYNTHETIC_OOD_SETS) | {n for n in data.data_names() if not data.holds_points(n)} | {"auto"}
    bad = [s for s in e.ood.sets if s not in known]
    if bad:
        raise ConfigError(f"Unknown eval.ood.sets {bad}; choose from {', '.join(sorted(known))}.")
    if e.ood.n < 1:
        raise ConfigError(f"eval.ood.n must be >= 1, got {e.ood.n}.")


def _resolve_ood_sets(cfg: ml_collections.ConfigDict) -> list[str]:
    out: list[str] = []
    for s in cfg.eval.ood.sets:
        for name in (data.get(cfg.data.name).ood_sets if s == "auto" else (s,)):
            if name not in out and name != cfg.data.name:
                out.append(name)
    return out


# ---------------------------------------------------------------------------------------------
# Inputs: test data, samples
# ---------------------------------------------------------------------------------------------


def _test_source(cfg: ml_collections.ConfigDict, train: Any) -> tuple[Any, str]:
    try:
        return data.load_source(cfg.data, "test"), "test"
    except (DataError, ConfigError) as e:
        log.warning("No test split for %s (%s); evaluating against the training split.", cfg.data.name, e)
        return train, "train"


def _fingerprint(sampler: Any, cfg: ml_collections.ConfigDict, n: int) -> str:
    """What cached samples depend on: the sampler's settings and parameters, the seed and the count."""

    settings = json.dumps({"sampler": dict(sampler.settings), "seed": cfg.seed, "n": n}, sort_keys=True, default=str)
    return hashlib.blake2b((settings + chains.sampler_fingerprint(sampler)).encode(), digest_size=16).hexdigest()


def _samples(cfg: ml_collections.ConfigDict, sampler: Any, shape: tuple[int, ...],
             out_dir: pathlib.Path, progress: bool) -> tuple[np.ndarray, str]:
    """(samples (n, *shape), where they came from)."""
    e = cfg.eval
    if e.samples_file is not None:
        path = pathlib.Path(e.samples_file).expanduser()
        if not path.is_file():
            raise DataError(f"eval.samples_file {str(path)!r} does not exist; pass an .npz with key 'images' "
                            "(e.g. <workdir>/samples/samples.npz) or None to draw samples.")
        with np.load(path) as f:
            if "images" not in f.files:
                raise DataError(f"{path} has no array 'images' (it holds {f.files}).")
            x = np.asarray(f["images"], np.float32)
        if tuple(x.shape[1:]) != shape:
            raise DataError(f"{path} holds images of shape {x.shape[1:]}, the model takes {shape}.")
        return x[:e.n_samples], str(path)
    cache = out_dir / "samples.npz"
    fp = _fingerprint(sampler, cfg, e.n_samples)
    if cache.is_file():
        with np.load(cache) as f:
            if "fingerprint" in f.files and str(f["fingerprint"]) == fp:
                log.info("Reusing the %d samples in %s", len(f["images"]), cache)
                return np.asarray(f["images"], np.float32), str(cache)

    key = keys.stream(cfg.seed, keys.EVAL_SAMPLES)
    x, _ = chains.draw(sampler, e.n_samples, key, batch_size=cfg.sample.batch_size,
                         chunk_steps=cfg.sample.chunk_steps, progress=progress,
                         unroll_steps=cfg.sample.unroll_steps)
    x = np.asarray(x, np.float32)
    if jax.process_index() == 0:
        io.savez_atomic(cache, images=x, fingerprint=np.asarray(fp))
    return x, f"drawn by the method's sampler (cached in {cache.name})"


# ---------------------------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------------------------


class _Context:
    """What every section needs, computed once."""

    def __init__(self, cfg, method, params, carry, source, out_dir, progress):
        self.cfg, self.e = cfg, cfg.eval
        self.method = method
        self.energy_fn = method.energy(params, carry)
        self.logits_fn = method.classifier(params) if method.classifier is not None else None
        self.sampler = method.sampler(params, carry)
        self.source = source
        self.shape = tuple(source.shape)
        self.out_dir = out_dir
        self.progress = progress
        self.seed = cfg.seed
        self.test, self.test_split = _test_source(cfg, source)
        self.x_test = self.test.get(np.arange(min(len(self.test), self.e.n_data)))
        self.x_train = source.get(np.arange(min(len(source), self.e.n_data)))
        self.n_in = min(self.e.ood.n, len(self.x_test))  # the in-distribution images OOD sets are scored against
        self.samples: np.ndarray | None = None
        self.files: list[str] = []
        self._judge: Any = False
        self._ood_sets: dict[str, np.ndarray | str] | None = None
        self._set_energies: dict[str, np.ndarray] = {}

    def judge(self):
        """The dataset's judge for these images (``ebmjax.data.judge_for``), or None."""
        if self._judge is False:
            self._judge = data.judge_for(self.cfg.data, self.e.classifier_seed, self.shape)
        return self._judge

    def energies(self, x: np.ndarray) -> np.ndarray:
        return ood.energies(self.energy_fn, x, batch_size=self.e.batch_size)

    def ood_sets(self) -> dict[str, np.ndarray | str]:
        """Every OOD set's images, or why it was skipped: drawn once, the same for every section."""
        if self._ood_sets is None:
            rng = np.random.default_rng([self.cfg.seed, 14])
            self._ood_sets = {}
            for name in _resolve_ood_sets(self.cfg):
                try:
                    self._ood_sets[name] = _ood_images(name, self, self.e.ood.n, rng)
                except (DataError, ConfigError) as err:
                    self._ood_sets[name] = f"skipped: {err}"
                    log.warning("OOD set %s skipped: %s", name, err)
        return self._ood_sets

    def set_images(self, name: str) -> np.ndarray:
        """A named image set: "in" (the first n_in test images), "train" (as many training images) or an
        OOD set of ``ood_sets()``."""
        if name == "in":
            return self.x_test[:self.n_in]
        return self.x_train[:self.n_in] if name == "train" else self.ood_sets()[name]

    def set_energies(self, name: str) -> np.ndarray:
        """E(x) of ``set_images(name)``, computed once for every section."""
        if name not in self._set_energies:
            self._set_energies[name] = self.energies(self.set_images(name))
        return self._set_energies[name]


def _feature_metrics(feats_s: np.ndarray, probs_s: np.ndarray, feats_test: np.ndarray, probs_test: np.ndarray,
                     feats_train: np.ndarray, e: ml_collections.ConfigDict) -> dict[str, Any]:
    def kid(a, b):
        r = metrics.kernel_inception_distance(a, b, n_subsets=e.kid_subsets, subset_size=e.kid_subset_size)
        return {"kid": r.kid, "kid_std": r.kid_std, "kid_subset_size": r.subset_size}

    def is_(p):
        r = metrics.inception_score(p, n_splits=min(e.is_splits, len(p)))
        return {"is": r.score, "is_std": r.score_std, "is_splits": r.n_splits}

    return {
        "samples_vs_test": {"fid": metrics.frechet_distance(feats_s, feats_test), **kid(feats_s, feats_test),
                            **is_(probs_s), "n_samples": len(feats_s), "n_test": len(feats_test)},
        # The floor: real training images scored exactly like the samples.
        "train_vs_test": {"fid": metrics.frechet_distance(feats_train, feats_test), **kid(feats_train, feats_test),
                          "n_train": len(feats_train)},
        "is_test_images": is_(probs_test)["is"],
    }


def _fid(ctx: _Context) -> dict[str, Any]:
    e, out = ctx.e, {}
    judge, name = ctx.judge(), ctx.cfg.data.name
    if judge is not None and ctx.shape[-1] == judge.shape[-1]:
        ls, fs = judge.logits_and_features(ctx.samples)
        lt, ft = judge.logits_and_features(ctx.x_test)
        _, fr = judge.logits_and_features(ctx.x_train)
        softmax = lambda z: np.asarray(jax.nn.softmax(z, axis=-1), np.float64)  # noqa: E731
        out[name] = {
            "network": f"{judge.describe()}; features: {judge.feature_space()}",
            "note": f"FID/KID/IS in the {name} judge's features: comparable between ebmjax runs on {name} only, NOT "
                    "with Inception-v3 numbers",
            **_feature_metrics(fs, softmax(ls), ft, softmax(lt), fr, e),
        }
    else:
        out["judge"] = (f"skipped: data.name={name!r} has no judge for images of shape {ctx.shape} "
                        "(ebmjax.data.Dataset.judge)")
    if e.inception_weights is None:
        out["inception"] = INCEPTION_MISSING
    else:
        from ebmjax.evaluation.inception import load_inception

        net = load_inception(e.inception_weights, batch_size=min(e.batch_size, 200))
        fs, ps = net(ctx.samples)
        ft, pt = net(ctx.x_test)
        fr, _ = net(ctx.x_train)
        out["inception"] = {"network": "Inception-v3 (pt_inception-2015-12-05), pool3 features, 1008 classes",
                            **_feature_metrics(fs, ps, ft, pt, fr, e)}
    return out


def _ais(ctx: _Context) -> dict[str, Any]:
    a = ctx.e.ais
    kernel = samplers.hmc(int(a.n_leapfrog)) if a.kernel == "hmc" else samplers.mala
    kwargs = dict(n_steps=int(a.n_betas), kernel=kernel, step_size=a.step_size, ref_step_size=a.ref_step_size,
                  ref_std=a.ref_std, ref_mean=a.ref_mean, temperature=a.temperature, schedule=a.schedule,
                  beta_min=a.beta_min, chunk_size=int(a.chunk))
    d = math.prod(ctx.shape)
    x_rev = ctx.x_test[:a.n_data]
    bar = tqdm(total=2 * int(a.n_betas), desc="ais", unit="beta", disable=not ctx.progress, dynamic_ncols=True)
    done = [0]

    def tick(k, total):
        bar.update(k - done[0])
        done[0] = k if k < total else 0
    try:
        fwd = ais.ais_log_partition(ctx.energy_fn, keys.stream(ctx.seed, keys.AIS_FORWARD), shape=ctx.shape,
                                    n_chains=int(a.n_chains), on_chunk=tick, **kwargs)
        rev = ais.reverse_ais_log_partition(ctx.energy_fn, x_rev, keys.stream(ctx.seed, keys.AIS_REVERSE),
                                            on_chunk=tick, **kwargs)
    finally:
        bar.close()
    e_test = ctx.energies(ctx.x_test)

    def bpd(log_z, scale):
        return ais.nll_bits_per_dim(e_test, float(log_z), d, temperature=a.temperature, pixel_scale=scale)

    betas = ais.ais_betas(int(a.n_betas), a.schedule, beta_min=a.beta_min)
    plots.ais_diagnostics({"forward AIS": (np.asarray(fwd.log_weights), np.asarray(fwd.acceptance_rate), betas[1:]),
                           "reverse AIS": (np.asarray(rev.log_weights), np.asarray(rev.acceptance_rate), betas[:-1])},
                          ctx.out_dir / "ais.png")
    ctx.files.append("ais.png")
    # The bounds reported first are the paper's mean-of-log-weights estimators: by Jensen they keep the
    # bound's direction for any number of chains and do not hinge on the one chain that dominates a
    # log-mean-exp when the effective sample size is small. The log-mean-exp estimates are tighter on
    # average but noisy with few effective chains; both are reported.
    lo, hi = float(fwd.log_z_mean_log), float(rev.log_z_mean_log)
    lo_lme, hi_lme = float(fwd.log_z), float(rev.log_z)
    brackets = lo <= hi
    n_fwd, n_rev = int(a.n_chains), len(x_rev)

    def run_summary(r: ais.AISResult) -> dict[str, float]:
        acc = np.asarray(r.acceptance_rate)
        return {"ess": float(r.effective_sample_size), "acceptance_mean": float(acc.mean()),
                # The moves nearest the model (largest betas), where a too large step shows first.
                "acceptance_top_10pct_betas": float(acc[-max(1, len(acc) // 10):].mean())}

    s = a.pixel_scale
    summary = (f"log Z in [{lo:.2f}, {hi:.2f}] nats (gap {hi - lo:.2f}), test NLL {bpd(lo, s):.3f} to "
               f"{bpd(hi, s):.3f} bits/dim on [0, {s:g}] pixels; ESS {fwd.effective_sample_size:.1f} of {n_fwd} "
               f"(forward) and {rev.effective_sample_size:.1f} of {n_rev} (reverse)")
    if brackets:
        log.info("AIS: %s.", summary)
    else:
        log.warning("AIS bounds do NOT bracket log Z: %s. The estimates are too noisy to bound anything; raise "
                    "eval.ais.n_betas (and eval.ais.n_chains) and rerun.", summary)
    return {
        "brackets": brackets, "summary": summary,
        "log_z_lower": lo, "log_z_upper": hi, "gap_nats": hi - lo,
        "log_z_lower_logmeanexp": lo_lme, "log_z_upper_logmeanexp": hi_lme, "gap_nats_logmeanexp": hi_lme - lo_lme,
        f"bits_per_dim_{s:g}_lower": bpd(lo, s), f"bits_per_dim_{s:g}_upper": bpd(hi, s),
        f"bits_per_dim_{s:g}_lower_logmeanexp": bpd(lo_lme, s), f"bits_per_dim_{s:g}_upper_logmeanexp": bpd(hi_lme, s),
        "bits_per_dim_01_lower": bpd(lo, 1.0), "bits_per_dim_01_upper": bpd(hi, 1.0),
        "mean_test_energy": float(e_test.mean()), "n_test": len(e_test), "dim": d,
        "forward": {"n_chains": n_fwd, "start": "the reference", **run_summary(fwd)},
        "reverse": {"n_chains": n_rev, "start": f"first {n_rev} {ctx.test_split} images", **run_summary(rev)},
        "settings": a.to_dict(),
        "note": ("log Z of exp(-E/T) over R^D. Forward AIS: stochastic lower bound on log Z, so a lower bound "
                 "on bits/dim; reverse AIS started at test images: stochastic upper bound on log Z (exact when "
                 "started at model samples), so an upper bound on bits/dim (the paper's reported kind). "
                 "log_z_lower/upper average the chains' log-weights (the paper's estimator: a bound for any number "
                 "of chains); *_logmeanexp average the weights (tighter on average, noisy when the effective sample "
                 f"size is small). bits_per_dim_{s:g}: NLL of pixels in [0, {s:g}], i.e. the NLL in the model's "
                 f"[0, 1] coordinates + D log {s:g}; bits_per_dim_01: the model's own coordinates."
                 + ("" if brackets else " THE BOUNDS DO NOT BRACKET: use more betas or chains.")),
    }


def _ood_images(name: str, ctx: _Context, n: int, rng: np.random.Generator) -> np.ndarray:
    shape = ctx.shape
    if name == "uniform":
        return ood.uniform_noise(n, shape, rng)
    if name == "constant":
        return ood.constant_images(n, shape, rng)
    if name == "interpolation":
        return ood.interpolations(ctx.x_test, n, rng)
    pad = int(ctx.cfg.data.pad or 0)
    size = shape[0] - 2 * pad  # the side of this model's images before their padding
    if name == "faces":
        x = data.lfw_faces(size)[:n]
    else:  # another dataset, resized to this model's images (e.g. the 8x8 digits up-sampled for MNIST)
        dcfg = {**ctx.cfg.data.to_dict(), "name": name, "domain": None, "pad": 0, "image_size": size}
        src = data.load_source(dcfg, "test")
        x = src.get(np.arange(min(n, len(src))))
    if x.shape[1:3] != (size, size):
        raise DataError(f"{name} images are {x.shape[1:3]} after resizing, the model takes {shape[:2]}.")
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0))) if pad else x
    if x.shape[3] != shape[2]:
        x = np.repeat(x, shape[2], axis=-1) if x.shape[3] == 1 else x.mean(axis=-1, keepdims=True)
    return x


def _ood(ctx: _Context) -> dict[str, Any]:
    e = ctx.e
    n_in = ctx.n_in
    sigma0 = ctx.method.denoise_sigma
    noise_key = keys.stream(ctx.seed, keys.OOD_NOISE)
    variants = {"clean": lambda name, i: ctx.set_energies(name)}
    if e.ood.noise and sigma0 is not None:
        variants[f"sigma0={sigma0:g} noise"] = lambda name, i: ood.noisy_energies(
            ctx.energy_fn, ctx.set_images(name), jax.random.fold_in(noise_key, i), sigma0, batch_size=e.batch_size)
    sets: dict[str, Any] = {}
    hist = {v: {f"{ctx.test_split} (in)": f("in", 0)} for v, f in variants.items()}
    train_e = {v: f("train", 1) for v, f in variants.items()}
    for v in variants:
        hist[v]["train"] = train_e[v]
    curves: dict[str, dict[str, Any]] = {v: {} for v in variants}
    for i, (name, x_out) in enumerate(ctx.ood_sets().items()):
        if isinstance(x_out, str):
            sets[name] = x_out
            continue
        entry: dict[str, Any] = {"n": len(x_out)}
        for v, f in variants.items():
            e_out = f(name, i + 2)
            e_in = hist[v][f"{ctx.test_split} (in)"]
            auc = ood.ood_auroc(e_in, e_out)
            key = "auroc" if v == "clean" else "auroc_noisy"
            entry[key] = auc
            entry["mean_energy" if v == "clean" else "mean_energy_noisy"] = float(np.mean(e_out))
            hist[v][name] = e_out
            fpr, tpr = ood.roc_curve(e_in, e_out)
            curves[v][name] = (fpr, tpr, auc)
        sets[name] = entry
    plots.energy_histograms(hist, ctx.out_dir / "ood_hist.png")
    ctx.files.append("ood_hist.png")
    if any(curves.values()):
        plots.roc_curves({v: c for v, c in curves.items() if c}, ctx.out_dir / "ood_roc.png")
        ctx.files.append("ood_roc.png")
    in_key = f"{ctx.test_split} (in)"
    return {
        "convention": "OOD is the positive class, scored by energy (higher energy = more OOD); AUROC 0.5 = chance, "
                      "< 0.5: the model prefers the OOD set",
        "in_distribution": {"split": ctx.test_split, "n": n_in, "mean_energy": float(np.mean(hist["clean"][in_key]))},
        "sets": sets,
        # Energies of training vs test images: near 0.5 means the energy has not memorised the training set.
        "train_vs_test_auroc": ood.ood_auroc(train_e["clean"], hist["clean"][in_key]),
    }


def _neighbours(ctx: _Context) -> dict[str, Any]:
    e = ctx.e
    ref = ctx.source.get(np.arange(min(len(ctx.source), e.neighbours_train)))
    k = min(e.neighbours_k, len(ref))
    q = ctx.samples[:e.neighbours_n]
    nb = neighbours.nearest_neighbours(q, ref, k)
    plots.neighbours_picture(q, ref[nb.indices], ctx.out_dir / "neighbours.png")
    ctx.files.append("neighbours.png")
    m = e.neighbours_summary
    d_s = neighbours.nearest_neighbours(ctx.samples[:m], ref, 1).distances[:, 0]
    out = {"k": k, "n_shown": len(q), "n_train_searched": len(ref),
           "sample_to_train_nn_distance_mean": float(d_s.mean()),
           "sample_to_train_nn_distance_median": float(np.median(d_s))}
    if ctx.test_split == "test":
        d_t = neighbours.nearest_neighbours(ctx.x_test[:m], ref, 1).distances[:, 0]
        out.update({"test_to_train_nn_distance_mean": float(d_t.mean()),
                    "test_to_train_nn_distance_median": float(np.median(d_t)),
                    "ratio_sample_to_test": float(d_s.mean() / max(d_t.mean(), 1e-12)),
                    "note": "L2 in pixel units; a ratio well below 1 (samples closer to training images than test "
                            "images are) would suggest memorisation"})
    return out


def _coverage(ctx: _Context) -> dict[str, Any]:
    judge = ctx.judge()
    if judge is None:
        return {"skipped": f"mode coverage counts the classes of data.name={ctx.cfg.data.name!r}'s judge, and it has "
                           "none (ebmjax.data.Dataset.judge)"}
    res = coverage.mode_coverage(coverage.channel_labels(ctx.samples, judge.predict))
    ref = coverage.mode_coverage(coverage.channel_labels(ctx.x_test, judge.predict))
    n = len(ctx.samples)
    plots.mode_histogram(res.counts, ctx.out_dir / "coverage.png",
                         f"{res.n_covered} of {res.n_modes} modes covered by {n} samples")
    ctx.files.append("coverage.png")
    return {"n_samples": n, "n_modes": res.n_modes, "modes_covered": res.n_covered,
            "kl_to_uniform_nats": res.kl_to_uniform,
            "expected_covered_if_uniform": coverage.expected_covered_modes(n, res.n_modes),
            "reference": {"data": f"{ctx.test_split} images", "modes_covered": ref.n_covered,
                          "kl_to_uniform_nats": ref.kl_to_uniform, "n": int(ref.counts.sum())},
            "classifier": judge.describe(), "classifier_test_accuracy": judge.test_accuracy}


BOOTSTRAP_RESAMPLES = 1000  # the classifier's error bars: resamples of the test images


def _calibration_figures(probs: np.ndarray, labels: np.ndarray) -> tuple[dict[str, Any], calibration.Calibration]:
    """(n, accuracy, NLL, ECE and the mean top-class probability of ``probs`` against ``labels``; the
    reliability diagram's bins the ECE comes from)."""
    bins = calibration.calibration_bins(probs, labels)
    return {"n": len(labels), "accuracy": calibration.accuracy(probs, labels),
            "nll": calibration.negative_log_likelihood(probs, labels), "ece": bins.ece,
            "mean_confidence": float(probs.max(axis=1).mean())}, bins


def _described(f: dict[str, Any]) -> str:
    gap = f["mean_confidence"] - f["accuracy"]
    side = "as the accuracy" if abs(gap) < 5e-4 else "over-confident" if gap > 0 else "under-confident"
    return (f"accuracy {f['accuracy']:.3f}, NLL {f['nll']:.3f}, ECE {f['ece']:.3f}, mean confidence "
            f"{f['mean_confidence']:.3f} ({side})")


def _classifier(ctx: _Context) -> dict[str, Any]:
    if ctx.logits_fn is None:
        if ctx.method.labels:
            return {"skipped": f"method {ctx.method.name!r} learns class-conditional energies E(x, y) without fixing "
                               "each class's normaliser, so its softmax f(x) is not a classifier (Method.classifier "
                               "is None)"}
        return {"skipped": f"method {ctx.method.name!r} has no classifier (Method.classifier: jem, or ml, multigrid and "
                           "coop and cfebm with model.classes = K)"}
    y = ctx.test.labels(np.arange(len(ctx.x_test)))
    if y is None:
        return {"skipped": f"the {ctx.test_split} split of {ctx.cfg.data.name!r} has no labels"}
    logits = ood.energies(ctx.logits_fn, ctx.x_test, batch_size=ctx.e.batch_size)
    probs = calibration.softmax(logits)
    test, bins = _calibration_figures(probs, y)
    where = f"{ctx.method.name} on {len(y)} {ctx.cfg.data.name} {ctx.test_split} images"
    plots.reliability_diagram(bins, ctx.out_dir / "calibration.png", where)
    ctx.files.append("calibration.png")
    lines = [f"classifier on {len(y):,} {ctx.test_split} images: {_described(test)}"]
    # An earlier evaluation's scaled diagram: drawn again below only when a temperature is fitted.
    (ctx.out_dir / "calibration_scaled.png").unlink(missing_ok=True)
    # The same figures on as many training images (a gap between the two is over-fitting; an error
    # already there is the objective's), and the temperature fitted on them applied to the test images.
    y_train = ctx.source.labels(np.arange(len(ctx.x_train)))
    if ctx.test_split == "train":
        train: dict[str, Any] | str = "skipped: the test figures are already of the training split"
        scaled: dict[str, Any] | str = train
    elif y_train is None:
        train = scaled = f"skipped: the train split of {ctx.cfg.data.name!r} has no labels"
    elif not (np.isfinite(logits).all() and np.isfinite(
            logits_train := ood.energies(ctx.logits_fn, ctx.x_train, batch_size=ctx.e.batch_size)).all()):
        train = scaled = "skipped: the network's logits hold NaN or infinite values (a diverged checkpoint?)"
    else:
        train, _ = _calibration_figures(calibration.softmax(logits_train), y_train)
        lines.append(f"on {len(y_train):,} training images: {_described(train)}")
        try:
            t = calibration.fit_temperature(logits_train, y_train)
        except ValueError as e:  # every training image ranked right: no finite temperature
            scaled = f"skipped: {e}"
            lines.append("no temperature fitted on them: the network ranks every one's label first, so the fit "
                         "runs to T -> 0")
        else:
            scaled_figures, scaled_bins = _calibration_figures(
                calibration.softmax(np.asarray(logits, np.float64) / t), y)
            scaled = {"temperature": t, "fitted_on": f"{len(y_train)} train images", **scaled_figures}
            plots.reliability_diagram(scaled_bins, ctx.out_dir / "calibration_scaled.png",
                                      f"{where}\nlogits / T, T = {t:.3g} fitted on the train split")
            ctx.files.append("calibration_scaled.png")
            lines.append(f"the temperature fitted on them, {t:.3f}, on the {ctx.test_split} images: "
                         f"{_described(scaled)}")
    log.info("%s.", "; ".join(lines))
    # OOD by the classifier's confidence (1 - max p(y|x): higher = more OOD) beside the energy's.
    score_in = 1.0 - probs[:ctx.n_in].max(axis=1)
    sets: dict[str, Any] = {}
    for name, x_out in ctx.ood_sets().items():  # the ood section's images and energies, computed once
        if isinstance(x_out, str):
            sets[name] = x_out
            continue
        p_out = calibration.softmax(ood.energies(ctx.logits_fn, x_out, batch_size=ctx.e.batch_size))
        sets[name] = {"n": len(x_out), "ood_auroc_max_softmax": ood.ood_auroc(score_in, 1.0 - p_out.max(axis=1)),
                      "ood_auroc_energy": ood.ood_auroc(ctx.set_energies("in"), ctx.set_energies(name))}
    figures = {"accuracy": calibration.accuracy, "nll": calibration.negative_log_likelihood,
               "ece": calibration.expected_calibration_error}
    return {**test, "ece_bins": len(bins.counts), "train": train, "temperature_scaled": scaled,
            "std": {k: calibration.bootstrap_std(f, probs, y, n_resamples=BOOTSTRAP_RESAMPLES)
                    for k, f in figures.items()}, "ood": sets,
            "note": f"ece: expected calibration error over {len(bins.counts)} equal-width confidence bins (0 = calibrated); "
                    f"std: each figure's standard deviation over {BOOTSTRAP_RESAMPLES:,} bootstrap resamples of the "
                    f"{len(y)} images (seed 0); OOD "
                    "scored by 1 - max softmax and by the energy E(x) = -logsumexp f(x) (higher = OOD) against the "
                    f"{ctx.test_split} images; mean_confidence: the mean top-class probability (above the accuracy: "
                    "over-confident, below: under-confident); train: the same figures on the first training images; "
                    "temperature_scaled: the test figures of softmax(f(x) / T), T fitted to the training images' "
                    "labels by likelihood (no test image used; the accuracy is unchanged)"}


SECTIONS: dict[str, Callable[[_Context], dict[str, Any]]] = {
    "fid": _fid, "ais": _ais, "ood": _ood, "neighbours": _neighbours, "coverage": _coverage, "classifier": _classifier,
}
NEEDS_SAMPLES = ("fid", "neighbours", "coverage")


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return x


def scan_checkpoints(cfg: ml_collections.ConfigDict, workdir: str | pathlib.Path, *,
                     progress: bool = True) -> dict[str, Any]:
    """Scores every checkpoint in ``workdir`` (``ebmjax.evaluation.scan``) and returns the scan's report
    (``best_step`` among it), also written to ``eval/best_checkpoint.json``."""
    from ebmjax.evaluation import scan
    from ebmjax.train import loop
    from ebmjax.train.checkpoint import Checkpoints
    from ebmjax.train.state import inference_params

    workdir = pathlib.Path(workdir).absolute()
    if not (workdir / "checkpoints").is_dir():
        raise ConfigError(f"No checkpoints in {workdir}: train first, or pass the --workdir of a trained run.")
    ckpts = Checkpoints(workdir, cfg)
    try:
        steps = ckpts.steps()
    finally:
        ckpts.close()
    if not steps:
        raise ConfigError(f"No checkpoint in {workdir / 'checkpoints'} to score: train first.")

    def load(step):
        state, method, _ = loop.load_trained(cfg, workdir, step=step)
        return method.sampler(inference_params(state, cfg.sample.weights), state.carry), step

    test, _ = _test_source(cfg, data.load_source(cfg.data, "train"))
    x_test = test.get(np.arange(min(len(test), cfg.eval.n_data)))
    return scan.scan_to_workdir(cfg, workdir, load, steps, x_test, progress=progress)


def evaluate_to_workdir(cfg: ml_collections.ConfigDict, method: Any, state: Any, source: Any,
                        workdir: str | pathlib.Path, *, progress: bool = True) -> dict[str, Any]:
    """Runs ``eval.metrics`` on the method's energy and samples at the train state ``state`` (its
    moving average of the parameters when kept), trained on ``source``; writes
    ``<workdir>/eval/report.json`` and the pictures (process 0) and returns the report."""
    from ebmjax.train.state import inference_params

    step = int(state.step)
    check_config(cfg)
    shape = tuple(source.shape)
    if len(shape) != 3:
        raise ConfigError(f"--mode eval evaluates image models (H, W, C); {cfg.data.name} has examples of shape "
                          f"{shape}. Use --mode sample for 2-D toys (it draws the learned density).")
    out_dir = pathlib.Path(workdir) / "eval"
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    ctx = _Context(cfg, method, inference_params(state, cfg.sample.weights), state.carry, source, out_dir, progress)
    report: dict[str, Any] = {"step": step, "method": cfg.method.name, "data": cfg.data.name, "shape": list(shape),
                              "reference_split": ctx.test_split, "n_reference": len(ctx.x_test), "metrics": {},
                              "seconds": {}}
    if any(m in cfg.eval.metrics for m in NEEDS_SAMPLES):
        t = time.perf_counter()
        ctx.samples, origin = _samples(cfg, ctx.sampler, shape, out_dir, progress)
        report["samples"] = {"n": len(ctx.samples), "from": origin, "min": float(ctx.samples.min()),
                             "max": float(ctx.samples.max())}
        report["seconds"]["samples"] = time.perf_counter() - t
        visualize.save_image_grid(ctx.samples, out_dir / "samples.png", title=grid_title(cfg, ctx.sampler, step))
        ctx.files.append("samples.png")
    for name in METRICS:
        if name not in cfg.eval.metrics:
            continue
        t = time.perf_counter()
        log.info("eval: %s", name)
        report["metrics"][name] = SECTIONS[name](ctx)
        report["seconds"][name] = time.perf_counter() - t
        log.info("eval: %s done in %.1f s", name, report["seconds"][name])
    report["seconds"]["total"] = time.perf_counter() - t0
    report["files"] = ["report.json", *ctx.files]
    report = _jsonable(report)
    if jax.process_index() == 0:
        (out_dir / "report.json").write_text(json.dumps(report, indent=2))
        log.info("Wrote %s", out_dir / "report.json")
    return report
