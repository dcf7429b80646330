"""MCMC kernels over a batch of independent chains: ULA (the paper's eq. 8), MALA and HMC.

Every kernel is a pair of pure functions, BlackJAX style::

    state = kernel.init(position, energy_fn)
    state, info = kernel.step(key, state, energy_fn, step_size, temperature)

``position`` has shape (B, ...) (images NHWC, or (B, D) points); each batch row is an independent
chain with its own Metropolis decision. ``energy_fn(x) -> (B,)``; the target at temperature T is
p_T(x) ∝ exp(-E(x) / T). ``step_size`` and ``temperature`` are arrays (traced under jit), either
scalars or one value per chain, shape (B,), so a new schedule of the same shape never recompiles.

One step-size convention for all three kernels, the paper's epsilon: the Langevin proposal is

    x' = x - (eps^2 / 2) dE/dx + eps * sqrt(T) * z,

which ULA takes as is, MALA follows with a Metropolis test on p_T, and HMC generalises (leapfrog
step eps * sqrt(T) on p_T, so HMC with one integration step and unit mass *is* MALA). Scaling the
move with sqrt(T) keeps acceptance rates comparable across an annealing schedule, because p_T is
sqrt(T) times wider than p_1 for a quadratic energy. MALA and HMC need T > 0; ULA accepts T = 0
(plain gradient descent, the last step of the paper's schedule).

Every Info holds ``energy`` (B,): the energy at the position the step started from (where its
gradient was taken), so ULA needs no extra evaluation to report it; MALA/HMC also report
``acceptance_rate`` and ``is_accepted`` (B,), and keep the current energy in ``state.energy``.

``energy_fn`` must treat batch rows independently (no batch statistics): the kernels evaluate it
on the whole batch of proposals at once (one matrix product per layer, not one per chain) and take
a separate Metropolis decision for each row.

Nothing here is jitted and nothing uses a collective, so the kernels run unchanged inside a user's
``jit``, ``vmap`` or on a batch sharded over devices.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from ebmjax.errors import ConfigError

EnergyFn = Callable[[jax.Array], jax.Array]
ArrayLike = Any


def as_partial(energy_fn: EnergyFn) -> jax.tree_util.Partial:
    """``energy_fn`` as a ``jax.tree_util.Partial`` (unchanged if it is one already).

    A Partial is a pytree, so one jitted helper that takes the energy as an argument serves every
    energy: a plain closure is a static part (keyed on its identity), while for
    ``Partial(model.apply, params)`` the parameters stay traced arguments, so new parameters do not
    recompile."""
    return energy_fn if isinstance(energy_fn, jax.tree_util.Partial) else jax.tree_util.Partial(energy_fn)



@jax.jit
def apply(fn: jax.tree_util.Partial, x: jax.Array) -> jax.Array:
    """``fn(x)``, compiled once per function and shapes: ``fn`` is a Partial (:func:`as_partial`), so
    an energy or a finishing map with new parameters reuses the compiled program."""
    return fn(x)


def identity(x: Any) -> Any:
    """The finishing map that leaves chains as they end (module level, so every use is one function)."""
    return x


__all__ = [
    "identity",
    "Kernel",
    "ULAState",
    "ULAInfo",
    "MCMCState",
    "MALAInfo",
    "HMCInfo",
    "ula",
    "mala",
    "hmc",
    "energy_and_grad",
    "decoupled",
    "langevin_kernel",
]


class Kernel(NamedTuple):
    """A sampler as two pure functions.

    init(position, energy_fn, ...) -> state
    step(key, state, energy_fn, step_size, temperature) -> (state, info)
    """

    init: Callable[..., Any]
    step: Callable[..., tuple[Any, Any]]


class ULAState(NamedTuple):
    """ULA keeps only the position: it evaluates the gradient at the start of each step.

    Caching nothing means a wrapper that changes the energy every step (clamping with fresh
    noise, see ``conditioning.clamped``) costs no extra evaluation.
    """

    position: jax.Array  # (B, ...)


class ULAInfo(NamedTuple):
    energy: jax.Array  # (B,) energy at the position the step started from


class MCMCState(NamedTuple):
    """MALA/HMC state: position with its energy and gradient cached at temperature 1.

    Caching E and dE/dx rather than log p_T keeps the state valid when T changes between steps.
    """

    position: jax.Array  # (B, ...)
    energy: jax.Array  # (B,)
    grad: jax.Array  # (B, ...) dE/dx


class MALAInfo(NamedTuple):
    energy: jax.Array  # (B,) energy at the position the step started from
    acceptance_rate: jax.Array  # (B,) Metropolis acceptance probability of the proposal
    is_accepted: jax.Array  # (B,) bool


class HMCInfo(NamedTuple):
    energy: jax.Array  # (B,) energy at the position the step started from
    acceptance_rate: jax.Array  # (B,)
    is_accepted: jax.Array  # (B,) bool
    is_divergent: jax.Array  # (B,) bool: Hamiltonian error beyond the divergence threshold


# ---------------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------------


def _check_position(x: jax.Array) -> None:
    if jnp.ndim(x) < 1:
        raise ConfigError(
            f"position must have a leading batch axis, shape (B, ...); got shape {jnp.shape(x)}."
        )


def _check_energy(e: jax.Array, batch: int) -> None:
    if jnp.shape(e) != (batch,):
        raise ConfigError(
            "energy_fn must map a batch of shape (B, ...) to one energy per example, shape (B,); "
            f"got output shape {jnp.shape(e)} for a batch of {batch}."
        )


def energy_and_grad(energy_fn: EnergyFn, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Energies (B,) and dE/dx (same shape as x) from one batched evaluation.

    Rows are independent, so the gradient of the summed energy is the per-example gradient.
    """
    _check_position(x)

    def total(y: jax.Array) -> tuple[jax.Array, jax.Array]:
        e = energy_fn(y)
        _check_energy(e, x.shape[0])
        return jnp.sum(e), e

    (_, e), g = jax.value_and_grad(total, has_aux=True)(x)
    return e, g


