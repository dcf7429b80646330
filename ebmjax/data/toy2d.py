"""2-D toy densities for quick studies: samplers and true log densities to compare a learned one with.

All densities live well inside the box [-4, 4]^2 (``TOY_RANGE``). Definitions:

- ``eight_gaussians``: equal mixture of 8 isotropic Gaussians, std 0.1, centred on the circle of
  radius 2 at angles 2 pi k / 8 (k = 0..7; label k). Mean 0, covariance (2 + 0.01) I.
- ``rings``: radius r_k + 0.08 z (z standard normal) with r_k in (1, 2, 3) chosen with probability
  proportional to r_k (so the density along each ring is the same), angle uniform; label k.
- ``checkerboard``: uniform on the 8 "black" unit squares of a 4x4 board covering [-2, 2)^2; a square
  [a, a+1) x [b, b+1) is black when a + b is even. Density 1/8 there, 0 elsewhere; label = square 0..7.
- ``two_moons``: two half circles of radius 1, (cos t, sin t) and (1 - cos t, 0.5 - sin t) with
  t ~ U(0, pi), shifted by (-0.5, -0.25) so the mean is 0, scaled by 1.5, plus N(0, 0.1^2 I); label = moon.
- ``swiss_roll``: 0.25 t (cos t, sin t) with t ~ U(1.5 pi, 4.5 pi), plus N(0, 0.1^2 I); no labels.

``log_density`` is exact and normalised for eight_gaussians, rings and checkerboard. For two_moons
and swiss_roll it is the curve density convolved with the noise, integrated over t by the midpoint
rule with 1024 nodes per curve: a Gaussian mixture that is itself normalised. Measured against 32768
nodes, its density differs by at most 1e-5 (two_moons) and 1.3e-4 (swiss_roll) for peak densities of
0.42 and 0.34; the error sits at the two ends of each curve (relative error < 1% wherever p > 0.01).
"""

from __future__ import annotations

import logging
import math
import zlib
from collections.abc import Callable

import numpy as np

from ebmjax.data.registry import Dataset, SampleReport
from ebmjax.data.source import ArraySource
from ebmjax.errors import ConfigError

TOY_NAMES: tuple[str, ...] = ("eight_gaussians", "rings", "checkerboard", "two_moons", "swiss_roll")
TOY_RANGE: tuple[float, float] = (-4.0, 4.0)
TOY_SPLITS: dict[str, int] = {"train": 0, "test": 1}

EIGHT_GAUSSIANS_RADIUS = 2.0
EIGHT_GAUSSIANS_STD = 0.1
RINGS_RADII: tuple[float, ...] = (1.0, 2.0, 3.0)
RINGS_STD = 0.08
CHECKERBOARD_HALF_WIDTH = 2  # board [-2, 2)^2 of unit squares
TWO_MOONS_SCALE = 1.5
TWO_MOONS_STD = 0.1
SWISS_ROLL_T = (1.5 * math.pi, 4.5 * math.pi)
SWISS_ROLL_SCALE = 0.25
SWISS_ROLL_STD = 0.1
QUADRATURE_NODES = 1024

Sampled = tuple[np.ndarray, np.ndarray | None]


def _check_name(name: str) -> None:
    if name not in TOY_NAMES:
        raise ConfigError(f"Unknown toy density {name!r}. Valid toys: {', '.join(TOY_NAMES)} "
                          "(as data names: " + ", ".join("toy:" + t for t in TOY_NAMES) + ").")


def eight_gaussians_centers() -> np.ndarray:
    """(8, 2) mode centres, radius 2, angle 2 pi k / 8."""
    angles = 2 * np.pi * np.arange(8) / 8
    return EIGHT_GAUSSIANS_RADIUS * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def checkerboard_black_squares() -> np.ndarray:
    """(8, 2) lower-left corners (a, b) of the black unit squares (a + b even), in label order."""
    lo = -CHECKERBOARD_HALF_WIDTH
    corners = [(a, b) for a in range(lo, -lo) for b in range(lo, -lo) if (a + b) % 2 == 0]
    return np.array(corners, dtype=np.float64)


def _two_moons_curve(t: np.ndarray, moon: int) -> np.ndarray:
    """(len(t), 2) noiseless point of moon 0 (upper) or 1 (lower) at parameter t in [0, pi]."""
    if moon == 0:
        xy = np.stack([np.cos(t), np.sin(t)], axis=-1)
    else:
        xy = np.stack([1.0 - np.cos(t), 0.5 - np.sin(t)], axis=-1)
    return TWO_MOONS_SCALE * (xy - np.array([0.5, 0.25]))


def _swiss_roll_curve(t: np.ndarray) -> np.ndarray:
    return SWISS_ROLL_SCALE * t[:, None] * np.stack([np.cos(t), np.sin(t)], axis=-1)


