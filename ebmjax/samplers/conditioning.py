"""Conditioning as combinators: tempering, products of experts and a classifier's energies over
energies, clamping over kernels.

``tempered`` and ``sum_energies`` map energies to energies; ``class_energy`` and ``marginal_energy``
map a classifier's logits f(x) (B, K) to the energies it defines (JEM; conditional EBMs). Their
results are energies like any other, so they nest ("a bold 3": ``sum_energies(class_energy(f, 3),
bold_energy)``) and every kernel and restoration function takes them. Clamping (inpainting) needs
fresh noise at every step and must keep clamped entries fixed, so it wraps a *kernel*:
``clamped(kernel)`` is the one way ebmjax clamps, and ``annealed_langevin(mask=...)`` uses it.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp

from ebmjax.errors import ConfigError
from ebmjax.samplers.kernels import ArrayLike, EnergyFn, Kernel, as_partial, chain_vector

__all__ = ["tempered", "sum_energies", "class_energy", "marginal_energy", "row_labels", "asked_labels", "ClampedState",
           "clamped"]

LogitsFn = Callable[[jax.Array], jax.Array]  # x (B, ...) -> logits (B, K)


def tempered(energy_fn: EnergyFn, temperature: ArrayLike) -> EnergyFn:
    """E(x) / T: the energy of p(x)^(1/T). T is a scalar or one value per example, shape (B,).

    Like every combinator here it returns a ``jax.tree_util.Partial`` (the energy and T are its
    leaves), so it can be passed into a jitted function and new T reuse the compiled code."""
    return jax.tree_util.Partial(_tempered, as_partial(energy_fn), jnp.asarray(temperature))


def _tempered(energy_fn: EnergyFn, t: jax.Array, x: jax.Array) -> jax.Array:
    e = energy_fn(x)
    if t.ndim != 0 and t.shape != e.shape:
        raise ConfigError(
            f"tempered: temperature must be a scalar or have shape {e.shape} (one per example); "
            f"got shape {t.shape}."
        )
    return e / t


def sum_energies(*energy_fns: EnergyFn, weights: Sequence[ArrayLike] | None = None) -> EnergyFn:
    """sum_i w_i E_i(x): the product of experts prod_i p_i(x)^(w_i). Weights default to 1.

    The result is a ``jax.tree_util.Partial`` whose leaves are the energies' (e.g. their parameters)
    and the weights, so compiled chains are reused when parameters or weights change."""
    if not energy_fns:
        raise ConfigError("sum_energies needs at least one energy function.")
    if not all(callable(f) for f in energy_fns):
        raise ConfigError(
            "sum_energies takes energy functions as positional arguments and weights= as a keyword."
        )
    if weights is not None and len(weights) != len(energy_fns):
        raise ConfigError(
            f"sum_energies: got {len(energy_fns)} energies but {len(weights)} weights."
        )
    ws = jnp.ones(len(energy_fns)) if weights is None else jnp.stack([jnp.asarray(w, jnp.float32) for w in weights])
    return jax.tree_util.Partial(_weighted_sum, tuple(as_partial(f) for f in energy_fns), ws)


def _weighted_sum(energy_fns: tuple[EnergyFn, ...], weights: jax.Array, x: jax.Array) -> jax.Array:
    total = weights[0] * energy_fns[0](x)
    for i in range(1, len(energy_fns)):
        total = total + weights[i] * energy_fns[i](x)
    return total


ROW = 10  # examples per class in turn for labels -1: a row of the sample grid (ebmjax.visualize.GRID_COLUMNS)


def row_labels(n: int, classes: ArrayLike, per_row: int = ROW) -> jax.Array:
    """Labels (n,) int32 that give each row of a grid ``per_row`` wide one class in turn:
    ``(i // per_row) % classes`` (rows of ten 0s, ten 1s, ...)."""
    return (jnp.arange(n, dtype=jnp.int32) // per_row) % classes


def asked_labels(label: ArrayLike, n: int, classes: ArrayLike) -> jax.Array:
    """Labels (n,) int32 for ``n`` chains asked for class ``label`` (>= 0: every chain that class;
    -1: :func:`row_labels`, every class in turn)."""
    return jnp.where(jnp.asarray(label) >= 0, jnp.asarray(label, jnp.int32), row_labels(n, classes))


def _logits(logits_fn: LogitsFn, x: jax.Array) -> jax.Array:
    f = logits_fn(x)
    if f.ndim != 2 or f.shape[0] != x.shape[0]:
        raise ConfigError(f"a classifier's logits must have shape (B, K) for B = {x.shape[0]} inputs; got {f.shape}. "
                          "(An energy network gives (B,): build it with model.classes = K.)")
    return f.astype(jnp.promote_types(f.dtype, jnp.float32))


def class_energy(logits_fn: LogitsFn, labels: ArrayLike) -> EnergyFn:
    """E(x, y) = -f(x)[y]: the energy of p(x | y) (up to log p(y) and a constant) under a classifier
    with logits f (JEM; IGEBM's conditional models).

    ``labels``: one class for every example (an int or a 0-d array), one per example, shape (B,),
    or -1 for "every class in turn" (:func:`row_labels`: grid rows of ten, one class each). The
    result is a ``jax.tree_util.Partial`` with the labels as a leaf: new labels reuse compiled code.
    """
    y = jnp.asarray(labels, jnp.int32)
    if y.ndim > 1:
        raise ConfigError(f"class_energy: labels must be a class, -1 or one per example (B,); got shape {y.shape}.")
    return jax.tree_util.Partial(_class_energy, as_partial(logits_fn), y)


def _class_energy(logits_fn: LogitsFn, y: jax.Array, x: jax.Array) -> jax.Array:
    f = _logits(logits_fn, x)
    b, k = f.shape
    if y.ndim == 0:
        per = asked_labels(y, b, k)
    elif y.shape != (b,):
        raise ConfigError(f"class_energy: {y.shape[0]} labels for {b} inputs; give one per example or one class.")
    else:
        per = y
    return -jnp.take_along_axis(f, per[:, None], axis=1)[:, 0]


def marginal_energy(logits_fn: LogitsFn) -> EnergyFn:
    """E(x) = -logsumexp_y f(x)[y]: the energy of p(x) = sum_y p(x, y) under a classifier with logits
    f (JEM's generative half); its gradient is the p(y | x)-weighted mean of the class energies'."""
    return jax.tree_util.Partial(_marginal_energy, as_partial(logits_fn))


def _marginal_energy(logits_fn: LogitsFn, x: jax.Array) -> jax.Array:
    return -jax.nn.logsumexp(_logits(logits_fn, x), axis=1)


class ClampedState(NamedTuple):
    """State of a clamped chain.

    inner: the wrapped kernel's state; its position equals ``anchor`` on clamped entries.
    anchor: (B, ...) the values clamped entries keep (the initial position).
    free: bool, broadcastable to (B, ...): True where the entry is sampled, False where clamped.
    clamp_noise: scalar, std of the noise on clamped entries at T = 1 (sigma0 in the paper).
    """

    inner: Any
    anchor: jax.Array
    free: jax.Array
    clamp_noise: jax.Array

    @property
    def position(self) -> jax.Array:
        return self.inner.position


def _free_mask(mask: ArrayLike, x: jax.Array) -> jax.Array:
    m = jnp.asarray(mask)
    try:
        shape = jnp.broadcast_shapes(m.shape, x.shape)
    except ValueError:
        shape = None
    if shape != x.shape:
        raise ConfigError(
            f"mask of shape {m.shape} does not broadcast against positions of shape {x.shape}; "
            "give it the shape of x, of one example, or with size-1 axes (e.g. (1, H, W, 1))."
        )
    # Entries >= 0.5 are free, so a {0, 1} float mask and a bool mask mean the same.
    return m >= 0.5


@functools.cache
def clamped(kernel: Kernel) -> Kernel:
    """Wrap ``kernel`` so that entries with mask 0 stay exactly at their initial value (inpainting).

    ``init(position, energy_fn, mask, clamp_noise=0.1)``: mask broadcasts against position
    (B, ...), 1 = free (sampled), 0 = clamped to ``position`` (bool, or float with >= 0.5 free).
    Mask, anchor and clamp_noise live in the state, so new images or masks of the same shapes
    reuse compiled code; ``clamped(k)`` returns the same kernel object for the same ``k``.

    Convention (MDSM paper, inpainting): at every step, with that step's temperature T, the energy
    and its gradient are evaluated at

        x_eval = where(free, x, anchor + clamp_noise * T^(1/4) * z),   z ~ N(0, I) fresh each step,

    and only free entries move. Why: the paper notes that noise appropriate for the sampling
    temperature must be added to clamped inputs. At temperature T the free pixels carry noise of
    std about sqrt(T) * sigma0, and a net trained on noisy images (sigma0 = 0.1) sees an input it
    never met if half of it is perfectly clean. The T^(1/4) scaling (std sigma0 at T = 1, none at
    T = 0, the last step) is the reference code's choice, kept exactly; ``clamp_noise`` exposes
    sigma0.

    Cost: the energy changes every step (fresh noise), so the wrapped kernel's cached energy is
    recomputed each step: free for ULA (it caches nothing), one extra evaluation per step for
    MALA/HMC (needed for a valid Metropolis test against this step's energy). Each chain is
    stepped as a batch of one under vmap, so ``energy_fn`` must treat batch rows independently.
    """

    def init(
        position: jax.Array,
        energy_fn: EnergyFn,
        mask: ArrayLike,
        clamp_noise: ArrayLike = 0.1,
    ) -> ClampedState:
        position = jnp.asarray(position)
        if position.ndim < 1:
            raise ConfigError(f"position must have shape (B, ...); got shape {position.shape}.")
        free = _free_mask(mask, position)
        noise = jnp.asarray(clamp_noise, jnp.promote_types(position.dtype, jnp.float32))
        if noise.ndim != 0:
            raise ConfigError(f"clamp_noise must be a scalar, got shape {noise.shape}.")
        # The noise-free clamped energy only seeds the inner state; each step re-evaluates it.
        inner = kernel.init(position, _clamped_energy(energy_fn, free, position))
        return ClampedState(inner, position, free, noise)

    def step(
        key: jax.Array,
        state: ClampedState,
        energy_fn: EnergyFn,
        step_size: ArrayLike,
        temperature: ArrayLike,
    ) -> tuple[ClampedState, Any]:
        """One step of the wrapped kernel on the free entries, clamped ones noised for this T."""
        x = state.position
        batch, dtype = x.shape[0], jnp.promote_types(x.dtype, jnp.float32)
        t = chain_vector(temperature, batch, "temperature", dtype)
        eps = chain_vector(step_size, batch, "step_size", dtype)
        free = jnp.broadcast_to(state.free, x.shape)

        # Each chain is stepped as a batch of one, under vmap: the clamped energy closes over
        # that chain's own noisy anchor, so it stays a function of one example and MALA/HMC can
        # evaluate it per example. (vmap folds the chains back into one batched network call.)
        def one_chain(k, inner, anchor, free_i, t_i, eps_i):
            key_noise, key_step = jax.random.split(k)
            z = jax.random.normal(key_noise, anchor.shape, dtype)
            noisy_anchor = (anchor + state.clamp_noise * t_i**0.25 * z).astype(x.dtype)
            energy_k = _clamped_energy(energy_fn, free_i, noisy_anchor)
            inner = kernel.init(inner.position[None], energy_k)
            inner, info = kernel.step(key_step, inner, energy_k, eps_i, t_i)
            # Clamped coordinates do not enter energy_k (zero gradient) but the kernel's noise
            # moves them; putting them back keeps them exactly at the anchor.
            inner = inner._replace(position=jnp.where(free_i, inner.position, anchor))
            return jax.tree.map(lambda a: a[0], (inner, info))

        inner, info = jax.vmap(one_chain)(
            jax.random.split(key, batch), state.inner, state.anchor, free, t, eps
        )
        return state._replace(inner=inner), info

    return Kernel(init, step)


def _clamped_energy(energy_fn: EnergyFn, free: jax.Array, values: jax.Array) -> EnergyFn:
    def energy(x: jax.Array) -> jax.Array:
        return energy_fn(jnp.where(free, x, values))

    return energy
