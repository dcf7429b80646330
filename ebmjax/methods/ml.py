"""Maximum-likelihood EBMs trained with Langevin chains inside the training step (Malhotra §III.C-D;
Nijkamp et al.'s short-run EBM; Hinton's contrastive divergence; IGEBM and JEM's persistent chains).

One network, ``energy`` (``model.*``). Every training step starts ``train.batch_size`` chains,
runs ``ml.steps`` Langevin steps x <- clamp(x - step * clip(dE/dx) + noise * z) on the current
energy (the parameters held constant), and takes :func:`ebmjax.losses.ml_loss` between the data
(plus ``ml.data_noise``) and the chains' ends, which carry no gradient. ``ml.init`` says where the
chains start:

- ``noise``: fresh noise every step (short-run, Nijkamp et al.);
- ``data``: the batch itself (contrastive divergence, Hinton);
- ``buffer``: a replay buffer of past chain ends, each drawn row replaced by fresh noise with
  probability ``ml.reinit_prob`` (persistent chains, IGEBM / JEM). The buffer is the method's
  carried state: checkpointed with the parameters and split over the devices;
- ``source``: training images of another domain, the source of an unpaired translation
  (``translate.data_name``, or a cycle_gan pair's other domain), plus N(0, translate.noise^2):
  the chains that ``--mode translate`` runs, started at source images, are trained to carry them
  into the data's domain (CF-EBM's translation training). The loop draws the source batch beside
  the data's (``Method.source_data``).

``--mode sample`` runs ``ml.sample_steps`` steps of the same Langevin from fresh noise (or, with
``ml.sample_from = "buffer"``, from rows of the buffer). A model trained with ``ml.init = "source"``
has only learned where chains from source images should go: it translates (``--mode translate``),
and its chains from noise are not samples of the data (its configs set ``sample.n = 0``).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import PartitionSpec as P

from ebmjax import data, models, optim, parallel, samplers
from ebmjax.restoration.translate import translation_start
from ebmjax.errors import ConfigError
from ebmjax.methods import contrastive
from ebmjax.methods import settings
from ebmjax.methods.base import Method, Sampler, Stage, identity, network_energy

NETWORK = "energy"
INITS = ("noise", "data", "buffer", "source")
NOISE_INITS = ("uniform", "gaussian")


def defaults() -> ml_collections.ConfigDict:
    """The ``ml`` config group, every field with its default (``ebmjax.methods.settings``)."""
    # Maximum-likelihood training with Langevin chains in every step (ebmjax.methods.ml): short-run
    # chains from noise (Nijkamp et al.), from the data (contrastive divergence) or persistent chains
    # in a replay buffer (IGEBM, JEM). Langevin as the ML literature writes it:
    # x <- clamp(x - step_size * clip(dE/dx, grad_clip) + noise * z) (ebmjax.samplers.decoupled).
    g = ml_collections.ConfigDict()
    g.init = "noise"  # noise | data | buffer | source (training images of the translation's source domain, translate.data_name, plus translate.noise): where every training step's chains start
    g.noise_init = "uniform"  # uniform (over the data's range) | gaussian: fresh chain starts
    g.steps = 40  # Langevin steps per training step
    g.buffer_size = 10_000  # buffer: chain ends kept (IGEBM, JEM: 10,000); split over the devices
    g.reinit_prob = 0.05  # buffer: share of chains restarted from fresh noise each step (IGEBM, JEM: 5%)
    g.sample_steps = 200  # --mode sample: Langevin steps of the same kind per chain
    g.sample_from = "noise"  # --mode sample starts at: noise | buffer (ml.init = buffer only)
    settings.chain_settings(g, step_size=1.0, noise=0.005)
    return g


# Number fields of the group and the values that work for them (ebmjax.methods.settings).
RULES = settings.CHAIN_RULES + (("reinit_prob", "the share of chains restarted from noise", "[0, 1)"),)


def check_config(m: ml_collections.ConfigDict) -> None:
    """ConfigError for settings of the ``ml`` group that cannot work."""
    settings.check_numbers(m, "ml", RULES)
    if m.init not in INITS:
        raise ConfigError(f"ml.init must be one of {', '.join(INITS)}, got {m.init!r}.")
    if m.noise_init not in NOISE_INITS:
        raise ConfigError(f"ml.noise_init must be one of {', '.join(NOISE_INITS)}, got {m.noise_init!r}.")
    if m.sample_from not in ("noise", "buffer") or (m.sample_from == "buffer" and m.init != "buffer"):
        raise ConfigError(f"ml.sample_from must be 'noise', or 'buffer' when ml.init is 'buffer'; got {m.sample_from!r} "
                          f"with ml.init={m.init!r}.")
    settings.check_counts(m, "ml", (("steps", 1), ("sample_steps", 1), ("buffer_size", 1)))


def noise_init(kind: str, shape: tuple[int, ...], value_range: tuple[float, float]):
    """``init(key, n)``: fresh chain starts, uniform over the data's range or N(mid, (half width)^2)."""
    lo, hi = value_range

    def init(key: jax.Array, n: int) -> jax.Array:
        if kind == "uniform":
            return jax.random.uniform(key, (n, *shape), jnp.float32, lo, hi)
        return 0.5 * (lo + hi) + 0.5 * (hi - lo) * jax.random.normal(key, (n, *shape), jnp.float32)

    return init