def per_chain(value: ArrayLike, x: jax.Array, name: str) -> jax.Array:
    """A scalar, or a (B,) array reshaped to (B, 1, ..., 1) so it broadcasts against x."""
    v = jnp.asarray(value)
    if v.ndim == 0:
        return v
    if v.shape == (x.shape[0],):
        return v.reshape((x.shape[0],) + (1,) * (x.ndim - 1))
    raise ConfigError(
        f"{name} must be a scalar or hold one value per chain, shape ({x.shape[0]},); "
        f"got shape {v.shape}."
    )


def chain_vector(value: ArrayLike, batch: int, name: str, dtype: Any) -> jax.Array:
    """A scalar or (B,) value as a (B,) array: one value per chain."""
    v = jnp.asarray(value, dtype=dtype)
    if v.ndim == 0:
        return jnp.broadcast_to(v, (batch,))
    if v.shape == (batch,):
        return v
    raise ConfigError(
        f"{name} must be a scalar or hold one value per chain, shape ({batch},); got shape {v.shape}."
    )


def _float_dtype(x: jax.Array) -> Any:
    # Schedules are computed in at least float32 even for low-precision positions.
    return jnp.promote_types(x.dtype, jnp.float32)


# ---------------------------------------------------------------------------------------------
# ULA
# ---------------------------------------------------------------------------------------------


def _ula_init(position: jax.Array, energy_fn: EnergyFn | None = None) -> ULAState:
    """ULA state for a batch of chains, shape (B, ...). ``energy_fn`` is unused (uniform API)."""
    del energy_fn
    _check_position(position)
    return ULAState(jnp.asarray(position))


def _ula_step(
    key: jax.Array,
    state: ULAState,
    energy_fn: EnergyFn,
    step_size: ArrayLike,
    temperature: ArrayLike,
) -> tuple[ULAState, ULAInfo]:
    """One unadjusted Langevin step: x - (eps^2/2) dE/dx + eps sqrt(T) z (one energy evaluation)."""
    x = state.position
    e, g = energy_and_grad(energy_fn, x)
    eps = per_chain(step_size, x, "step_size")
    t = per_chain(temperature, x, "temperature")
    z = jax.random.normal(key, x.shape, _float_dtype(x))
    new = x - 0.5 * eps**2 * g + eps * jnp.sqrt(t) * z
    return ULAState(new.astype(x.dtype)), ULAInfo(e)


