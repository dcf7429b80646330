"""Cooperative learning of an energy and a generator (CoopNets: Xie, Lu, Gao, Zhu, Wu, "Cooperative
learning of energy-based model and latent variable model via MCMC teaching", AAAI 2018; REFERENCE §4;
the scheme Malhotra's paper borrows for its generator).

Two networks: ``energy`` (``model.*``) and ``generator`` (:class:`ebmjax.models.LatentGenerator`,
``coop.gen_*``), each with its own Adam (the energy's on ``train.*``, the generator's learning rate
and betas ``coop.gen_lr``, ``coop.gen_b1``, ``coop.gen_b2`` on the same schedule shape). Every
training step, as the original orders it:

1. z ~ N(0, I_latent_dim); the generator proposes x~ = g(z);
2. the energy revises the proposals with ``coop.steps`` Langevin steps written as in ``ml``,
   x <- clamp(x - step_size * clip(dE/dx) + noise * z'), both networks' parameters held constant:
   the revised samples x^ carry no gradient;
3. optionally (``coop.infer_steps`` > 0; off by default, as the original) latent Langevin infers z
   from x^ on -log p(z, x^) = |z|^2 / 2 + |x^ - g(z)|^2 / (2 sigma_g^2);
4. the energy learns from (data, x^) by :func:`ebmjax.losses.ml_loss`;
5. the generator learns to reproduce x^ ("MCMC teaching"): |g(z) - x^|^2 / (2 sigma_g^2), summed over
   pixels, averaged over the batch.

The shared step takes one gradient of one scalar, the sum of the two losses. They touch disjoint
parameters: the energy's term sees the generator only through x^, a constant (computed from
``stop_gradient`` parameters), and the generator's term sees x^ (and the inferred z) as constants
and no energy. So the gradient of the sum is each network's own gradient, and each network's own Adam
makes exactly the original's two updates.

The energy may carry CoopNets' Gaussian reference, E(x) = net(x) + |x - c|^2 / (2 ref_sigma^2), c the
middle of the data's range (``coop.ref_sigma``; None: none); restoration and evaluation use that
energy. ``--mode sample`` draws fresh z, starts the chains at g(z) and runs ``coop.sample_steps``
Langevin steps of the same kind; ``proposals.png`` shows proposals over their revised samples.

Class-conditional (``model.classes`` = K, labelled data; as conditional CoopNets): the energy's
logits f(x) define E(x, y) = -f(x)[y] (the reference, if any, added to every class) and the
generator reads the class too, g(z, y) = g([z, one_hot(y)]). Every training example's proposal is
g(z, y_i), revised on E(x, y_i), and the data's E(x_i, y_i) is lowered against E(x^_i, y_i).
``--mode sample --config.sample.label=k`` proposes g(z, k) and revises it on E(x, k) (-1: one grid
row per class); without a label the chains revise g(z, y), y drawn uniformly, on E(x) =
-logsumexp_y f(x)[y], which restoration and evaluation use.

Differences from the original: no BatchNorm in the generator (see LatentGenerator); Langevin in the
ML literature's (step, noise) form (CoopNets' delta is noise = delta, step = delta^2 / 2).
"""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ebmjax import models, optim, samplers, visualize
from ebmjax.errors import ConfigError
from ebmjax.methods import contrastive, pictures, settings
from ebmjax.methods.base import Method, Sampler, Stage, identity, network_energy, split_labels
from ebmjax.models import generator as gen_models

ENERGY = "energy"
GENERATOR = "generator"
PICTURE = "proposals.png"
PICTURE_CHAINS = 16


