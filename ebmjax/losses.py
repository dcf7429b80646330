"""Training objectives as pure functions of an energy function and arrays.

An energy function maps a batch ``x`` of shape (B, ...) to energies of shape (B,), with
``p(x) ∝ exp(-E(x))``. Everything here is differentiable with respect to parameters closed over by
``energy_fn``: the MDSM loss contains ``dE/dx`` and is differentiated again (double back-propagation).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from ebmjax.errors import ConfigError

EnergyFn = Callable[[jax.Array], jax.Array]

SPACINGS = ("linear", "geometric")


def noise_levels(batch_size: int, low: float, high: float, spacing: str = "linear") -> jax.Array:
    """Noise standard deviations fixed per batch position, shape (batch_size,), float32.

    The original MDSM code does not sample sigma: position i of every batch always gets sigma_i,
    and the shuffled data supplies the randomness. "linear" spaces them evenly in [low, high]
    (CIFAR-10: 0.05..1.2); "geometric" evenly in log-space (MNIST / Fashion-MNIST: 0.1..3.0).
    """
    if batch_size < 1:
        raise ConfigError(f"noise_levels: batch_size must be >= 1, got {batch_size}.")
    if not 0 < low <= high:
        raise ConfigError(f"noise_levels: need 0 < low <= high, got low={low}, high={high}.")
    if spacing == "linear":
        sig = np.linspace(low, high, batch_size)
    elif spacing == "geometric":
        sig = np.geomspace(low, high, batch_size)
    else:
        raise ConfigError(f"noise_levels: spacing must be one of {SPACINGS}, got {spacing!r}.")
    return jnp.asarray(sig, dtype=jnp.float32)


def score(energy_fn: EnergyFn, x: jax.Array) -> jax.Array:
    """dE/dx for a batch, same shape as x (the model score is its negative).

    Summing over the batch is exact because example i's energy depends only on x[i].
    """
    return jax.grad(lambda y: jnp.sum(energy_fn(y)))(x)


def _per_example_sum(a: jax.Array) -> jax.Array:
    return jnp.sum(a.reshape(a.shape[0], -1), axis=1)


def mdsm_loss(
    energy_fn: EnergyFn,
    x: jax.Array,
    key: jax.Array,
    sigmas: jax.Array,
    sigma0: float = 0.1,
) -> jax.Array:
    """Multiscale denoising score matching (eq. 7 of the MDSM paper, l(sigma) = 1/sigma^2).

    Args:
      energy_fn: (B, ...) -> (B,).
      x: clean data, (B, ...).
      key: PRNG key for the noise z.
      sigmas: (B,) noise level of each example; x~ = x + sigma_i z.
      sigma0: width of the fixed kernel whose smoothed density the model learns.

    Returns:
      mean_i |x_i - x~_i + sigma0^2 dE/dx(x~_i)|^2 / sigma_i^2, a scalar. This equals the original
      code's logged value (sigma0^4 times its optimised loss); Adam is invariant to that constant
      factor up to its epsilon.
    """
    sigmas = jnp.asarray(sigmas, dtype=x.dtype)
    if sigmas.shape != (x.shape[0],):
        raise ConfigError(
            f"mdsm_loss: sigmas must have shape (batch,) = ({x.shape[0]},), got {sigmas.shape}; "
            "use ebmjax.losses.noise_levels(batch, low, high)."
        )
    z = jax.random.normal(key, x.shape, x.dtype)
    sig = sigmas.reshape((-1,) + (1,) * (x.ndim - 1))
    x_noisy = x + sig * z
    # jax.grad builds dE/dx~ as a differentiable function of the parameters, so the outer
    # gradient of this loss is the double back-propagation of the paper.
    residual = x - x_noisy + sigma0**2 * score(energy_fn, x_noisy)
    return jnp.mean(_per_example_sum(residual**2) / sigmas**2)


def dsm_loss(energy_fn: EnergyFn, x: jax.Array, key: jax.Array, sigma: float) -> jax.Array:
    """Single-noise denoising score matching (the baseline of the paper's Appendix B).

    Noise and kernel share one width: mean_i |x_i - x~_i + sigma^2 dE/dx(x~_i)|^2 / sigma^2 with
    x~ = x + sigma z. Its minimiser is the score of the data smoothed by N(0, sigma^2 I).
    """
    sigmas = jnp.full((x.shape[0],), sigma, dtype=x.dtype)
    return mdsm_loss(energy_fn, x, key, sigmas, sigma0=sigma)


def ml_loss(energy_fn: EnergyFn, x_data: jax.Array, x_model: jax.Array, *, energy_l2: float = 0.0,
            model_energy_fn: EnergyFn | None = None, grad_l2: float = 0.0) -> jax.Array:
    """Maximum-likelihood (contrastive divergence) loss of an EBM p(x) ∝ exp(-E(x)), a scalar:

        mean E(x_data) - mean E(x_model) + energy_l2 * (mean E(x_data)^2 + mean E(x_model)^2)

    (the squares are averaged per example, the IGEBM / improved-CD regulariser that keeps energies
    near 0), plus, with ``grad_l2``,

        grad_l2 * (mean |dE/dx(x_data)|^2 + mean |dE/dx(x_model)|^2)

    (the squared norm of each example's input gradient, averaged over examples): a penalty on the
    landscape's steepness where the data and the chains are, which keeps a Langevin step of fixed
    size from overshooting as training sharpens the energy (its parameter gradient is a double
    back-propagation, as in MDSM). ``x_model`` is held constant: no gradient flows through it,
    even when the caller computed it from the parameters (by Langevin chains on ``energy_fn``).
    With x_model exact samples of the model, the parameter gradient of the first two terms is a
    Monte Carlo estimate of the gradient of the mean negative log-likelihood of x_data,
    E_data[dE] - E_model[dE].
    ``model_energy_fn`` (default ``energy_fn``) scores the chains' ends when they need another view
    of the same energy, e.g. a class-conditional E(x, y) at each chain's own label.
    """
    return ml_loss_terms(energy_fn, x_data, x_model, energy_l2=energy_l2, model_energy_fn=model_energy_fn,
                         grad_l2=grad_l2)[0]


def ml_loss_terms(energy_fn: EnergyFn, x_data: jax.Array, x_model: jax.Array, *, energy_l2: float = 0.0,
                  model_energy_fn: EnergyFn | None = None,
                  grad_l2: float = 0.0) -> tuple[jax.Array, dict[str, jax.Array]]:
    """:func:`ml_loss` and the terms it computed on the way, so that a caller logging them does
    not evaluate the energy again: ``(loss, {"energy_data": E(x_data) (B,), "energy_model":
    E(x_model) (B',)})``, plus ``"grad_model"``, dE/dx at x_model, when ``grad_l2`` is on."""
    if x_data.shape[1:] != x_model.shape[1:]:
        raise ConfigError(f"ml_loss: data and model samples must have the same example shape, got "
                          f"{x_data.shape[1:]} and {x_model.shape[1:]}.")
    model_energy_fn = energy_fn if model_energy_fn is None else model_energy_fn
    x_model = jax.lax.stop_gradient(x_model)
    if grad_l2:
        e_data, g_data = _energy_and_input_grad(energy_fn, x_data)
        e_model, g_model = _energy_and_input_grad(model_energy_fn, x_model)
    else:
        e_data, e_model = energy_fn(x_data), model_energy_fn(x_model)
    loss = jnp.mean(e_data) - jnp.mean(e_model)
    if energy_l2:
        loss = loss + energy_l2 * (jnp.mean(e_data**2) + jnp.mean(e_model**2))
    terms = {"energy_data": e_data, "energy_model": e_model}
    if grad_l2:
        loss = loss + grad_l2 * (_mean_sq_norm(g_data) + _mean_sq_norm(g_model))
        terms["grad_model"] = g_model
    return loss, terms


def _energy_and_input_grad(energy_fn: EnergyFn, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(E(x) per example, dE/dx) in one forward and one backward pass, differentiable in the
    energy's parameters."""
    e, pullback = jax.vjp(energy_fn, x)
    return e, pullback(jnp.ones_like(e))[0]


def _mean_sq_norm(g: jax.Array) -> jax.Array:
    """The mean over examples (axis 0) of each example's squared L2 norm."""
    return jnp.mean(jnp.sum(jnp.reshape(g, (g.shape[0], -1)) ** 2, axis=1))