ula = Kernel(_ula_init, _ula_step)
"""Unadjusted Langevin (the paper's eq. 8). Biased at finite step size; T only scales the noise."""


def decoupled(step: ArrayLike, noise: ArrayLike) -> tuple[jax.Array, jax.Array]:
    """(eps, T) of the kernels' convention for Langevin written as the maximum-likelihood literature
    writes it, x' = x - step * dE/dx + noise * z: eps = sqrt(2 step), T = noise^2 / (2 step).
    Works on scalars and schedules (arrays) alike."""
    step, noise = jnp.asarray(step, jnp.float32), jnp.asarray(noise, jnp.float32)
    return jnp.sqrt(2.0 * step), noise**2 / (2.0 * step)


@functools.cache
def langevin_kernel(grad_clip: float | None = None, bounds: tuple[float, float] | None = None) -> Kernel:
    """ULA with the two safeguards of maximum-likelihood EBM recipes (IGEBM, JEM):

    x' = clip_bounds(x - (eps^2 / 2) clip(dE/dx, -grad_clip, grad_clip) + eps sqrt(T) z).

    ``grad_clip``: each gradient entry clipped to [-grad_clip, grad_clip] (None: not clipped);
    ``bounds``: (low, high) the positions are clamped to after every step, the data's range (None:
    not clamped). With neither it is exactly :data:`ula`. Use :func:`decoupled` to set (step, noise).
    The same arguments give the same Kernel object, so compiled chains are reused.
    """
    if grad_clip is not None and not grad_clip > 0:
        raise ConfigError(f"langevin_kernel: grad_clip must be > 0 or None, got {grad_clip!r}.")
    if bounds is not None and not (len(bounds) == 2 and bounds[0] < bounds[1]):
        raise ConfigError(f"langevin_kernel: bounds must be (low, high) with low < high, got {bounds!r}.")
    if grad_clip is None and bounds is None:
        return ula

    def step(key, state, energy_fn, step_size, temperature):
        x = state.position
        e, g = energy_and_grad(energy_fn, x)
        if grad_clip is not None:
            g = jnp.clip(g, -grad_clip, grad_clip)
        eps = per_chain(step_size, x, "step_size")
        t = per_chain(temperature, x, "temperature")
        z = jax.random.normal(key, x.shape, _float_dtype(x))
        new = x - 0.5 * eps**2 * g + eps * jnp.sqrt(t) * z
        if bounds is not None:
            new = jnp.clip(new, bounds[0], bounds[1])
        return ULAState(new.astype(x.dtype)), ULAInfo(e)

    return Kernel(_ula_init, step)


# ---------------------------------------------------------------------------------------------
# MALA and HMC: batched proposals, one Metropolis test per chain
# ---------------------------------------------------------------------------------------------


def _mcmc_init(position: jax.Array, energy_fn: EnergyFn) -> MCMCState:
    """MALA/HMC state; energy and gradient come from one batched evaluation."""
    position = jnp.asarray(position)
    e, g = energy_and_grad(energy_fn, position)
    return MCMCState(position, e, g)


def _rows(a: jax.Array) -> jax.Array:
    """Per-example sums: (B, ...) -> (B,)."""
    return jnp.sum(a.reshape(a.shape[0], -1), axis=1)


def _accept(key: jax.Array, log_ratio: jax.Array, state: MCMCState, position: jax.Array, energy: jax.Array,
            grad: jax.Array) -> tuple[MCMCState, jax.Array, jax.Array]:
    """Per-chain Metropolis test: (new state, acceptance probability (B,), accepted (B,)). A rejected
    chain keeps its position, energy and gradient bit for bit; a NaN ratio is a rejection."""
    log_ratio = jnp.where(jnp.isnan(log_ratio), -jnp.inf, log_ratio)
    prob = jnp.exp(jnp.minimum(log_ratio, 0.0))
    accepted = jax.random.uniform(key, prob.shape, prob.dtype) < prob
    x = state.position
    acc_b = accepted.reshape((-1,) + (1,) * (x.ndim - 1))
    new = MCMCState(jnp.where(acc_b, position.astype(x.dtype), x),
                    jnp.where(accepted, energy.astype(state.energy.dtype), state.energy),
                    jnp.where(acc_b, grad.astype(state.grad.dtype), state.grad))
    return new, prob, accepted