def defaults() -> ml_collections.ConfigDict:
    """The ``coop`` config group, every field with its default (``ebmjax.methods.settings``)."""
    # Cooperative learning (ebmjax.methods.coop; CoopNets, Xie et al.): a generator g (network
    # "generator", LatentGenerator) proposes g(z), z ~ N(0, I); the energy ("energy", model.*) revises
    # the proposals with Langevin as in ml, x <- clamp(x - step_size * clip(dE/dx) + noise * z), learns
    # from (data, revised) by ml_loss, and g learns to reproduce the revised samples (|g(z) - x|^2 /
    # (2 gen_sigma^2)). The energy's Adam is train.*; the generator's is coop.gen_* (the same schedule
    # shape: warm-up, cosine decay to gen_lr * train.lr_end / train.lr). Defaults: CoopNets' TF code on
    # images in [-1, 1] (delta 0.002 -> step 2e-6, noise 0.002; sigma 0.016; 15 steps; sigma_g 0.3;
    # generator lr 1e-4, beta1 0.5; z of 100; CIFAR generator 256@4 -> 128@8 -> 64@16 -> 3@32).
    g = ml_collections.ConfigDict()
    g.latent_dim = 100  # size of z (CoopNets: 100)
    g.gen_widths = (256, 128, 64)  # generator channels per map, one stride-2 transposed conv each (CoopNets CIFAR); (): linear z -> x
    g.gen_kernel = 4  # side of the generator's transposed-conv kernels
    g.gen_output = "tanh"  # tanh (CoopNets; scaled to the data's range) | linear
    g.gen_norm = "none"  # none | layer (batch-independent; CoopNets has BatchNorm, which this drops)
    g.gen_sigma = 0.3  # sigma_g of the generator's loss |g(z) - revised|^2 / (2 sigma_g^2)
    g.gen_lr = 1e-4  # the generator's Adam learning rate (CoopNets: 1e-4)
    g.gen_b1 = 0.5  # the generator's Adam betas (CoopNets: 0.5, 0.999)
    g.gen_b2 = 0.999
    g.steps = 15  # Langevin steps revising the proposals in every training step (CoopNets: 15)
    g.ref_sigma = ml_collections.config_dict.placeholder(float)  # None: none; else add |x - c|^2 / (2 ref_sigma^2) to the energy, c the middle of the data's range (CoopNets: 0.016 on [-1, 1])
    g.infer_steps = 0  # latent Langevin steps inferring z from the revised samples before g learns (0: off, CoopNets' default)
    g.infer_step_size = 0.045  # latent Langevin: step on the gradient of |z|^2 / 2 + |x - g(z)|^2 / (2 sigma_g^2) (CoopNets: 0.3^2 / 2)
    g.infer_noise = 0.3  # latent Langevin: noise std (CoopNets: 0.3)
    g.sample_steps = 15  # --mode sample: Langevin steps after the generator's proposal
    # step_size: step on the energy's gradient (CoopNets: delta^2 / 2 = 2e-6)
    # noise: std of the Langevin noise (CoopNets: delta = 0.002)
    settings.chain_settings(g, step_size=2e-6, noise=0.002)
    return g


# Number fields of the group and the values that work for them (ebmjax.methods.settings).
RULES = settings.CHAIN_RULES + (
    ("gen_sigma", "the generator's sigma_g", "> 0"),
    ("gen_lr", "the generator's learning rate", "> 0"),
    ("gen_b1", "the generator's Adam first-moment decay", "[0, 1)"),
    ("gen_b2", "the generator's Adam second-moment decay", "[0, 1)"),
    ("ref_sigma", "the width of the Gaussian reference", "> 0"),
    ("infer_step_size", "the latent Langevin step", "> 0"),
    ("infer_noise", "the latent Langevin noise", ">= 0"),
)


def check_config(m: ml_collections.ConfigDict) -> None:
    """ConfigError for settings of the ``coop`` group that cannot work."""
    settings.check_numbers(m, "coop", RULES)
    settings.check_counts(m, "coop", (("latent_dim", 1), ("gen_kernel", 1), ("steps", 1), ("sample_steps", 1),
                                      ("infer_steps", 0)))
    widths = m.gen_widths
    if not isinstance(widths, (tuple, list)) or any(isinstance(w, bool) or not isinstance(w, int) or w < 1
                                                     for w in widths):
        raise ConfigError(f"coop.gen_widths must be a tuple of channel counts >= 1 (or () for a linear generator), "
                          f"got {widths!r}.")
    if m.gen_output not in gen_models.OUTPUTS:
        raise ConfigError(f"coop.gen_output must be one of {', '.join(gen_models.OUTPUTS)}, got "
                          f"{m.gen_output!r}.")
    if m.gen_norm not in gen_models.NORMS:
        raise ConfigError(f"coop.gen_norm must be one of {', '.join(gen_models.NORMS)}, got {m.gen_norm!r}.")
    for name in ("grad_clip", "ref_sigma"):
        if m[name] is not None and not (np.isfinite(m[name]) and m[name] > 0):
            raise ConfigError(f"coop.{name} must be > 0 or None, got {m[name]!r}.")


