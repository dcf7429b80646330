"""Samplers (layer 1): kernels, one scan driver, conditioning, and the paper's Langevin helpers.

Kernels (``ula``, ``mala``, ``hmc(n)``, ``clamped(kernel)``) are BlackJAX-style init/step pairs
over a batch of independent chains; ``run_chain`` scans any of them over a schedule of
temperatures and step sizes, ``run_chain_chunked`` does the same in resumable jitted chunks.
Everything takes an ``energy_fn(x) -> (B,)`` and arrays; nothing here imports Flax, configs or I/O.
"""

from ebmjax.samplers.conditioning import ClampedState, clamped, sum_energies, tempered
from ebmjax.samplers.driver import Trace, run_chain, run_chain_chunked
from ebmjax.samplers.kernels import (
    HMCInfo,
    Kernel,
    MALAInfo,
    MCMCState,
    ULAInfo,
    ULAState,
    energy_and_grad,
    hmc,
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
    "clamped",
    "denoise_jump",
    "energy_and_grad",
    "hmc",
    "langevin",
    "mala",
    "run_chain",
    "run_chain_chunked",
    "sum_energies",
    "tempered",
    "ula",
]