# ----------------------------------------------------------------------------------------------
# Samplers: (n, rng) -> (points (n, 2) float64, labels (n,) int64 or None).


def _sample_eight_gaussians(n: int, rng: np.random.Generator) -> Sampled:
    k = rng.integers(0, 8, size=n)
    return eight_gaussians_centers()[k] + EIGHT_GAUSSIANS_STD * rng.standard_normal((n, 2)), k


def _sample_rings(n: int, rng: np.random.Generator) -> Sampled:
    radii = np.asarray(RINGS_RADII)
    k = rng.choice(len(radii), size=n, p=radii / radii.sum())
    rho = radii[k] + RINGS_STD * rng.standard_normal(n)
    theta = rng.uniform(0.0, 2 * np.pi, size=n)
    return rho[:, None] * np.stack([np.cos(theta), np.sin(theta)], axis=1), k


def _sample_checkerboard(n: int, rng: np.random.Generator) -> Sampled:
    k = rng.integers(0, 8, size=n)
    return checkerboard_black_squares()[k] + rng.uniform(0.0, 1.0, size=(n, 2)), k


def _sample_two_moons(n: int, rng: np.random.Generator) -> Sampled:
    moon = rng.integers(0, 2, size=n)
    t = rng.uniform(0.0, np.pi, size=n)
    pts = np.where(moon[:, None] == 0, _two_moons_curve(t, 0), _two_moons_curve(t, 1))
    return pts + TWO_MOONS_STD * rng.standard_normal((n, 2)), moon


def _sample_swiss_roll(n: int, rng: np.random.Generator) -> Sampled:
    t = rng.uniform(*SWISS_ROLL_T, size=n)
    return _swiss_roll_curve(t) + SWISS_ROLL_STD * rng.standard_normal((n, 2)), None


_SAMPLERS: dict[str, Callable[[int, np.random.Generator], Sampled]] = {
    "eight_gaussians": _sample_eight_gaussians,
    "rings": _sample_rings,
    "checkerboard": _sample_checkerboard,
    "two_moons": _sample_two_moons,
    "swiss_roll": _sample_swiss_roll,
}