def build(cfg: ml_collections.ConfigDict, example_shape: tuple[int, ...],
          value_range: tuple[float, float] = (0.0, 1.0)) -> Method:
    """The cooperative method for examples of ``example_shape`` in ``value_range``."""
    m = cfg.coop
    check_config(m)
    shape = tuple(example_shape)
    lo, hi = (float(v) for v in value_range)
    model = models.build_model(cfg.model)
    classes = int(getattr(model, "classes", 0))
    label = settings.sample_label(cfg, classes)
    generator = models.LatentGenerator(out_shape=shape, widths=tuple(int(w) for w in m.gen_widths),
                                       kernel=int(m.gen_kernel), output=m.gen_output, value_range=(lo, hi),
                                       norm=m.gen_norm)
    tx_e, lr_e = optim.adam(cfg.train)
    tx_g, lr_g = optim.adam_like(cfg.train, m.gen_lr, m.gen_b1, m.gen_b2)
    optimizer = optim.per_network({ENERGY: tx_e, GENERATOR: tx_g})
    kernel = samplers.langevin_kernel(m.grad_clip, (lo, hi) if m.clamp else None)
    eps, temp = samplers.decoupled(m.step_size, m.noise)
    latent = int(m.latent_dim)
    sigma_g2 = float(m.gen_sigma) ** 2
    center = 0.5 * (lo + hi)
    ref = None if m.ref_sigma is None else float(m.ref_sigma)

    def energy_of(variables, x):
        """The network's energy plus the reference; with classes, the logits minus the reference."""
        e = model.apply(variables, x)
        if ref is not None:
            d = (x.astype(jnp.float32) - center).reshape(x.shape[0], -1)
            r = 0.5 * jnp.sum(d**2, axis=1) / ref**2
            e = e - r[:, None] if classes else e + r
        return e

    def logits(params):
        return jax.tree_util.Partial(energy_of, params[ENERGY])

    def energy(params, carry=None, y=None):
        """E(x); with classes E(x, y) at labels ``y``, or E(x) = -logsumexp_y f(x)[y] when ``y`` is None."""
        del carry
        return network_energy(logits(params), classes, y)

    def code(z, y):
        """The generator's input: z, with classes [z, one_hot(y)]."""
        return jnp.concatenate([z, jax.nn.one_hot(y, classes, dtype=z.dtype)], axis=1) if classes else z

    def propose(gen_variables, label, key, n):
        """g(z) for n fresh z ~ N(0, I): the chains' start (jittable; ``n`` static). With classes g(z, y):
        y = ``label``, -1 every class in turn (a grid row each), None a class drawn uniformly."""
        if not classes:
            return generator.apply(gen_variables, jax.random.normal(key, (n, latent), jnp.float32))
        k_z, k_y = jax.random.split(key)
        y = (jax.random.randint(k_y, (n,), 0, classes) if label is None
             else samplers.asked_labels(label, n, classes))
        return generator.apply(gen_variables, code(jax.random.normal(k_z, (n, latent), jnp.float32), y))

    def init_params(key):
        k_e, k_g = jax.random.split(key)
        return {ENERGY: models.init_params(model, k_e, shape),
                GENERATOR: models.init_params(generator, k_g, (latent + classes,))}

    def chains(e, x0, key, n_steps):
        state, _ = samplers.run_chain(kernel, e, kernel.init(x0), key, temperatures=jnp.full((n_steps,), temp),
                                      step_sizes=eps)
        return state.position

    def infer_latent(gen_variables, z, x, key, y):
        """Latent Langevin on |z|^2 / 2 + |x - g(z)|^2 / (2 sigma_g^2) (``coop.infer_steps`` steps; the
        class ``y``, if any, held fixed)."""
        def neg_log_joint(zz):
            r = (x - generator.apply(gen_variables, code(zz, y))).reshape(x.shape[0], -1)
            return jnp.sum(0.5 * jnp.sum(zz**2, axis=1) + 0.5 * jnp.sum(r**2, axis=1) / sigma_g2)

        def body(i, zz):
            g = jax.grad(neg_log_joint)(zz)
            noise = jax.random.normal(jax.random.fold_in(key, i), zz.shape, zz.dtype)
            return zz - m.infer_step_size * g + m.infer_noise * noise

        return jax.lax.fori_loop(0, int(m.infer_steps), body, z)

    def loss(params, carry, batch, key, step):
        del step
        batch_x, y = split_labels(batch, classes)
        k_data, k_z, k_chain, k_infer = jax.random.split(key, 4)
        x_data = contrastive.noised(batch_x, k_data, m.data_noise)
        n = batch_x.shape[0]
        # Proposals and their revision use both networks' parameters held constant: x^ is a constant.
        const = jax.lax.stop_gradient(params)
        z = jax.random.normal(k_z, (n, latent), jnp.float32)
        proposal = generator.apply(const[GENERATOR], code(z, y))
        e_const = energy(const, y=y)  # conditional: every chain on its example's class
        revised = jax.lax.stop_gradient(chains(e_const, proposal, k_chain, int(m.steps)))
        if m.infer_steps:
            z = jax.lax.stop_gradient(infer_latent(const[GENERATOR], z, revised, k_infer, y))
        # The energy's term: data against the revised samples (gradient into the energy only).
        energy_loss, metrics = contrastive.step(energy(params, y=y), e_const, x_data, revised, energy_l2=m.energy_l2,
                                                step_size=m.step_size, grad_clip=m.grad_clip, grad_l2=m.grad_l2)
        # The generator's term: reproduce the revised samples (gradient into the generator only).
        residual = (generator.apply(params[GENERATOR], code(z, y)) - revised).reshape(n, -1)
        gen_loss = jnp.mean(0.5 * jnp.sum(residual**2, axis=1) / sigma_g2)
        metrics.update({"energy_loss": energy_loss, "gen_loss": gen_loss,
                        # RMS per pixel of g(z) - x^ (before this step's update): how far the energy's
                        # chains still move the generator's proposals, i.e. the generator's error.
                        "gen_error": jnp.sqrt(jnp.mean((proposal - revised) ** 2))})
        return energy_loss + gen_loss, (carry, metrics)

    def probe(params, carry, batch, key):
        # The energy of fresh proposals (before any Langevin step), on the scale of the loss's metrics.
        del carry
        n = split_labels(batch, classes)[0].shape[0]
        return {"energy_proposal": jnp.mean(energy(params)(propose(params[GENERATOR], None, key, n)))}

    def sampler(params, carry):
        del carry
        k = int(m.sample_steps)
        settings = {"kind": "coop", "init": "generator", "latent_dim": latent, "steps": k,
                    "step": float(m.step_size), "noise": float(m.noise), "grad_clip": m.grad_clip,
                    "clamp": bool(m.clamp), "ref_sigma": m.ref_sigma}
        s = Sampler(jax.tree_util.Partial(propose, params[GENERATOR], label),
                    (Stage("langevin", energy(params, y=label), kernel, np.full(k, float(temp), np.float32),
                           np.full(k, float(eps), np.float32)),),
                    jax.tree_util.Partial(identity), settings)
        return s._replace(pictures=lambda out_dir, key: proposals_picture(s, out_dir, key))

    return Method(
        name="coop", networks={ENERGY: model, GENERATOR: generator}, init_params=init_params,
        optimizer=optimizer, learning_rates={ENERGY: lr_e, GENERATOR: lr_g}, init_carry=lambda key: (),
        carry_specs=(), loss=loss, probe=probe, energy=energy, sampler=sampler, denoise_sigma=None,
        temperature=float(temp),
        bounds=contrastive.energy_bounds(m, "coop"),
        identity=(*models.IDENTITY_FIELDS, "coop.latent_dim", "coop.gen_widths", "coop.gen_kernel",
                  "coop.gen_output", "coop.gen_norm", "coop.ref_sigma"),
        labels=classes, classifier=logits if classes else None)


def proposals_picture(sampler: Sampler, out_dir: str | pathlib.Path, key: jax.Array,
                      n: int = PICTURE_CHAINS) -> list[str]:
    """Writes ``proposals.png``: the generator's proposals (top row) over the same chains after the
    energy's Langevin (bottom row). Images only; returns the file names written."""
    proposals, revised = pictures.stage_ends(sampler, key, n)
    if proposals.ndim != 4:
        return []
    visualize.save_image_grid(np.concatenate([proposals, revised]), pathlib.Path(out_dir) / PICTURE, ncol=n,
                              title="coop: generator proposals (top), after Langevin (bottom)")
    return [PICTURE]

