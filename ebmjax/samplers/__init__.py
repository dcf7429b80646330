"""Samplers (layer 1): kernels, one scan driver, conditioning, and the paper's Langevin helpers.

Kernels (``ula``, ``langevin_kernel(grad_clip, bounds)``, ``mala``, ``hmc(n)``, ``clamped(kernel)``)
are BlackJAX-style init/step pairs over a batch of independent chains (``decoupled(step, noise)``
maps the maximum-likelihood literature's Langevin settings onto them); energies combine with
``tempered``, ``sum_energies`` and a classifier's ``class_energy`` / ``marginal_energy``; the replay buffer of
persistent chains is ``buffer_init`` / ``buffer_draw`` / ``buffer_update`` (and ``buffer_rows`` /
``buffer_class_rows`` to start sampling chains from it); ``run_chain`` scans any of them over a schedule of
temperatures and step sizes, ``run_chain_chunked`` does the same in resumable jitted chunks.
Everything takes an ``energy_fn(x) -> (B,)`` and arrays; nothing here imports Flax, configs or I/O.
"""

from ebmjax.samplers.buffer import buffer_class_rows, buffer_draw, buffer_init, buffer_rows, buffer_update
from ebmjax.samplers.conditioning import (
    ClampedState,
    asked_labels,
    class_energy,
    clamped,
    marginal_energy,
    row_labels,
    sum_energies,
    tempered,
)
from ebmjax.samplers.driver import Trace, run_chain, run_chain_chunked
from ebmjax.samplers.kernels import (
    HMCInfo,
    Kernel,
    MALAInfo,
    MCMCState,
    ULAInfo,
    ULAState,
    apply,
    as_partial,
    identity,
    decoupled,
    energy_and_grad,
    hmc,
    langevin_kernel,
    mala,
    ula,
)
from ebmjax.samplers.langevin import annealed_langevin, denoise_jump, langevin

__all__ = [
    "ClampedState",
    "HMCInfo",
    "Kernel",
    "MALAInfo",
    "MCMCState",
    "Trace",
    "ULAInfo",
    "ULAState",
    "annealed_langevin",
    "apply",
    "as_partial",
    "identity",
    "asked_labels",
    "buffer_class_rows",
    "buffer_draw",
    "buffer_init",
    "buffer_rows",
    "buffer_update",
    "clamped",
    "class_energy",
    "decoupled",
    "denoise_jump",
    "energy_and_grad",
    "hmc",
    "langevin",
    "langevin_kernel",
    "mala",
    "marginal_energy",
    "row_labels",
    "run_chain",
    "run_chain_chunked",
    "sum_energies",
    "tempered",
    "ula",
]