def _mala_step(
    key: jax.Array,
    state: MCMCState,
    energy_fn: EnergyFn,
    step_size: ArrayLike,
    temperature: ArrayLike,
) -> tuple[MCMCState, MALAInfo]:
    """One MALA step per chain: the ULA proposal plus a per-chain Metropolis-Hastings test on p_T.

    Proposal x' = x - (eps^2/2) dE/dx + eps sqrt(T) z; the test accepts with probability
    min(1, p_T(x') q(x | x') / (p_T(x) q(x' | x))), q the proposal's Gaussian of variance eps^2 T.
    The energy is evaluated once per step, on the whole batch.
    """
    x = state.position
    batch, dtype = x.shape[0], _float_dtype(x)
    eps = chain_vector(step_size, batch, "step_size", dtype)
    t = chain_vector(temperature, batch, "temperature", dtype)
    eps_b, t_b = per_chain(eps, x, "step_size"), per_chain(t, x, "temperature")
    k_prop, k_acc = jax.random.split(key)
    z = jax.random.normal(k_prop, x.shape, dtype)
    xf, g = x.astype(dtype), state.grad.astype(dtype)
    proposal = xf - 0.5 * eps_b**2 * g + eps_b * jnp.sqrt(t_b) * z
    e_new, g_new = energy_and_grad(energy_fn, proposal.astype(x.dtype))
    e_new, g_new = e_new.astype(dtype), g_new.astype(dtype)

    def log_q(to, frm, grad_frm):  # log q(to | frm) up to a constant shared by both directions
        return -_rows((to - frm + 0.5 * eps_b**2 * grad_frm) ** 2) / (2.0 * eps**2 * t)

    log_ratio = (state.energy.astype(dtype) - e_new) / t + log_q(xf, proposal, g_new) - log_q(proposal, xf, g)
    new_state, prob, accepted = _accept(k_acc, log_ratio, state, proposal, e_new, g_new)
    return new_state, MALAInfo(state.energy, prob, accepted)


mala = Kernel(_mcmc_init, _mala_step)
"""Metropolis-adjusted Langevin: the ULA proposal, per-chain accept/reject, exact for p_T."""


def _flat_inverse_mass(inverse_mass_matrix: jax.Array | None, x: jax.Array) -> jax.Array:
    """The inverse mass over a flat example: (D,) diagonal or (D, D) dense."""
    d = 1
    for n in x.shape[1:]:
        d *= n
    if inverse_mass_matrix is None:
        return jnp.ones((d,), _float_dtype(x))
    m = jnp.asarray(inverse_mass_matrix, _float_dtype(x))
    if m.ndim == 0:
        return jnp.full((d,), m)
    if m.shape == x.shape[1:] or m.shape == (d,):
        return m.reshape(d)
    if m.shape == (d, d):
        return m
    raise ConfigError(
        f"hmc: inverse_mass_matrix must be a scalar, shape {x.shape[1:]} or ({d},) (diagonal), or "
        f"({d}, {d}) (dense) for examples of shape {x.shape[1:]}; got shape {m.shape}."
    )


