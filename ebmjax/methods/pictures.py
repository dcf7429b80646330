"""Pictures of a method's chains stage by stage (multigrid's ``grids.png``, CF-EBM's ``stages.png``):
run a sampler's stages one by one on a few chains and show where each stage leaves them."""

from __future__ import annotations

import functools
import pathlib
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ebmjax import ops, samplers, visualize
from ebmjax.methods.base import Sampler


@functools.partial(jax.jit, static_argnums=0)
def _run_stage(kernel, energy, x, key, temperatures, step_sizes):
    state, _ = samplers.run_chain(kernel, energy, kernel.init(x), key, temperatures=temperatures,
                                  step_sizes=step_sizes)
    return state.position


@functools.partial(jax.jit, static_argnums=2)
def _start(init, key, n):
    return init(key, n)


def stage_ends(sampler: Sampler, key: jax.Array, n: int, *, starts: bool = False) -> list[np.ndarray]:
    """The sampler's start and the end of each of its stages for ``n`` chains (no finishing map);
    with ``starts``, each stage's start (after its ``enter``) before its end."""
    k_init, k_run = jax.random.split(key)
    x = _start(samplers.as_partial(sampler.init), k_init, n)
    ends = [np.asarray(x)]
    for i, st in enumerate(sampler.stages):
        k_enter, k_chain = jax.random.split(jax.random.fold_in(k_run, i))
        if st.enter is not None:
            x = st.enter(x, k_enter)
        if starts:
            ends.append(np.asarray(x))
        if len(st.temperatures):
            x = _run_stage(st.kernel, st.energy, x, k_chain, jnp.asarray(st.temperatures),
                           jnp.asarray(st.step_sizes))
        ends.append(np.asarray(x))
    return ends


def save_rows(rows: Sequence[np.ndarray], side: int, path: str | pathlib.Path, title: str) -> None:
    """Saves one row of images per entry of ``rows`` (each (n, s, s, C), s dividing ``side``), every
    image shown at ``side`` x ``side`` (pixels repeated)."""
    shown = [np.asarray(ops.upsample(jnp.asarray(r), side // r.shape[1])) for r in rows]
    visualize.save_image_grid(np.concatenate(shown), path, ncol=len(rows[0]), title=title)