def carried_rows(cfg: ml_collections.ConfigDict) -> tuple[int, ...]:
    """Rows of the carried state split over the devices: the replay buffer's, when there is one."""
    return (int(cfg.ml.buffer_size),) if cfg.ml.init == "buffer" else ()


class Hybrid(NamedTuple):
    """JEM's hybrid objective (``ebmjax.methods.jem``): ``classifier_weight`` x the cross-entropy of
    p(y | x) on the labelled data plus ``generative_weight`` x maximum likelihood on E(x) = -logsumexp f(x)
    (0: a plain classifier; its chains are not run)."""

    classifier_weight: float
    generative_weight: float


def build(cfg: ml_collections.ConfigDict, example_shape: tuple[int, ...],
          value_range: tuple[float, float] = (0.0, 1.0), hybrid: Hybrid | None = None) -> Method:
    """The maximum-likelihood method for examples of ``example_shape`` in ``value_range``.

    With ``model.classes`` = K the network's logits f(x) define the energies: trained alone
    (``hybrid`` None), the class-conditional E(x, y) = -f(x)[y] learns from the data's labels, and
    every training chain runs on the energy of its example's label (a replay buffer keeps a label per
    row); with ``hybrid``, JEM's objective (see :class:`Hybrid`). Either way restoration and
    evaluation use E(x) = -logsumexp f(x), and ``sample.label`` chooses the class sampled.
    """
    m = cfg.ml
    check_config(m)
    name = "ml" if hybrid is None else "jem"
    model = models.build_model(cfg.model)
    classes = int(getattr(model, "classes", 0))
    if hybrid is not None and not classes:
        raise ConfigError("method jem needs a classifier: set model.classes to the number of classes (e.g. "
                          "--config.model.classes=10) and model.name to convnet or mlp.")
    conditional = classes > 0 and hybrid is None
    if classes and m.init == "source":
        raise ConfigError("A classifier's energies (model.classes > 0) learn from labelled data; ml.init = 'source' "
                          "(translation) takes none. Set model.classes = 0 or another ml.init.")
    label = settings.sample_label(cfg, classes)
    generative = hybrid is None or hybrid.generative_weight > 0
    tx, lr = optim.adam(cfg.train)
    optimizer = optim.per_network({NETWORK: tx})
    shape = tuple(example_shape)
    kernel = samplers.langevin_kernel(m.grad_clip, tuple(value_range) if m.clamp else None)
    eps, temp = samplers.decoupled(m.step_size, m.noise)
    fresh = noise_init(m.noise_init, shape, value_range)

    def logits(params):
        return jax.tree_util.Partial(model.apply, params[NETWORK])

    def energy(params, carry=None):
        """E(x): the network's output, or a classifier's -logsumexp f(x)."""
        del carry
        return network_energy(logits(params), classes)

    def init_params(key):
        return {NETWORK: models.init_params(model, key, shape)}

    def init_carry(key):
        if m.init != "buffer" or not generative:
            return ()
        k_x, k_y = jax.random.split(key)
        carry = {"buffer": samplers.buffer_init(fresh(k_x, int(m.buffer_size)))}
        if conditional:  # the label each row's chain has run on; fresh rows take their batch's
            carry["labels"] = jax.random.randint(k_y, (int(m.buffer_size),), 0, classes, jnp.int32)
        return carry

    def chains(e, x0, key, n_steps):
        state, trace = samplers.run_chain(kernel, e, kernel.init(x0), key, temperatures=jnp.full((n_steps,), temp),
                                          step_sizes=eps)
        return state.position

    def split(batch):
        """(data, labels or None, source images or None): the loop passes (x, y) for a classifier's
        labels (Method.labels) and (x, x_source) when ml.init = "source"."""
        if classes:
            return batch[0], batch[1], None
        return (batch[0], None, batch[1]) if m.init == "source" else (batch, None, None)

    def trained_energies(params):
        """``of(y)``: the energy under training at labels ``y`` (one per row; ignored unless conditional:
        JEM's chains run on E(x))."""
        return lambda y: network_energy(logits(params), classes, y if conditional else None)

    def loss(params, carry, batch, key, step):
        del step
        batch_x, y, x_source = split(batch)
        k_data, k_fresh, k_draw, k_chain = jax.random.split(key, 4)
        x_data = contrastive.noised(batch_x, k_data, m.data_noise)
        metrics, value = {}, 0.0
        if hybrid is not None:
            f = logits(params)(x_data)
            ce = -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(f), y[:, None].astype(jnp.int32), axis=1))
            metrics.update(cross_entropy=ce, accuracy=jnp.mean((jnp.argmax(f, axis=1) == y).astype(jnp.float32)))
            value = hybrid.classifier_weight * ce
        if not generative:
            return value, (carry, metrics)
        # The chains run on the energy with its parameters held constant: no gradient through them.
        const, live = trained_energies(jax.lax.stop_gradient(params)), trained_energies(params)
        y_chain = y
        if m.init == "buffer":
            x0, idx, reinit = samplers.buffer_draw(k_draw, carry["buffer"], batch_x.shape[0], reinit_prob=m.reinit_prob,
                                                   fresh=fresh(k_fresh, batch_x.shape[0]))
            metrics["fresh_share"] = jnp.mean(reinit.astype(jnp.float32))
            if conditional:
                y_chain = jnp.where(reinit, y, carry["labels"][idx])
        elif m.init == "data":
            x0 = batch_x
        elif m.init == "source":
            x0 = translation_start(x_source, k_fresh, cfg.translate.noise)
        else:
            x0 = fresh(k_fresh, batch_x.shape[0])
        x_model = jax.lax.stop_gradient(chains(const(y_chain), x0, k_chain, int(m.steps)))
        # Conditional: E(x_i, y_i) of the data against E(x_j, y_j) of the chains, each at its own label.
        ml_value, terms = contrastive.step(live(y), const(y_chain), x_data, x_model, energy_l2=m.energy_l2,
                                           step_size=m.step_size, grad_clip=m.grad_clip, energy_model=live(y_chain),
                                           grad_l2=m.grad_l2)
        weight = 1.0 if hybrid is None else hybrid.generative_weight
        value = value + weight * ml_value
        metrics.update(terms)
        if m.init == "buffer":
            carry = dict(carry, buffer=samplers.buffer_update(carry["buffer"], idx, x_model))
            if conditional:
                carry["labels"] = carry["labels"].at[idx].set(y_chain)
        return value, (carry, metrics)

    def probe(params, carry, batch, key):
        # The energy of fresh noise (and of the source images), on the same scale as the loss's metrics.
        del carry
        e = energy(params)
        batch_x, _, x_source = split(batch)
        out = {"energy_noise": jnp.mean(e(fresh(key, batch_x.shape[0])))}
        if x_source is not None:
            out["energy_source"] = jnp.mean(e(x_source))
        return out

    def sampler(params, carry):
        # E(x), or class ``label`` (-1: every class in turn, a grid row each, samplers.row_labels).
        e = network_energy(logits(params), classes, label)
        k = int(m.sample_steps)
        from_buffer = m.sample_from == "buffer" and generative  # a plain classifier (jem) keeps no buffer
        if from_buffer and conditional and label is not None:  # persistent chains of the classes asked for
            init = jax.tree_util.Partial(samplers.buffer_class_rows, carry["buffer"], carry["labels"], jnp.int32(label),
                                         jnp.int32(classes))
        elif from_buffer:
            init = jax.tree_util.Partial(samplers.buffer_rows, carry["buffer"])
        else:
            init = fresh
        settings = {"kind": "langevin", "init": "buffer" if from_buffer else "noise", "noise_init": m.noise_init, "steps": k,
                    "step": float(m.step_size), "noise": float(m.noise), "grad_clip": m.grad_clip,
                    "clamp": bool(m.clamp)}
        return Sampler(init, (Stage("langevin", e, kernel, np.full(k, float(temp), np.float32),
                                    np.full(k, float(eps), np.float32)),),
                       jax.tree_util.Partial(identity), settings)

    carry_specs = ({key: P(parallel.DATA_AXIS) for key in ("buffer", "labels")[:1 + conditional]}
                   if m.init == "buffer" and generative else ())
    return Method(
        name=name, networks={NETWORK: model}, init_params=init_params, optimizer=optimizer,
        learning_rates={NETWORK: lr}, init_carry=init_carry, carry_specs=carry_specs, loss=loss, probe=probe,
        energy=energy, sampler=sampler, denoise_sigma=None, temperature=float(temp),
        bounds=contrastive.energy_bounds(m, "ml") if generative else {},
        identity=(*models.IDENTITY_FIELDS, "ml.init", "ml.buffer_size"),
        source_data=data.source_domain_config(cfg) if m.init == "source" else None,
        labels=classes, classifier=logits if classes else None)

