"""Every random stream of a run, derived from its ``seed``, named in one place.

A run's randomness is ``stream(seed, NAME)`` = ``fold_in(key(seed), NAME)`` for the streams below,
and the network's initial weights come from :func:`init_key`. The numbers are part of the results:
the same seed and settings give the same training, samples and reports, and a resumed run continues
exactly as an unbroken one. Changing a number changes every figure drawn from that stream, so new
streams take new numbers.

Keys are typed (``jax.random.key``); a user's own legacy ``PRNGKey`` arrays are accepted wherever
a key is taken. Layer 1: jax and numpy only.
"""

from __future__ import annotations

import jax
import numpy as np

TRAIN_STEP = 1  # the training step's randomness: fold_in(stream, step) (chains, data noise)
PROBE = 2  # the diagnostics computed on the last batch of a call: fold_in(stream, step)
SAMPLE = 3  # --mode sample; with sample.seed = N, fold_in(stream, N)
INPAINT = 4  # --mode inpaint: the random mask (fold_in 0) and the chains (fold_in 1)
DENOISE = 5  # --mode denoise: the added noise (fold_in 0) and the chains (fold_in 1)
TRANSLATE = 6  # --mode translate (from translate.seed when set)
CARRY = 7  # the carried state's start (a replay buffer's first chains)
EVAL_SAMPLES = 10  # the samples --mode eval judges
AIS_FORWARD = 11  # eval: forward AIS
AIS_REVERSE = 12  # eval: reverse AIS
OOD_NOISE = 13  # eval: the noised test images of the OOD section
CHECKPOINT_SCORES = 15  # the samples that score every checkpoint (during training and --mode scan)
RECOVERY = 16  # recovery r from divergence trains on with seed recovery_seed(seed, r) (train.recover)

# Within the sample stream: the method's own pictures, and the warm chains of a dataset's report.
SAMPLE_PICTURES = 2**32 - 1
SAMPLE_WARM = 99


def key(seed: int) -> jax.Array:
    """The run's root key: a typed threefry key of ``seed`` (the same bits as ``PRNGKey(seed)``)."""
    return jax.random.key(int(seed))


def stream(seed: int, name: int) -> jax.Array:
    """The key of stream ``name`` (one of this module's constants) of a run with ``seed``."""
    return jax.random.fold_in(key(seed), name)


def init_key(seed: int) -> jax.Array:
    """The key of the networks' initial weights: an "rbg" key of ``seed``, which compiles the many
    uniform initialisers several times faster than threefry on CPU."""
    return jax.random.key(int(seed), impl="rbg")


def recovery_seed(seed: int, recovery: int) -> int:
    """The seed a run trains on after its ``recovery``-th recovery from divergence (``train.recover``):
    ``seed`` itself for 0, else a fresh one (in [0, 2**31)), so that the data order, the data noise
    and the chains' randomness after the recovery are new, and the same in every process and rerun."""
    if recovery == 0:
        return int(seed)
    return int(np.random.SeedSequence([int(seed), RECOVERY, int(recovery)]).generate_state(1)[0] >> 1)
