"""Annealed importance sampling (Neal 2001) and reverse AIS (Burda et al. 2015) for log Z of an energy.

Target: p(x) = exp(-E(x) / T) / Z over x in R^D (D = prod(shape)). Reference: N(m, s^2 I), with
energy R(x) = |x - m|^2 / (2 s^2) and log Z_R = (D / 2) log(2 pi s^2). The bridge at inverse
temperature beta in [0, 1] is the MDSM code's

    f_beta(x) = beta * E(x) / T + (1 - beta) * R(x).

One annealing step from beta to beta' adds (beta' - beta) * (R(x) - E(x) / T) = f_beta(x) -
f_beta'(x) to the chain's log-weight, then makes one MCMC move (HMC with L leapfrog steps, or MALA)
that leaves p_beta' invariant. The same code runs both directions:

- Forward AIS: x_0 ~ N(m, s^2 I), betas 0 -> 1. E[w] = Z / Z_R, so
  log Z_hat = log Z_R + log mean(w) is, by Jensen, a *stochastic lower bound*: E[log Z_hat] <= log Z.
- Reverse AIS: x_K taken from the target (in practice: test images, an approximation), betas
  1 -> 0. E[w] = Z_R / Z, so log Z_hat = log Z_R - log mean(w) is a *stochastic upper bound*:
  E[log Z_hat] >= log Z (exactly so when the start points are exact samples from p).

Both results also carry the paper's estimator, which averages log-weights instead of weights
("the average of the log density instead of the log of the average density", MDSM appendix D):
log Z_R +/- mean(log w). It keeps the bound's direction (Jensen again) but is looser; it is robust
to one outlier chain dominating the mean of the weights.

Everything is jax; the scan over betas runs in jitted chunks so a long schedule (the paper's
10,000 betas) can report progress. Nothing here knows about models, files or configs.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ebmjax import samplers
from ebmjax.errors import ConfigError
from ebmjax.samplers.kernels import EnergyFn, Kernel, MCMCState

__all__ = [
    "AISResult",
    "ais_betas",
    "bridged_step_sizes",
    "reference_log_partition",
    "ais_log_partition",
    "reverse_ais_log_partition",
    "nll_bits_per_dim",
    "SCHEDULES",
]

SCHEDULES = ("geometric", "sigmoid", "linear")


class AISResult(NamedTuple):
    """What an AIS run returns (scalars as Python floats, computed in float64; arrays from jax).

    log_z: the estimate log Z_R +/- logmeanexp(log_weights) - energy_shift, nats (forward: lower
        bound on average; reverse: upper bound on average).
    log_z_mean_log: the looser estimate with mean(log_weights) in place of logmeanexp.
    log_weights: (n_chains,) final log-weight of each chain, nats, for the shifted energy
        (E - c) / T: one chain's own estimate is log_z_ref +/- log_weights[i] - energy_shift.
    log_z_ref: log partition function of the reference N(m, s^2 I), nats.
    energy_shift: c / T, nats: the constant c subtracted from E inside the chains (the median
        energy of the start points). Learned energies carry arbitrary offsets (tens of thousands
        on a trained MDSM net), and float32 weights and Metropolis tests lose precision on them;
        a constant shift changes log Z by exactly c / T, which is added back in float64.
    effective_sample_size: (sum w)^2 / sum w^2, between 1 and n_chains.
    acceptance_rate: (n_steps,) mean Metropolis acceptance over chains of each move, in increasing-beta
        order: forward AIS moves at betas[1:], reverse AIS at betas[:-1].
    positions: (n_chains, *shape) the chains after the last move (forward: approximate samples
        from p; reverse: approximate samples from the reference).
    """

    log_z: float
    log_z_mean_log: float
    log_weights: jax.Array
    log_z_ref: float
    energy_shift: float
    effective_sample_size: float
    acceptance_rate: jax.Array
    positions: jax.Array


def ais_betas(n_steps: int, schedule: str = "geometric", *, beta_min: float = 1e-4,
              sigmoid_scale: float = 4.0) -> np.ndarray:
    """Inverse temperatures (n_steps + 1,) rising from exactly 0 to exactly 1.

    - "geometric": 0, then n_steps values geometrically spaced from beta_min to 1 (the "roughly
      exponential" schedule of the MDSM paper: most steps where the bridge changes fastest
      relative to itself, near the reference).
    - "sigmoid": Grosse et al. (2013): sigma(delta (2k/n - 1)) rescaled to [0, 1], delta = sigmoid_scale.
    - "linear": equally spaced.
    """
    if isinstance(n_steps, bool) or not isinstance(n_steps, (int, np.integer)) or n_steps < 1:
        raise ConfigError(f"AIS needs n_steps >= 1 intermediate distributions, got {n_steps!r}.")
    n = int(n_steps)
    if schedule == "geometric":
        if not 0.0 < beta_min < 1.0:
            raise ConfigError(f"beta_min must lie in (0, 1) for the geometric schedule, got {beta_min}.")
        b = np.concatenate([[0.0], np.geomspace(beta_min, 1.0, n)])
    elif schedule == "sigmoid":
        s = 1.0 / (1.0 + np.exp(-sigmoid_scale * (2.0 * np.arange(n + 1) / n - 1.0)))
        b = (s - s[0]) / (s[-1] - s[0])
    elif schedule == "linear":
        b = np.linspace(0.0, 1.0, n + 1)
    else:
        raise ConfigError(f"Unknown AIS schedule {schedule!r}; use one of {', '.join(SCHEDULES)}.")
    b[0], b[-1] = 0.0, 1.0
    return b


def bridged_step_sizes(betas: np.ndarray, step_size: float, ref_step_size: float | None = None) -> np.ndarray:
    """A step size per bridge (len(betas),) that interpolates precisions:
    h(beta) = (beta / h_1^2 + (1 - beta) / h_0^2)^(-1/2), h_1 = step_size (target), h_0 =
    ref_step_size (reference; None: the same as step_size, i.e. constant).

    For Gaussian bridges whose precision is beta l_1 + (1 - beta) l_0 this keeps h * sqrt(precision)
    - and so the HMC acceptance rate - the same along the whole schedule.
    """
    b = np.asarray(betas, dtype=np.float64)
    h1 = float(step_size)
    h0 = h1 if ref_step_size is None else float(ref_step_size)
    if h1 <= 0 or h0 <= 0:
        raise ConfigError(f"AIS step sizes must be > 0, got step_size={h1} and ref_step_size={h0}.")
    return (b / h1**2 + (1.0 - b) / h0**2) ** -0.5


def reference_log_partition(dim: int, ref_std: float) -> float:
    """log of the integral of exp(-|x - m|^2 / (2 s^2)) over R^dim: (dim / 2) log(2 pi s^2), nats."""
    return 0.5 * dim * math.log(2.0 * math.pi * ref_std**2)


def _check_kernel(kernel: Kernel) -> None:
    if kernel is samplers.ula:
        raise ConfigError("AIS needs transitions that leave each bridge exactly invariant: use "
                          "samplers.hmc(L) or samplers.mala, not the unadjusted samplers.ula.")
    if not isinstance(kernel, Kernel):
        raise ConfigError(f"kernel must be an ebmjax.samplers Kernel (hmc(L) or mala), got {type(kernel).__name__}.")


def _annealing_steps(kernel: Kernel, energy_fn: EnergyFn, x: jax.Array, log_w: jax.Array, key: jax.Array,
                     ref_mean: jax.Array, ref_std: jax.Array, inv_t: jax.Array, shift: jax.Array,
                     b_prev: jax.Array, b_next: jax.Array, h: jax.Array,
                     idx: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Scan over annealing steps k: log_w += (b_next - b_prev)(R - (E - shift)/T) at the current x,
    then one kernel move on f_{b_next} with key fold_in(key, idx[k]).
    Returns (x, log_w, acceptance (K,))."""
    dtype = log_w.dtype

    def reference(y: jax.Array) -> jax.Array:
        return jnp.sum((y - ref_mean) ** 2, axis=tuple(range(1, y.ndim))) / (2.0 * ref_std**2)

    def one(carry, xs):
        x, log_w = carry
        b0, b1, step, i = xs
        # One batched evaluation of the model per beta; HMC's leapfrog adds L more. The bridged
        # energy and gradient of the kernel's state are assembled from E and R, not evaluated again.
        e, g = samplers.energy_and_grad(energy_fn, x)
        e, g = (e.astype(dtype) - shift) * inv_t, g.astype(dtype) * inv_t
        xf = x.astype(dtype)
        r, gr = reference(xf), (xf - ref_mean) / ref_std**2
        log_w = log_w + (b1 - b0) * (r - e)

        def bridged(y: jax.Array) -> jax.Array:
            e_y = (energy_fn(y).astype(dtype) - shift) * inv_t
            return b1 * e_y + (1.0 - b1) * reference(y.astype(dtype))

        state = MCMCState(x, b1 * e + (1.0 - b1) * r, (b1 * g + (1.0 - b1) * gr).astype(g.dtype))
        state, info = kernel.step(jax.random.fold_in(key, i), state, bridged, step, jnp.ones((), dtype))
        return (state.position, log_w), jnp.mean(info.acceptance_rate)

    (x, log_w), acc = jax.lax.scan(one, (x, log_w), (b_prev, b_next, h, idx))
    return x, log_w, acc