def _make_hmc(
    num_integration_steps: int,
    inverse_mass_matrix: jax.Array | None,
    divergence_threshold: float,
) -> Kernel:
    def step(
        key: jax.Array,
        state: MCMCState,
        energy_fn: EnergyFn,
        step_size: ArrayLike,
        temperature: ArrayLike,
    ) -> tuple[MCMCState, HMCInfo]:
        """One HMC move per chain: leapfrog step eps*sqrt(T) on p_T, then a Metropolis test.

        Momenta p ~ N(0, M) with M the inverse of ``inverse_mass_matrix``; the Hamiltonian is
        E(x)/T + p^T M^-1 p / 2. Every leapfrog step evaluates the energy once on the whole batch.
        """
        x = state.position
        batch, dtype = x.shape[0], _float_dtype(x)
        eps = chain_vector(step_size, batch, "step_size", dtype)
        t = chain_vector(temperature, batch, "temperature", dtype)
        delta = (eps * jnp.sqrt(t)).reshape((-1,) + (1,) * (x.ndim - 1))
        t_b = t.reshape(delta.shape)
        inv_mass = _flat_inverse_mass(inverse_mass_matrix, x)
        flat = lambda a: a.reshape(batch, -1)  # noqa: E731
        if inv_mass.ndim == 1:
            apply_inv = lambda p: (flat(p) * inv_mass).reshape(x.shape)  # noqa: E731
            sample_p = lambda z: (flat(z) / jnp.sqrt(inv_mass)).reshape(x.shape)  # noqa: E731
        else:
            chol_mass = jnp.linalg.cholesky(jnp.linalg.inv(inv_mass))
            apply_inv = lambda p: (flat(p) @ inv_mass.T).reshape(x.shape)  # noqa: E731
            sample_p = lambda z: (flat(z) @ chol_mass.T).reshape(x.shape)  # noqa: E731

        def kinetic(p):
            return 0.5 * _rows(p * apply_inv(p))

        k_prop, k_acc = jax.random.split(key)
        p0 = sample_p(jax.random.normal(k_prop, x.shape, dtype))
        xf, g0 = x.astype(dtype), state.grad.astype(dtype)
        p = p0 - 0.5 * delta * g0 / t_b

        def leap(i, carry):
            y, p, _, _ = carry
            y = y + delta * apply_inv(p)
            e, g = energy_and_grad(energy_fn, y.astype(x.dtype))
            e, g = e.astype(dtype), g.astype(dtype)
            last = i == num_integration_steps - 1
            p = p - jnp.where(last, 0.5, 1.0) * delta * g / t_b
            return y, p, e, g

        y, p, e_new, g_new = jax.lax.fori_loop(
            0, num_integration_steps, leap, (xf, p, jnp.zeros((batch,), dtype), jnp.zeros_like(xf)))
        energy_error = (e_new - state.energy.astype(dtype)) / t + kinetic(p) - kinetic(p0)
        divergent = ~(energy_error <= divergence_threshold)
        new_state, prob, accepted = _accept(k_acc, -energy_error, state, y, e_new, g_new)
        return new_state, HMCInfo(state.energy, prob, accepted, divergent)

    return Kernel(_mcmc_init, step)


@functools.cache
def _hmc_cached(num_integration_steps: int, divergence_threshold: float) -> Kernel:
    # Same arguments -> the same Kernel object, so jitted drivers keyed on the kernel reuse their
    # compiled code instead of recompiling for an equal kernel built twice.
    return _make_hmc(num_integration_steps, None, divergence_threshold)


def hmc(
    num_integration_steps: int,
    *,
    inverse_mass_matrix: jax.Array | None = None,
    divergence_threshold: float = 1000.0,
) -> Kernel:
    """HMC kernel with a static number of leapfrog steps and one Metropolis test per chain.

    The leapfrog step is ``step_size * sqrt(T)`` on p_T (see the module docstring), so with
    ``num_integration_steps=1`` and unit mass this is MALA. ``inverse_mass_matrix``: None (unit),
    a scalar, a diagonal of shape x.shape[1:] or (D,), or a dense (D, D) matrix, D = prod(x.shape[1:]).
    Build the kernel once and reuse it: drivers compile once per kernel object.
    """
    if isinstance(num_integration_steps, bool) or not isinstance(num_integration_steps, int):
        raise ConfigError(
            f"hmc: num_integration_steps must be a Python int (it is static), "
            f"got {num_integration_steps!r}."
        )
    if num_integration_steps < 1:
        raise ConfigError(f"hmc: num_integration_steps must be >= 1, got {num_integration_steps}.")
    if inverse_mass_matrix is None:
        return _hmc_cached(num_integration_steps, float(divergence_threshold))
    return _make_hmc(num_integration_steps, inverse_mass_matrix, float(divergence_threshold))
