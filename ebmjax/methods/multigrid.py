"""Multigrid maximum likelihood (Gao, Lu, Zhou, Zhu, Wu, CVPR 2018; Malhotra §IV) and Malhotra's
modified multigrid with a generator: one energy per grid, each learned by maximum likelihood with
short Langevin chains that start from the up-sampled sample of the grid below (with the generator:
from the up-sampled G(sample of the grid below)).

Grids ``multigrid.grids`` = (s_0, s_1, ..., s_K) are image sides, coarse to fine (digits: 1, 2, 4,
8; Gao: 1, 4, 16, 64); s_K is the image side. Grid s_k's image is the data block-averaged by
H / s_k (:func:`ebmjax.ops.downsample`). Grid s_0 has no model: its "sample" is the block average
of the data batch. Every finer grid k has its own network ``energy_<s_k>``
(:class:`ebmjax.models.GridEnergy`, its own Adam on the same ``train.*`` settings) and, in every
training step:

1. starts chains from the up-sampled (pixel replication, :func:`ebmjax.ops.upsample`) sample of grid
   k-1 (``order = "sequential"``, the original's cascade), or from the up-sampled *data* of grid k-1
   (``order = "joint"``: every grid's chain is independent of the others');
2. runs ``multigrid.steps[k]`` Langevin steps x <- clamp(x - step * clip(dE_k/dx) + noise * z) on
   its energy with the parameters held constant;
3. adds :func:`ebmjax.losses.ml_loss` between grid k's data and the chains' ends (no gradient).

The loss is the sum over grids. Grid k's term touches only ``energy_<s_k>`` (its chain's samples
carry no gradient), and each network has its own Adam, so one step on the sum is exactly the
original's one Adam step per grid, one grid after the other. Gao's code updates grid k before
running grid k+1's chain, but grid k+1's chain starts from grid k's chain ends, which the update of
grid k does not change: the order of the updates does not matter.

Malhotra's generator (``multigrid.generator`` = ``teach`` or ``autoencode``; ``none``: Gao's method).
One :class:`ebmjax.models.DilatedGenerator` G (network ``generator``; its convolutions do not depend
on the image size, so one G serves every grid) sits in front of every grid's chain: grid k's chain
starts from upsample(G(x_{k-1})), x_{k-1} the previous grid's sample (``sequential``) or data
(``joint``), G held constant in the chain. G learns jointly with the energies, with its own Adam
(``multigrid.gen_lr``, ``gen_b1``, ``gen_b2``, the ``train.*`` schedule shape). The seed does not pin
down G's target; the two readings:

- ``teach`` (MCMC teaching, as CoopNets, which the seed borrows): G's up-sampled proposal is pulled
  towards the grid's revised samples, |upsample(G(x_{k-1})) - x^_k|^2 / (2 gen_sigma^2) summed over
  pixels and grids, x_{k-1} and x^_k constants;
- ``autoencode`` (§III.I: "an autoencoder network G ... to regenerate the training images"): G
  reconstructs the training images of every grid it is applied to, |G(y_k) - y_k|^2 / (2
  gen_sigma^2) for the data y_k of grids 0 .. K-1. Its optimum is the identity; the seed's point is
  that a small ReLU network only approximates it, mapping samples towards a smoother set of images.

Either way the energies' losses are those of Gao's method, with the chains started at G's proposals;
G's term touches only G (the chains' samples and G's input are constants), the energies' terms only
the energies, so one Adam step on the sum is each network's own update.

``--mode sample`` runs the cascade: it starts from coarsest-grid block averages of training batches
(the carried state keeps the last ``multigrid.coarse_buffer`` of them, written by every training
step, checkpointed with the parameters; the original starts from the current data batch, which a
sampler without data cannot), then one stage per finer grid, each entered by up-sampling, with
``multigrid.sample_steps`` (default: training's) steps (entered through G where there is one).
``grids.png`` shows a few chains at the end of every grid, coarse to fine (Malhotra's paper Fig. 1), and
with G its proposals above each grid's ends. Restoration and evaluation use the finest grid's
energy.

Class-conditional (``model.classes`` = K, labelled data): every grid's network gives logits f_k(x)
(B, K) and E_k(x, y) = -f_k(x)[y]. A training example's chains run on its own label's energy on
every grid (they start from the example's own coarser grid) and the data's E_k(x_i, y_i) is lowered
against the chains' E_k(x_i^-, y_i). The coarse buffer keeps each row's label, ``--mode sample
--config.sample.label=k`` runs the cascade on class k's energies from coarse rows of class k (-1:
one grid row per class), and restoration and evaluation use the finest grid's E(x) = -logsumexp_y
f(x)[y].
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import PartitionSpec as P

from ebmjax import models, ops, optim, parallel, samplers
from ebmjax.errors import ConfigError
from ebmjax.methods import contrastive, pictures, settings
from ebmjax.methods.base import Method, Sampler, Stage, identity, network_energy, split_labels

ORDERS = ("sequential", "joint")
GENERATORS = ("none", "teach", "autoencode")
GENERATOR = "generator"
PICTURE = "grids.png"
PICTURE_CHAINS = 12  # chains shown in grids.png
_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def network_name(side: int) -> str:
    return f"energy_{side}"


def _positive_ints(value: Any, name: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or not value or any(
            isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in value):
        raise ConfigError(f"multigrid.{name} must be a non-empty tuple of integers >= 1, got {value!r}.")
    return tuple(int(v) for v in value)


def per_grid(value: Any, name: str, n: int, *, integer: bool = False, positive: bool = False) -> tuple:
    """``multigrid.<name>`` as one value per learned grid: a 1-tuple is shared, else it needs n entries."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = (value,)
    if not isinstance(value, (tuple, list)) or len(value) not in (1, n):
        raise ConfigError(f"multigrid.{name} must hold one value (shared by every grid) or one per learned grid "
                          f"({n}: grids[1:]), got {value!r}.")
    out = []
    for v in value:
        bad = isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v) or v < 0
        bad = bad or (integer and (not isinstance(v, int) or v < 1)) or (positive and v <= 0)
        if bad:
            what = "integers >= 1" if integer else ("finite numbers > 0" if positive else "finite numbers >= 0")
            raise ConfigError(f"multigrid.{name} must hold {what}, got {value!r}.")
        out.append(int(v) if integer else float(v))
    return tuple(out) * (n if len(out) == 1 else 1)