@functools.partial(jax.jit, static_argnames=("kernel", "static_energy"))
def _run_chunk(kernel: Kernel, static_energy: EnergyFn | None, dynamic_energy: EnergyFn | None,
               *args: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    # Compiled once per kernel, energy and shapes (the samplers' driver does the same): a Partial
    # energy travels as a pytree argument, so new parameters of the same shapes reuse the code.
    energy_fn = static_energy if static_energy is not None else dynamic_energy
    return _annealing_steps(kernel, energy_fn, *args)


def _anneal(energy_fn: EnergyFn, x0: jax.Array, key: jax.Array, betas: np.ndarray, step_sizes: np.ndarray,
            *, kernel: Kernel, ref_mean: Any, ref_std: float, temperature: float, chunk_size: int | None,
            on_chunk: Callable[[int, int], None] | None) -> tuple[jax.Array, jax.Array, jax.Array, float]:
    """Runs chains from x0 through the bridges betas[0] -> betas[-1] (either direction).

    Returns (log_weights (B,), final positions (B, ...), mean acceptance per step (K,), energy
    shift c / T in nats; see AISResult),
    K = len(betas) - 1. Step k (0-based) moves from betas[k] to betas[k + 1]: weight update at the
    current point, then one kernel move on f_{betas[k+1]}; its key is fold_in(key, k), so the
    result does not depend on chunk_size.
    """
    n_steps = len(betas) - 1
    x0 = jnp.asarray(x0)
    dtype = jnp.promote_types(x0.dtype, jnp.float32)
    if isinstance(energy_fn, jax.tree_util.Partial):
        static_energy, dynamic_energy = None, energy_fn
    else:
        static_energy, dynamic_energy = energy_fn, None
    mean = jnp.broadcast_to(jnp.asarray(ref_mean, dtype), x0.shape[1:])
    std, inv_t = jnp.asarray(ref_std, dtype), jnp.asarray(1.0 / float(temperature), dtype)
    # Stored in the model's dtype, so the shift subtracted inside equals the one added back exactly.
    shift = jnp.median(jnp.asarray(energy_fn(x0)).astype(dtype))
    chunk = n_steps if chunk_size is None else max(1, min(int(chunk_size), n_steps))
    b = np.asarray(betas, dtype=np.float64)
    hs = np.asarray(step_sizes, dtype=np.float64)
    x, log_w, accs = x0, jnp.zeros((x0.shape[0],), dtype), []
    for start in range(0, n_steps, chunk):
        stop = min(start + chunk, n_steps)
        pad = chunk - (stop - start)
        # A short last chunk is padded with steps that stay at the final beta: their weight update
        # is exactly zero and their move leaves that bridge invariant, and the chunk shape (so the
        # compiled code) stays the same.
        b_prev = np.concatenate([b[start:stop], np.full(pad, b[-1])])
        b_next = np.concatenate([b[start + 1:stop + 1], np.full(pad, b[-1])])
        h = np.concatenate([hs[start + 1:stop + 1], np.full(pad, hs[-1])])
        idx = np.arange(start, start + chunk, dtype=np.int32)
        x, log_w, acc = _run_chunk(kernel, static_energy, dynamic_energy, x, log_w, key, mean, std, inv_t,
                                   shift, jnp.asarray(b_prev, dtype), jnp.asarray(b_next, dtype),
                                   jnp.asarray(h, dtype), jnp.asarray(idx))
        accs.append(acc[:stop - start])
        if on_chunk is not None:
            on_chunk(stop, n_steps)
    return log_w, x, jnp.concatenate(accs), float(shift) / float(temperature)


def _schedule(n_steps: int, betas: Sequence[float] | np.ndarray | None, schedule: str, beta_min: float) -> np.ndarray:
    if betas is None:
        return ais_betas(n_steps, schedule, beta_min=beta_min)
    b = np.asarray(betas, dtype=np.float64)
    if b.ndim != 1 or len(b) < 2 or b[0] != 0.0 or b[-1] != 1.0 or np.any(np.diff(b) < 0):
        raise ConfigError("betas must be a non-decreasing 1-D array from exactly 0 to exactly 1.")
    return b


def _step_schedule(betas: np.ndarray, step_size: float | Sequence[float] | np.ndarray,
                   ref_step_size: float | None) -> np.ndarray:
    h = np.asarray(step_size, dtype=np.float64)
    if h.ndim == 0:
        return bridged_step_sizes(betas, float(h), ref_step_size)
    if h.shape != betas.shape or np.any(h <= 0):
        raise ConfigError(f"step_size must be a positive scalar or one value per beta, shape {betas.shape}; "
                          f"got shape {h.shape}.")
    return h


def _result(log_w: jax.Array, x: jax.Array, acc: jax.Array, log_z_ref: float, shift: float,
            sign: float) -> AISResult:
    """sign +1: forward (E[w] = Z / Z_R); -1: reverse (E[w] = Z_R / Z). Shifted energy E - c:
    log Z = log Z_shifted - c / T."""
    lw = np.asarray(log_w, np.float64)
    top = lw.max()
    lme = top + math.log(np.mean(np.exp(lw - top)))
    ess = float(np.exp(2.0 * lme - (2.0 * top + math.log(np.mean(np.exp(2.0 * (lw - top)))))) * len(lw))
    return AISResult(log_z_ref + sign * lme - shift, log_z_ref + sign * float(lw.mean()) - shift, log_w,
                     float(log_z_ref), float(shift), ess, acc, x)


def ais_log_partition(energy_fn: EnergyFn, key: jax.Array, *, shape: Sequence[int], n_chains: int,
                      n_steps: int, kernel: Kernel | None = None, step_size: float | np.ndarray = 0.05,
                      ref_step_size: float | None = None, ref_std: float = 1.0, ref_mean: Any = 0.0,
                      temperature: float = 1.0, schedule: str = "geometric", beta_min: float = 1e-4,
                      betas: np.ndarray | None = None, chunk_size: int | None = None,
                      on_chunk: Callable[[int, int], None] | None = None) -> AISResult:
    """Forward AIS estimate of log Z = log of the integral of exp(-E(x)/T) over R^D: a stochastic lower bound.

    Args:
      energy_fn: maps (B, *shape) to energies (B,); rows independent.
      key: PRNG key.
      shape: per-example shape, e.g. (8, 8, 1).
      n_chains: independent AIS chains (importance samples).
      n_steps: number of intermediate distributions K (betas has K + 1 entries).
      kernel: ``samplers.hmc(L)`` (default ``hmc(10)``, the paper's 10 leapfrog steps) or ``samplers.mala``.
      step_size: the kernel's epsilon at beta = 1, scalar, or one per beta (K + 1,).
      ref_step_size: epsilon at beta = 0 (None: step_size); see :func:`bridged_step_sizes`.
      ref_std: standard deviation of the Gaussian reference N(ref_mean, ref_std^2 I).
      ref_mean: mean of the Gaussian reference, a scalar or an array of shape ``shape``.
      temperature: T of the target exp(-E/T).
      schedule: the inverse-temperature schedule, "geometric", "sigmoid" or "linear" (see :func:`ais_betas`).
      beta_min: the geometric schedule's first positive beta (see :func:`ais_betas`).
      betas: explicit betas from 0 to 1, used instead of ``schedule`` and ``beta_min``.
      chunk_size: betas per jitted call (None: all at once); ``on_chunk(done, total)`` after each.
    """
    kernel = samplers.hmc(10) if kernel is None else kernel
    _check_kernel(kernel)
    if isinstance(n_chains, bool) or not isinstance(n_chains, (int, np.integer)) or n_chains < 1:
        raise ConfigError(f"n_chains must be a positive integer, got {n_chains!r}.")
    if ref_std <= 0 or temperature <= 0:
        raise ConfigError(f"ref_std and temperature must be > 0, got {ref_std} and {temperature}.")
    shape = tuple(int(s) for s in shape)
    b = _schedule(n_steps, betas, schedule, beta_min)
    h = _step_schedule(b, step_size, ref_step_size)
    k_init, k_run = jax.random.split(key)
    x0 = jnp.asarray(ref_mean, jnp.float32) + ref_std * jax.random.normal(k_init, (int(n_chains), *shape), jnp.float32)
    log_w, x, acc, shift = _anneal(energy_fn, x0, k_run, b, h, kernel=kernel, ref_mean=ref_mean,
                                   ref_std=ref_std, temperature=temperature, chunk_size=chunk_size,
                                   on_chunk=on_chunk)
    return _result(log_w, x, acc, reference_log_partition(math.prod(shape), ref_std), shift, +1.0)


def reverse_ais_log_partition(energy_fn: EnergyFn, x: jax.Array, key: jax.Array, *, n_steps: int,
                              kernel: Kernel | None = None, step_size: float | np.ndarray = 0.05,
                              ref_step_size: float | None = None, ref_std: float = 1.0, ref_mean: Any = 0.0,
                              temperature: float = 1.0, schedule: str = "geometric", beta_min: float = 1e-4,
                              betas: np.ndarray | None = None, chunk_size: int | None = None,
                              on_chunk: Callable[[int, int], None] | None = None) -> AISResult:
    """Reverse AIS estimate of log Z from chains started at ``x`` (B, *shape): a stochastic upper bound.

    The chains run the same bridges as :func:`ais_log_partition` backwards, from the target
    (beta = 1) to the reference (beta = 0); each start point is one importance sample. The bound
    holds on average when ``x`` are exact samples of p; started from data (the paper: test
    images) it is the usual approximation of Burda et al. (2015). Other arguments as for
    :func:`ais_log_partition`; ``step_size`` per beta is given in increasing-beta order.
    """
    kernel = samplers.hmc(10) if kernel is None else kernel
    _check_kernel(kernel)
    x = jnp.asarray(x)
    if x.ndim < 2:
        raise ConfigError(f"x must be a batch of start points (B, *shape), got shape {x.shape}.")
    if ref_std <= 0 or temperature <= 0:
        raise ConfigError(f"ref_std and temperature must be > 0, got {ref_std} and {temperature}.")
    b = _schedule(n_steps, betas, schedule, beta_min)
    h = _step_schedule(b, step_size, ref_step_size)
    x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    log_w, x_end, acc, shift = _anneal(energy_fn, x, key, b[::-1].copy(), h[::-1].copy(), kernel=kernel,
                                       ref_mean=ref_mean, ref_std=ref_std, temperature=temperature,
                                       chunk_size=chunk_size, on_chunk=on_chunk)
    # Report acceptance in increasing-beta order like the forward run.
    log_z_ref = reference_log_partition(math.prod(x.shape[1:]), ref_std)
    return _result(log_w, x_end, acc[::-1], log_z_ref, shift, -1.0)


def nll_bits_per_dim(energies: jax.Array | np.ndarray, log_z: float, dim: int, *, temperature: float = 1.0,
                     pixel_scale: float = 255.0) -> float:
    """Mean negative log-likelihood in bits per dimension of points with energies E(x) (n,).

    -log p(x) = E(x)/T + log Z (nats) is the density of the model's own coordinates (pixels in
    [0, 1] for ebmjax images). Measured on pixels y = pixel_scale * x instead (the paper's
    convention: values in [0, 255], pixel_scale = 255), the density picks up the Jacobian:
    -log p_y(y) = -log p(x) + D log(pixel_scale). Result: mean(-log p_y) / (D ln 2).
    pixel_scale = 1 gives bits/dim in the model's own coordinates.

    Bound directions: log Z enters with a plus sign, so the lower bound on log Z from forward AIS
    gives a *lower* bound on bits/dim (optimistic), and the upper bound from reverse AIS gives an
    *upper* bound on bits/dim (conservative; the paper's CIFAR-10 7.04 is of this kind).
    """
    e = np.asarray(energies, dtype=np.float64)
    if pixel_scale <= 0:
        raise ConfigError(f"pixel_scale must be > 0, got {pixel_scale}.")
    nll = e / temperature + float(log_z) + dim * math.log(pixel_scale)
    return float(np.mean(nll) / (dim * math.log(2.0)))
