"""The contrastive step that every maximum-likelihood method shares (``ml``, ``coop``, ``multigrid``,
``cfebm``): noised data against chain ends, :func:`ebmjax.losses.ml_loss`, the diagnostics logged
with it, and the bound on the energies that marks an update as diverged.

A method runs its own chains (from noise, a buffer, a generator, a coarser grid); what it does with
their ends is the same, and is written once here.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from ebmjax import losses, samplers

EnergyFn = Callable[[jax.Array], jax.Array]


def noised(x: jax.Array, key: jax.Array, std: float) -> jax.Array:
    """The data plus N(0, std^2) noise (the ``*.data_noise`` setting), in the data's dtype."""
    return x + std * jax.random.normal(key, x.shape, x.dtype)


def step(energy: EnergyFn, energy_const: EnergyFn, x_data: jax.Array, x_model: jax.Array, *,
         energy_l2: float = 0.0, step_size: float | None = None, grad_clip: float | None = None,
         energy_model: EnergyFn | None = None, grad_l2: float = 0.0) -> tuple[jax.Array, dict[str, Any]]:
    """``ml_loss(energy, x_data, x_model)`` and its diagnostics.

    Args:
        energy: the energy under training (its parameters receive the gradient).
        energy_const: the same energy with its parameters held constant, which ran the chains.
        x_data: the (noised) data batch.
        x_model: the chains' ends (no gradient flows through them).
        energy_l2: the weight of the penalty on both mean energies.
        grad_l2: the weight of the penalty on the input gradients' squared norms
            (:func:`ebmjax.losses.ml_loss`).
        step_size: the chains' gradient step; given, the metrics include ``grad_step_rms``, how far
            the chains' last gradient step moves a pixel (RMS of ``step_size * clip(dE/dx)``).
        grad_clip: the chains' gradient clip, for ``grad_step_rms``.
        energy_model: the energy under training as the chains' ends are scored (default ``energy``),
            e.g. a class-conditional energy at each chain's own label.

    Returns:
        (loss, metrics): ``energy_data``, ``energy_model``, ``energy_gap`` (model minus data) and,
        with ``step_size``, ``grad_step_rms``.
    """
    energy_model = energy if energy_model is None else energy_model
    value, terms = losses.ml_loss_terms(energy, x_data, x_model, energy_l2=energy_l2, model_energy_fn=energy_model,
                                        grad_l2=grad_l2)
    e_data, e_model = jnp.mean(terms["energy_data"]), jnp.mean(terms["energy_model"])
    metrics = {"energy_data": e_data, "energy_model": e_model, "energy_gap": e_model - e_data}
    if step_size is not None:
        if "grad_model" in terms:  # the penalty's dE/dx at the chains' ends: the same numbers
            g = jax.lax.stop_gradient(terms["grad_model"])
        else:
            _, g = samplers.energy_and_grad(energy_const, x_model)
        if grad_clip is not None:
            g = jnp.clip(g, -grad_clip, grad_clip)
        metrics["grad_step_rms"] = step_size * jnp.sqrt(jnp.mean(g**2))
    return value, metrics


def energy_bounds(group: Any, prefix: str,
                  suffixes: tuple[str, ...] = ("",)) -> dict[str, tuple[float, float, str]]:
    """The ``Method.bounds`` entries of a method's chain settings ``group`` (the config group named
    ``prefix``): an update is diverged when a mean energy of the data or of the chains' ends passes
    ``group.energy_bound`` in magnitude, or, when ``group.gap_bound`` is set, when the chains' mean
    energy exceeds the data's by more than it (``energy_gap``: the chains have lost the data; a
    negative gap, chains below the data, is what maximum likelihood corrects by itself and is not
    bounded); one set per suffix (``"_7"``, ``"_14"``: one per grid)."""
    bound = float(group.energy_bound)
    bounds = {f"{what}{suffix}": (-bound, bound, f"{prefix}.energy_bound")
              for suffix in suffixes for what in ("energy_data", "energy_model")}
    if group.get("gap_bound") is not None:
        bounds.update({f"energy_gap{suffix}": (-float("inf"), float(group.gap_bound), f"{prefix}.gap_bound")
                       for suffix in suffixes})
    return bounds
