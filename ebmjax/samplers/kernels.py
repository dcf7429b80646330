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

``energy_fn`` must treat batch rows independently (no batch statistics): MALA and HMC evaluate
proposals one example at a time, ``energy_fn(xi[None])`` under vmap, as BlackJAX kernels want.

Nothing here is jitted and nothing uses a collective, so the kernels run unchanged inside a user's
``jit``, ``vmap`` or on a batch sharded over devices.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import blackjax.mcmc.hmc as bj_hmc
import blackjax.mcmc.mala as bj_mala
import jax
import jax.numpy as jnp

from ebmjax.errors import ConfigError

EnergyFn = Callable[[jax.Array], jax.Array]
ArrayLike = Any

__all__ = [
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
    """A scalar or (B,) value as a (B,) array, for vmapping over chains."""
    v = jnp.asarray(value, dtype=dtype)
    if v.ndim == 0:
        return jnp.broadcast_to(v, (batch,))
    if v.shape == (batch,):
        return v
    raise ConfigError(
        f"{name} must be a scalar or hold one value per chain, shape ({batch},); got shape {v.shape}."
    )


def _example_logdensity(energy_fn: EnergyFn, temperature: jax.Array) -> Callable:
    """log p_T of ONE example (shape x.shape[1:]), for BlackJAX kernels vmapped over the batch."""

    def logdensity(xi: jax.Array) -> jax.Array:
        e = energy_fn(xi[None])
        _check_energy(e, 1)
        return -e[0] / temperature

    return logdensity


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


# ---------------------------------------------------------------------------------------------
# MALA and HMC: BlackJAX kernels vmapped over chains
# ---------------------------------------------------------------------------------------------


def _mcmc_init(position: jax.Array, energy_fn: EnergyFn) -> MCMCState:
    """MALA/HMC state; energy and gradient come from one batched evaluation."""
    position = jnp.asarray(position)
    e, g = energy_and_grad(energy_fn, position)
    return MCMCState(position, e, g)


def _accept_cached(
    state: MCMCState,
    position: jax.Array,
    logdensity: jax.Array,
    logdensity_grad: jax.Array,
    is_accepted: jax.Array,
    t: jax.Array,
) -> MCMCState:
    """Back from log p_T to (E, dE/dx); a rejected chain keeps its cached values bit for bit."""
    x = state.position
    t_b = t.reshape((-1,) + (1,) * (x.ndim - 1))
    acc_b = is_accepted.reshape(t_b.shape)
    energy = jnp.where(is_accepted, -logdensity * t, state.energy).astype(state.energy.dtype)
    grad = jnp.where(acc_b, -logdensity_grad * t_b, state.grad).astype(state.grad.dtype)
    return MCMCState(position.astype(x.dtype), energy, grad)


def _mala_step(
    key: jax.Array,
    state: MCMCState,
    energy_fn: EnergyFn,
    step_size: ArrayLike,
    temperature: ArrayLike,
) -> tuple[MCMCState, MALAInfo]:
    """One MALA step per chain: the ULA proposal plus a per-chain Metropolis-Hastings test on p_T."""
    x = state.position
    batch, dtype = x.shape[0], _float_dtype(x)
    eps = chain_vector(step_size, batch, "step_size", dtype)
    t = chain_vector(temperature, batch, "temperature", dtype)
    # BlackJAX's MALA moves x + h grad log p + sqrt(2h) z; with log p = -E/T, h = eps^2 T / 2
    # reproduces the ULA proposal above exactly.
    h = 0.5 * eps**2 * t
    kernel = bj_mala.build_kernel()

    def one(k, xi, ei, gi, ti, hi):
        bj_state = bj_mala.MALAState(xi, -ei / ti, -gi / ti)
        new, info = kernel(k, bj_state, _example_logdensity(energy_fn, ti), hi)
        return new.position, new.logdensity, new.logdensity_grad, info.acceptance_rate, info.is_accepted

    # The Metropolis test runs in at least float32 whatever the storage dtype of the position.
    pos, ld, ldg, acc, is_acc = jax.vmap(one)(
        jax.random.split(key, batch), x.astype(dtype), state.energy.astype(dtype),
        state.grad.astype(dtype), t, h,
    )
    new_state = _accept_cached(state, pos, ld, ldg, is_acc, t)
    return new_state, MALAInfo(state.energy, acc, is_acc)


mala = Kernel(_mcmc_init, _mala_step)
"""Metropolis-adjusted Langevin (BlackJAX's ``mala``), per-chain accept/reject, exact for p_T."""


def _flat_inverse_mass(inverse_mass_matrix: jax.Array | None, x: jax.Array) -> jax.Array:
    """The inverse mass as BlackJAX wants it: (D,) diagonal or (D, D) dense over a flat example."""
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
    bj_kernel = bj_hmc.build_kernel(divergence_threshold=divergence_threshold)

    def step(
        key: jax.Array,
        state: MCMCState,
        energy_fn: EnergyFn,
        step_size: ArrayLike,
        temperature: ArrayLike,
    ) -> tuple[MCMCState, HMCInfo]:
        """One HMC move per chain: leapfrog step eps*sqrt(T) on p_T, then a Metropolis test."""
        x = state.position
        batch, dtype = x.shape[0], _float_dtype(x)
        eps = chain_vector(step_size, batch, "step_size", dtype)
        t = chain_vector(temperature, batch, "temperature", dtype)
        delta = eps * jnp.sqrt(t)
        inv_mass = _flat_inverse_mass(inverse_mass_matrix, x)

        def one(k, xi, ei, gi, ti, di):
            bj_state = bj_hmc.HMCState(xi, -ei / ti, -gi / ti)
            new, info = bj_kernel(
                k, bj_state, _example_logdensity(energy_fn, ti), di, inv_mass, num_integration_steps
            )
            return (
                new.position,
                new.logdensity,
                new.logdensity_grad,
                info.acceptance_rate,
                info.is_accepted,
                info.is_divergent,
            )

        pos, ld, ldg, acc, is_acc, div = jax.vmap(one)(
            jax.random.split(key, batch), x.astype(dtype), state.energy.astype(dtype),
            state.grad.astype(dtype), t, delta,
        )
        new_state = _accept_cached(state, pos, ld, ldg, is_acc, t)
        return new_state, HMCInfo(state.energy, acc, is_acc, div)

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
    """HMC kernel (BlackJAX's ``hmc``) with a static number of leapfrog steps.

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