@dataclasses.dataclass(frozen=True)
class Plan:
    """The grids of a run: sides (coarse to fine), down-sampling factors from the image, and the
    per-learned-grid Langevin settings (each a tuple of len(sides) - 1)."""

    sides: tuple[int, ...]
    factors: tuple[int, ...]
    strided: tuple[int, ...]
    steps: tuple[int, ...]
    sample_steps: tuple[int, ...]
    step_size: tuple[float, ...]
    noise: tuple[float, ...]

    @property
    def learned(self) -> tuple[int, ...]:
        return self.sides[1:]


def plan(m: ml_collections.ConfigDict, example_shape: tuple[int, ...]) -> Plan:
    """The grids of ``multigrid`` for images of ``example_shape`` (H, W, C); ConfigError if they do not fit."""
    if len(example_shape) != 3:
        raise ConfigError(f"method multigrid needs images (H, W, C); the data's examples have shape {example_shape}.")
    h, w, _ = example_shape
    sides = _positive_ints(m.grids, "grids")
    if len(sides) < 2 or any(b <= a for a, b in zip(sides, sides[1:])):
        raise ConfigError(f"multigrid.grids must be at least two increasing sides, coarse to fine, e.g. (1, 2, 4, 8); "
                          f"got {m.grids!r}.")
    if sides[-1] != h:
        raise ConfigError(f"multigrid.grids must end at the image side {h} (the finest grid is the image); got "
                          f"{m.grids!r}.")
    for a, b in zip(sides, sides[1:]):
        if b % a or h % a:
            raise ConfigError(f"multigrid.grids: every side must divide the next and the image side {h} "
                              f"(up-sampling repeats pixels); {a} -> {b} does not.")
    factors = tuple(h // s for s in sides)
    if any(w % f for f in factors):
        raise ConfigError(f"multigrid.grids: the image width {w} must be divisible by every factor {factors} "
                          f"(image side / grid side).")
    n = len(sides) - 1
    steps = per_grid(m.steps, "steps", n, integer=True)
    sample_steps = per_grid(m.sample_steps, "sample_steps", n, integer=True) if len(m.sample_steps) else steps
    strided = per_grid(m.strided_layers, "strided_layers", n, integer=False)
    if any(v != int(v) for v in strided):
        raise ConfigError(f"multigrid.strided_layers must hold integers >= 0, got {m.strided_layers!r}.")
    return Plan(sides, factors, tuple(int(v) for v in strided), steps, sample_steps, per_grid(m.step_size, "step_size", n, positive=True),
                per_grid(m.noise, "noise", n))


def defaults() -> ml_collections.ConfigDict:
    """The ``multigrid`` config group, every field with its default (``ebmjax.methods.settings``)."""
    # Multigrid maximum likelihood (ebmjax.methods.multigrid; Gao et al. CVPR 2018, Malhotra §IV): one
    # energy per grid (GridEnergy, networks "energy_<side>"), the coarsest grid the block average of
    # the data, every finer grid's chain started from the up-sampled sample of the grid before. Langevin
    # as in ml: x <- clamp(x - step_size * clip(dE/dx) + noise * z). Per-grid settings are tuples with
    # one entry (shared by every learned grid) or one per learned grid (grids[1:]). Gao's code: 90 steps
    # (paper 30) of x += (d^2/2) df/dx with d = 0.3 on [0, 255] pixels, no noise (the paper adds it).
    g = ml_collections.ConfigDict()
    g.grids = (1, 4, 16, 64)  # grid sides, coarse to fine; the last is the image side (Gao: 1, 4, 16, 64)
    g.widths = (96, 128, 256)  # channels of every grid's conv layers (Gao's 4x4 net: 96, 128, 256)
    g.kernel = 3  # conv kernel side (Gao: 5 for the strided first layer, 3 after)
    g.strided_layers = (1,)  # leading conv layers with stride 2 (on grids of side >= 4), per learned grid or shared (Gao: 1, 1, 4)
    g.order = "sequential"  # sequential (as the original: grid k starts from grid k-1's sample) | joint (every grid starts from the up-sampled data of the grid before; chains independent)
    g.steps = (30,)  # Langevin steps per training step, per learned grid or shared
    g.sample_steps = ()  # --mode sample: steps per learned grid or shared; (): as multigrid.steps
    g.ref_sigma = ml_collections.config_dict.placeholder(float)  # None: no reference; else add |x|^2 / (2 ref_sigma^2) to every grid's energy (Malhotra's paper eq. 1)
    g.coarse_buffer = 1024  # coarsest-grid block averages of past training batches kept (in the carry) as --mode sample's starts
    # Malhotra's modified multigrid: a generator G (network "generator", DilatedGenerator, one for every
    # grid) in front of every grid's chain, which then starts from the up-sampled G(previous grid's sample).
    # The seed is loose about what G learns; two readings: "teach" (MCMC teaching, as CoopNets: G's
    # up-sampled output is pulled towards the grid's revised samples) and "autoencode" (§III.I: G
    # regenerates the training images of every grid it is applied to). Loss |.|^2 / (2 gen_sigma^2)
    # summed over pixels; G's Adam has the train.* schedule shape with gen_lr, gen_b1, gen_b2.
    g.generator = "none"  # none (Gao et al.) | teach | autoencode (Malhotra's two readings)
    g.gen_rates = (1, 2, 4, 6, 12, 18)  # dilation rates of G's six parallel branches (not in the seed; see DilatedGenerator)
    g.gen_width = 32  # channels of G's first two conv layers (not in the seed: small, as it asks)
    g.gen_branch_width = 16  # channels of each of G's dilated branches
    g.gen_sigma = 0.3  # sigma_g of G's loss (CoopNets' 0.3)
    g.gen_lr = 1e-4  # G's Adam learning rate (CoopNets' generator: 1e-4; the seed gives none)
    g.gen_b1 = 0.5  # G's Adam betas (CoopNets: 0.5, 0.999)
    g.gen_b2 = 0.999
    # step_size: step on the energy's gradient, per learned grid or shared
    # noise: std of the Langevin noise, per learned grid or shared (0: off, as Gao's code)
    # clamp: clamp the chains to the data's range after every step (Gao: [0, 255])
    settings.chain_settings(g, step_size=(1.0,), noise=(0.0,))
    return g


# Number fields of the group and the values that work for them (ebmjax.methods.settings).
RULES = settings.CHAIN_RULES + (
    ("ref_sigma", "the width of the Gaussian reference", "> 0"),
    ("gen_sigma", "the generator's sigma_g", "> 0"),
    ("gen_lr", "the generator's learning rate", "> 0"),
    ("gen_b1", "the generator's Adam first-moment decay", "[0, 1)"),
    ("gen_b2", "the generator's Adam second-moment decay", "[0, 1)"),
)


def check_config(m: ml_collections.ConfigDict) -> None:
    """ConfigError for settings of the ``multigrid`` group that cannot work (the grids are checked
    against the images by :func:`plan`)."""
    settings.check_numbers(m, "multigrid", RULES)
    if m.order not in ORDERS:
        raise ConfigError(f"multigrid.order must be one of {', '.join(ORDERS)}, got {m.order!r}.")
    _positive_ints(m.widths, "widths")
    if m.generator not in GENERATORS:
        raise ConfigError(f"multigrid.generator must be one of {', '.join(GENERATORS)}, got {m.generator!r}.")
    _positive_ints(m.gen_rates, "gen_rates")
    settings.check_counts(m, "multigrid", (("kernel", 1), ("coarse_buffer", 1), ("gen_width", 1),
                                           ("gen_branch_width", 1)))


@dataclasses.dataclass(frozen=True)
class Upsample:
    """``enter(x, key)`` of a sampler stage: pixel replication by ``factor`` (hashable, so compiled
    stages are reused)."""

    factor: int

    def __call__(self, x: jax.Array, key: jax.Array) -> jax.Array:
        del key
        return ops.upsample(x, self.factor)


@dataclasses.dataclass(frozen=True)
class GeneratorUpsample:
    """``enter`` of a sampler stage with Malhotra's generator: pixel replication of G(x) by ``factor``
    (wrapped in a Partial over G's parameters)."""

    generator: Any
    factor: int

    def __call__(self, gen_params: Any, x: jax.Array, key: jax.Array) -> jax.Array:
        del key
        return ops.upsample(self.generator.apply(gen_params, x), self.factor)


def carried_rows(cfg: ml_collections.ConfigDict) -> tuple[int, ...]:
    """Rows of the carried state split over the devices: the coarse buffer's."""
    return (int(cfg.multigrid.coarse_buffer),)


def build(cfg: ml_collections.ConfigDict, example_shape: tuple[int, ...],
          value_range: tuple[float, float] = (0.0, 1.0)) -> Method:
    """The multigrid method for images of ``example_shape`` (H, W, C) in ``value_range``; with
    ``model.classes`` = K, the class-conditional multigrid (see the module's docstring)."""
    m = cfg.multigrid
    check_config(m)
    pl = plan(m, tuple(example_shape))
    classes = models.class_count(cfg.model)
    label = settings.sample_label(cfg, classes)
    h, w, c = example_shape
    if cfg.model.dtype not in _DTYPES:
        raise ConfigError(f"model.dtype must be one of {', '.join(_DTYPES)}, got {cfg.model.dtype!r}.")
    names = tuple(network_name(s) for s in pl.learned)
    nets = {name: models.GridEnergy(widths=tuple(m.widths), kernel=int(m.kernel), strided=strided,
                                    ref_sigma=m.ref_sigma, dtype=_DTYPES[cfg.model.dtype], conv=cfg.model.conv,
                                    classes=classes)
            for name, strided in zip(names, pl.strided)}
    shapes = {name: (h // f, w // f, c) for name, f in zip(names, pl.factors[1:])}
    coarse_shape = (h // pl.factors[0], w // pl.factors[0], c)
    tx, lr = optim.adam(cfg.train)
    transforms, rates = {name: tx for name in names}, {name: lr for name in names}
    gen = None if m.generator == "none" else models.DilatedGenerator(
        rates=tuple(m.gen_rates), width=int(m.gen_width), branch_width=int(m.gen_branch_width))
    if gen is not None:
        if value_range[0] < 0:
            raise ConfigError(f"multigrid.generator={m.generator!r}: Malhotra's generator ends in a ReLU (its "
                              f"output is >= 0), but the data's range is {tuple(value_range)}. Use data in [0, 1] "
                              f"or multigrid.generator=none.")
        transforms[GENERATOR], rates[GENERATOR] = optim.adam_like(cfg.train, m.gen_lr, m.gen_b1, m.gen_b2)
    optimizer = optim.per_network(transforms)
    sigma_g2 = float(m.gen_sigma) ** 2
    kernel = samplers.langevin_kernel(m.grad_clip, tuple(value_range) if m.clamp else None)
    decoupled = [samplers.decoupled(s, z) for s, z in zip(pl.step_size, pl.noise)]
    eps = [float(e) for e, _ in decoupled]
    temps = [float(t) for _, t in decoupled]
    lo, hi = value_range

    def grid_logits(params, k):
        """Learned grid k's network (0-based over grids[1:]): its energy, or with classes its logits."""
        name = names[k]
        return jax.tree_util.Partial(nets[name].apply, params[name])

    def grid_energy(params, k, y=None):
        """The energy of learned grid k: with classes, E(x, y) at labels ``y`` (a class, one per row,
        or -1), or E(x) = -logsumexp_y f(x)[y] when ``y`` is None."""
        return network_energy(grid_logits(params, k), classes, y)

    def energy(params, carry=None):
        del carry
        return grid_energy(params, len(names) - 1)

    def init_params(key):
        keys = jax.random.split(key, len(names) + 1)
        params = {name: models.init_params(nets[name], k, shapes[name]) for name, k in zip(names, keys)}
        if gen is not None:  # G's parameters do not depend on the image size: one G serves every grid
            params[GENERATOR] = models.init_params(gen, keys[-1], coarse_shape)
        return params

    def per_example_sq(a):
        return 0.5 * jnp.mean(jnp.sum(a.reshape(a.shape[0], -1) ** 2, axis=1)) / sigma_g2

    def init_carry(key):
        del key  # filled with the first batch's block averages (and labels) by the first training step
        carry = {"coarse": jnp.zeros((int(m.coarse_buffer), *coarse_shape), jnp.float32)}
        if classes:
            carry["labels"] = jnp.zeros((int(m.coarse_buffer),), jnp.int32)
        return carry

    def chain(e, x0, key, k, n_steps):
        state, _ = samplers.run_chain(kernel, e, kernel.init(x0), key, temperatures=jnp.full((n_steps,), temps[k]),
                                      step_sizes=eps[k])
        return state.position

    def loss(params, carry, batch, key, step):
        batch_x, y = split_labels(batch, classes)
        keys = jax.random.split(key, 2 * len(names))
        frozen = jax.lax.stop_gradient(params)
        data = [ops.downsample(batch_x, f) for f in pl.factors]
        metrics, total, gen_loss, previous = {}, 0.0, 0.0, data[0]
        for k, side in enumerate(pl.learned):
            ratio = pl.sides[k + 1] // pl.sides[k]
            source = previous if m.order == "sequential" else data[k]
            # Malhotra: the chain starts from the up-sampled G(previous grid's sample) (G held constant).
            start = ops.upsample(source if gen is None else gen.apply(frozen[GENERATOR], source), ratio)
            # The chains run on grid k's energy with its parameters held constant: no gradient through them.
            # Conditional: every chain on its example's label, which its coarser grid's chain also ran on.
            e_const = grid_energy(frozen, k, y)
            x_model = jax.lax.stop_gradient(chain(e_const, start, keys[2 * k], k, pl.steps[k]))
            x_data = contrastive.noised(data[k + 1], keys[2 * k + 1], m.data_noise)
            value, terms = contrastive.step(grid_energy(params, k, y), e_const, x_data, x_model, energy_l2=m.energy_l2,
                                            step_size=pl.step_size[k], grad_clip=m.grad_clip, grad_l2=m.grad_l2)
            total = total + value
            metrics.update({f"{name}_{side}": v for name, v in terms.items()})
            # How far the chain moved its start (RMS per pixel): 0 = the chain did nothing.
            metrics[f"chain_move_{side}"] = jnp.sqrt(jnp.mean((x_model - start) ** 2))
            if m.generator == "teach":  # MCMC teaching: G's proposal pulled towards the revised samples
                gen_loss = gen_loss + per_example_sq(ops.upsample(gen.apply(params[GENERATOR], source), ratio)
                                                     - x_model)
            elif m.generator == "autoencode":  # G regenerates the training images of the grid it is applied to
                gen_loss = gen_loss + per_example_sq(gen.apply(params[GENERATOR], data[k]) - data[k])
            previous = x_model
        if gen is not None:
            metrics["gen_loss"] = gen_loss
            total = total + gen_loss
        # The coarsest grid's block averages of the data, kept as --mode sample's starts: a ring over
        # the last coarse_buffer rows, the whole buffer filled (repeating the batch) at step 0.
        coarse, n = carry["coarse"], carry["coarse"].shape[0]
        b = batch_x.shape[0]
        rows = data[0].astype(coarse.dtype)
        coarse = jnp.where(step == 0, rows[jnp.arange(n) % b], coarse)
        ring = (step * b + jnp.arange(b)) % n
        coarse = coarse.at[ring].set(rows)
        if not classes:
            return total, ({"coarse": coarse}, metrics)
        labels = jnp.where(step == 0, y[jnp.arange(n) % b], carry["labels"]).at[ring].set(y)
        return total, ({"coarse": coarse, "labels": labels}, metrics)

    def probe(params, carry, batch, key):
        # Each grid's energy of uniform noise, on the scale of the loss's metrics (E(x) with classes).
        del carry
        batch_x, _ = split_labels(batch, classes)
        out = {}
        for k, (side, f) in enumerate(zip(pl.learned, pl.factors[1:])):
            shape = (batch_x.shape[0], h // f, w // f, c)
            noise = jax.random.uniform(jax.random.fold_in(key, k), shape, jnp.float32, lo, hi)
            out[f"energy_noise_{side}"] = jnp.mean(grid_energy(params, k)(noise))
        return out

    def enter(params, ratio):
        if gen is None:
            return Upsample(ratio)
        return jax.tree_util.Partial(GeneratorUpsample(gen, ratio), params[GENERATOR])

    def sampler(params, carry):
        stages = tuple(
            Stage(f"grid {side}x{side}", grid_energy(params, k, label), kernel,
                  np.full(pl.sample_steps[k], temps[k], np.float32), np.full(pl.sample_steps[k], eps[k], np.float32),
                  enter(params, pl.sides[k + 1] // pl.sides[k]))
            for k, side in enumerate(pl.learned))
        settings = {"kind": "multigrid", "init": "coarse data block averages", "grids": list(pl.sides),
                    "steps": list(pl.sample_steps), "step": list(pl.step_size), "noise": list(pl.noise),
                    "grad_clip": m.grad_clip, "clamp": bool(m.clamp), "ref_sigma": m.ref_sigma,
                    "generator": m.generator}
        if label is None:
            init = jax.tree_util.Partial(samplers.buffer_rows, carry["coarse"])
        else:  # -1: every class in turn, a grid row each (samplers.row_labels), from coarse rows of its class
            init = jax.tree_util.Partial(samplers.buffer_class_rows, carry["coarse"], carry["labels"], jnp.int32(label),
                                         jnp.int32(classes))
        s = Sampler(init, stages, jax.tree_util.Partial(identity), settings,
                    variant="" if m.generator == "none" else f"{m.generator} generator")
        return s._replace(pictures=lambda out_dir, key: grids_picture(s, pl, out_dir, key))

    bounds = contrastive.energy_bounds(m, "multigrid",
                                       tuple(f"_{side}" for side in pl.learned))
    return Method(
        name="multigrid", networks=nets if gen is None else {**nets, GENERATOR: gen}, init_params=init_params,
        optimizer=optimizer, learning_rates=rates, init_carry=init_carry,
        carry_specs={key: P(parallel.DATA_AXIS) for key in ("coarse", "labels")[:1 + bool(classes)]},
        loss=loss, probe=probe, energy=energy, sampler=sampler, denoise_sigma=None,
        # The density the finest grid's chains sample is exp(-E / T); chains without noise descend
        # the energy (T = 0), for which restoration weighs the energy as T = 1.
        temperature=temps[-1] if temps[-1] > 0 else 1.0, bounds=bounds,
        identity=("multigrid.grids", "multigrid.widths", "multigrid.kernel", "multigrid.ref_sigma",
                  "multigrid.coarse_buffer", "multigrid.strided_layers", "multigrid.generator", "multigrid.gen_rates", "multigrid.gen_width",
                  "multigrid.gen_branch_width", "model.classes"),
        labels=classes, classifier=(lambda params: grid_logits(params, len(names) - 1)) if classes else None)


def grids_picture(sampler: Sampler, pl: Plan, out_dir: str | pathlib.Path, key: jax.Array,
                  n: int = PICTURE_CHAINS) -> list[str]:
    """Writes ``grids.png``: one row per grid, coarse (top) to fine, ``n`` chains in columns, every
    grid's sample shown at the image's size (pixels repeated). With Malhotra's generator, each finer
    grid's row of chain ends has above it the row of the chains' starts, the up-sampled G(previous
    grid's sample). Returns the file names written."""
    with_gen = sampler.settings.get("generator", "none") != "none"
    rows = pictures.stage_ends(sampler, key, n, starts=with_gen)
    grid_names = ", ".join(f"{s}x{s}" for s in pl.sides)
    title = (f"multigrid + G: {grid_names}, top to bottom; per finer grid G's proposal, then the chain's end"
             if with_gen else f"multigrid chains: one row per grid ({grid_names}, top to bottom)")
    pictures.save_rows(rows, pl.sides[-1], pathlib.Path(out_dir) / PICTURE, title)
    return [PICTURE]