def sample_with_labels(name: str, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
    """``n`` points of toy ``name``: (n, 2) float32 and their component labels (n,) int64, or None
    for swiss_roll (see the module docstring for what the labels mean)."""
    _check_name(name)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    points, labels = _SAMPLERS[name](int(n), rng)
    return points.astype(np.float32), None if labels is None else labels.astype(np.int64)


def sample(name: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` points of toy ``name``: (n, 2) float32."""
    return sample_with_labels(name, n, rng)[0]


# ----------------------------------------------------------------------------------------------
# Log densities: (n, 2) points -> (n,) float64, normalised over the plane.


def _logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
    m = np.max(a, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    return np.squeeze(m, axis) + np.log(np.sum(np.exp(a - m), axis=axis))


def _isotropic_mixture_log_density(points: np.ndarray, centers: np.ndarray, log_weights: np.ndarray,
                                   std: float) -> np.ndarray:
    """log sum_k w_k N(x; c_k, std^2 I) for (n, 2) points; chunked to bound memory at (chunk, K)."""
    out = np.empty(len(points))
    chunk = max(1, 1_000_000 // len(centers))
    log_norm = -np.log(2 * np.pi * std**2)
    c2 = np.sum(centers**2, axis=1)
    for s in range(0, len(points), chunk):
        p = points[s:s + chunk]
        # |p - c|^2 through a matrix product: far faster than broadcasting, and in float64 the
        # cancellation error (~1e-14 |p|^2) is negligible against std^2.
        d2 = np.maximum(np.sum(p**2, axis=1)[:, None] + c2[None, :] - 2.0 * p @ centers.T, 0.0)
        out[s:s + chunk] = _logsumexp(log_weights[None, :] - d2 / (2 * std**2), axis=1) + log_norm
    return out


def _log_density_eight_gaussians(x: np.ndarray) -> np.ndarray:
    return _isotropic_mixture_log_density(x, eight_gaussians_centers(), np.full(8, -np.log(8.0)),
                                          EIGHT_GAUSSIANS_STD)


def _log_density_rings(x: np.ndarray) -> np.ndarray:
    # Radial density of rho = r_k + s z folded at 0 (a negative radius is the opposite angle), spread
    # uniformly over the circle of circumference 2 pi rho.
    radii = np.asarray(RINGS_RADII)
    log_w = np.log(radii / radii.sum())
    rho = np.maximum(np.hypot(x[:, 0], x[:, 1]), 1e-12)
    s = RINGS_STD
    terms = np.concatenate([log_w[None, :] - (rho[:, None] - radii[None, :]) ** 2 / (2 * s**2),
                            log_w[None, :] - (rho[:, None] + radii[None, :]) ** 2 / (2 * s**2)], axis=1)
    log_q = _logsumexp(terms, axis=1) - 0.5 * np.log(2 * np.pi * s**2)
    return log_q - np.log(2 * np.pi * rho)


def _log_density_checkerboard(x: np.ndarray) -> np.ndarray:
    a, b = np.floor(x[:, 0]), np.floor(x[:, 1])
    h = CHECKERBOARD_HALF_WIDTH
    inside = (a >= -h) & (a < h) & (b >= -h) & (b < h) & ((a + b) % 2 == 0)
    return np.where(inside, -np.log(8.0), -np.inf)


def _midpoints(lo: float, hi: float) -> np.ndarray:
    return lo + (hi - lo) * (np.arange(QUADRATURE_NODES) + 0.5) / QUADRATURE_NODES


def _log_density_two_moons(x: np.ndarray) -> np.ndarray:
    t = _midpoints(0.0, np.pi)
    centers = np.concatenate([_two_moons_curve(t, 0), _two_moons_curve(t, 1)])
    log_w = np.full(len(centers), -np.log(len(centers)))
    return _isotropic_mixture_log_density(x, centers, log_w, TWO_MOONS_STD)


def _log_density_swiss_roll(x: np.ndarray) -> np.ndarray:
    centers = _swiss_roll_curve(_midpoints(*SWISS_ROLL_T))
    log_w = np.full(len(centers), -np.log(len(centers)))
    return _isotropic_mixture_log_density(x, centers, log_w, SWISS_ROLL_STD)


_LOG_DENSITIES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "eight_gaussians": _log_density_eight_gaussians,
    "rings": _log_density_rings,
    "checkerboard": _log_density_checkerboard,
    "two_moons": _log_density_two_moons,
    "swiss_roll": _log_density_swiss_roll,
}


def log_density(name: str, points: np.ndarray) -> np.ndarray:
    """Normalised log density of toy ``name`` at (n, 2) points: (n,) float64 (-inf where it is 0)."""
    _check_name(name)
    x = np.asarray(points, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"points must have shape (n, 2), got {x.shape}")
    return _LOG_DENSITIES[name](x)


# ----------------------------------------------------------------------------------------------


def assign_modes(name: str, points: np.ndarray) -> tuple[np.ndarray, int] | None:
    """The mode (component label, as in :func:`sample_with_labels`) each point belongs to, and the
    number of modes; None for toys without modes (swiss_roll).

    eight_gaussians: the nearest centre; rings: the nearest ring radius; checkerboard: the black
    square holding the point, -1 outside every black square; two_moons: the nearer moon curve.
    """
    _check_name(name)
    x = np.asarray(points, dtype=np.float64)
    if name == "eight_gaussians":
        d = ((x[:, None, :] - eight_gaussians_centers()[None]) ** 2).sum(-1)
        return d.argmin(axis=1), 8
    if name == "rings":
        r = np.linalg.norm(x, axis=1)
        return np.abs(r[:, None] - np.asarray(RINGS_RADII)[None]).argmin(axis=1), len(RINGS_RADII)
    if name == "checkerboard":
        corners = checkerboard_black_squares()
        inside = ((x[:, None, :] >= corners[None]) & (x[:, None, :] < corners[None] + 1.0)).all(-1)
        return np.where(inside.any(1), inside.argmax(1), -1), len(corners)
    if name == "two_moons":
        t = np.linspace(0.0, np.pi, 256)
        d = [np.min(((x[:, None, :] - _two_moons_curve(t, m)[None]) ** 2).sum(-1), axis=1) for m in (0, 1)]
        return np.argmin(np.stack(d, axis=1), axis=1), 2
    return None


class ToySource(ArraySource):
    """``ImageSource`` over a fixed draw of ``size`` points of toy ``toy_name``.

    The points are drawn once from ``np.random.default_rng([crc32(toy_name), split_id])`` (train 0,
    test 1), so a (toy, split, size) triple always gives the same points. name "toy:<toy_name>",
    shape (2,), value_range = TOY_RANGE (a box holding the density, not a clip).
    """

    def __init__(self, toy_name: str, size: int, split: str = "train"):
        _check_name(toy_name)
        if split not in TOY_SPLITS:
            raise ConfigError(f"Unknown split {split!r} for toy data. Valid splits: {', '.join(TOY_SPLITS)}.")
        rng = np.random.default_rng([zlib.crc32(toy_name.encode()), TOY_SPLITS[split]])
        points, labels = sample_with_labels(toy_name, size, rng)
        super().__init__("toy:" + toy_name, points, labels, value_range=TOY_RANGE, split=split)
        self.toy_name = toy_name

    def log_density(self, points: np.ndarray) -> np.ndarray:
        """True log density at (n, 2) points: (n,) float64."""
        return log_density(self.toy_name, points)


# ---------------------------------------------------------------------------------------------
# What sampling reports on a toy: density.png and the mass of every mode
# ---------------------------------------------------------------------------------------------

log = logging.getLogger(__name__)

GRID_LIM = 4.0
GRID_RESOLUTION = 200
MAX_POINTS = 2000  # points per scatter panel and per T = 1 draw
UNEVEN = 1.5  # a largest/smallest learned mode mass above this is reported as uneven


def mode_shares(toy_name: str, points: np.ndarray) -> dict | None:
    """{"shares": share of points in each mode, "off_support": share in none} or None (no modes)."""
    assigned = assign_modes(toy_name, points)
    if assigned is None:
        return None
    labels, n_modes = assigned
    counts = np.bincount(labels[labels >= 0], minlength=n_modes)
    return {"shares": (counts / max(len(labels), 1)).round(4).tolist(),
            "off_support": round(float(np.mean(labels < 0)), 4)}


def learned_mode_masses(energy_fn: Callable[[np.ndarray], np.ndarray], toy_name: str, lim: float = GRID_LIM,
                        resolution: int = 400) -> list[float] | None:
    """The learned density's mass over each mode's region (grid points assigned as data points are),
    normalised to sum to 1 over the modes; None for toys without modes."""
    g = np.linspace(-lim, lim, resolution)
    pts = np.stack(np.meshgrid(g, g), axis=-1).reshape(-1, 2)
    assigned = assign_modes(toy_name, pts)
    if assigned is None:
        return None
    labels, n_modes = assigned
    e = np.asarray(energy_fn(pts.astype(np.float32)), np.float64)
    w = np.exp(-(e - e.min()))
    mass = np.array([w[labels == k].sum() for k in range(n_modes)])
    return (mass / mass.sum()).round(4).tolist()


def density_report(r: SampleReport) -> dict:
    """What a model learned of a toy density, shown truthfully: ``density.png`` puts the learned
    log-density (every mode visible, however unequal the masses) beside the data, the method's samples
    (for MDSM annealed down to T = 0 and then denoised by the jump, so they sit near the modes'
    centres) and chains at T = 1 without the finishing map (the density exp(-E) the model defines, for
    MDSM the data smoothed by sigma0). For toys with modes it reports the share of points in each
    mode for the data, both kinds of samples and the learned density itself (its mass over each mode's
    region on a grid): unequal learned masses are measured, not guessed from a picture."""
    from ebmjax import visualize

    toy_name = r.source.toy_name
    data = r.source.get(np.arange(min(len(r.source), 5000)))
    samples = np.asarray(r.samples)[:MAX_POINTS]
    warm = r.draw_warm(min(len(samples), MAX_POINTS))
    report: dict = {"toy": toy_name}
    shares = {"data": mode_shares(toy_name, data), "samples": mode_shares(toy_name, samples),
              "samples_T1": mode_shares(toy_name, warm)}
    masses = learned_mode_masses(r.energy_fn, toy_name)
    footnote = ""
    if shares["data"] is not None:
        report["mode_shares"] = {**shares, "learned_density_mass": masses}
        ratio = max(masses) / max(min(masses), 1e-12)
        report["learned_mass_max_over_min"] = round(ratio, 3)
        report["learned_masses_uneven"] = bool(ratio > UNEVEN)
        footnote = (f"learned mass per mode: {' '.join(f'{m:.2f}' for m in masses)} (max/min {ratio:.2f}); "
                    f"data: {' '.join(f'{m:.2f}' for m in shares['data']['shares'])}")
        if r.label is not None and r.label >= 0:  # one class's density: its mass belongs on its own mode
            report["label"], report["learned_mass_of_the_label"] = r.label, masses[r.label]
        elif ratio > UNEVEN and r.label is None:
            log.warning("The learned density puts unequal mass on the %d modes of %s (largest/smallest %.2f): %s.",
                        len(masses), toy_name, ratio, masses)
    visualize.save_density_2d(
        r.energy_fn, r.out_dir / "density.png",
        panels=[("data", data[:MAX_POINTS]), ("the method's samples", samples),
                ("chains at T = 1, no final map", warm)],
        lim=GRID_LIM, resolution=GRID_RESOLUTION, title=r.title, footnote=footnote)
    return {"density": report, "files": ["density.png"]}


def _toy_dataset(toy_name: str) -> Dataset:
    return Dataset("toy:" + toy_name, lambda split, o: ToySource(toy_name, o.toy_size, split),
                   f"2-D toy density {toy_name} (points in [-4, 4]^2, drawn once per split)",
                   splits=tuple(TOY_SPLITS), points=True, report=density_report)


DATASETS = tuple(_toy_dataset(t) for t in TOY_NAMES)
