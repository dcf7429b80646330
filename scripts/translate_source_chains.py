"""CF-EBM's translation training on the digits demo's domains, written with ebmjax's functions in a
training step of your own: the chains of every step start at SOURCE images (plain digits), not at noise.

    python scripts/translate_source_chains.py --out runs/translate_source_chains
    python scripts/translate_quality.py runs/translate_source_chains/translated.npz

CF-EBM (Zhao et al. 2021) trains the target domain's EBM with Langevin chains started at source-domain
images: maximum likelihood then raises the energy wherever a chain from a source image ends up unlike
the target data, so the chain learns to carry a source image into the target domain. The CLI's ``ml``
method starts its chains at noise, the data or a buffer (``ml.init``), not at another domain's images,
so configs/translate_digits.py learns the target domain alone; this script shows what the source-started
chains add on the same data, network and Langevin: the energy of configs/translate_digits.py (conv net
8, 16, 32, LeakyReLU), 20 steps of x <- clamp(x - 5 dE/dx + 0.005 z) from a plain training digit plus
N(0, 0.01^2) noise, ml_loss against bold training digits plus N(0, 0.015^2) noise, Adam 1e-3 (betas
0.5, 0.999) with a cosine decay to 1e-5, batches of 32. ``ebmjax.translate.translate`` runs the chains
inside the jitted step; after training it translates the test digits the same way and writes
``translated.npz`` (the keys of --mode translate) and ``panels.png`` to ``--out``.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ebmjax import data, io, losses, models, samplers, translate, visualize


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="directory for translated.npz and panels.png")
    parser.add_argument("--steps", type=int, default=1500, help="training steps")
    parser.add_argument("--chain-steps", type=int, default=20, help="Langevin steps per chain")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    plain = dict(name="digits", image_size=16)
    source_train = data.load_source(plain, "train").get(np.arange(1442))
    target = data.load_source(dict(plain, name="digits_bold"), "train")
    target_train = target.get(np.arange(len(target)))

    model = models.build_model(dict(name="convnet", widths=(8, 16, 32), activation="lrelu", dtype="float32",
                                    conv="auto"))
    params = models.init_params(model, jax.random.PRNGKey(args.seed), (16, 16, 1))
    kernel = samplers.langevin_kernel(None, (0.0, 1.0))
    eps, temp = samplers.decoupled(5.0, 0.005)
    temperatures = jnp.full((args.chain_steps,), temp)
    tx = optax.adam(optax.cosine_decay_schedule(1e-3, args.steps, 1e-2), b1=0.5, b2=0.999)
    opt_state = tx.init(params)

    @jax.jit
    def train_step(params, opt_state, x_target, x_source, key):
        frozen = jax.tree_util.Partial(model.apply, jax.lax.stop_gradient(params))
        chains = translate.translate(frozen, kernel, x_source, jax.random.fold_in(key, 0), temperatures=temperatures,
                                     step_sizes=eps, noise=0.01)
        x_data = x_target + 0.015 * jax.random.normal(jax.random.fold_in(key, 1), x_target.shape)

        def loss(p):
            return losses.ml_loss(jax.tree_util.Partial(model.apply, p), x_data, chains.translated)

        value, grads = jax.value_and_grad(loss)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    for step in range(args.steps):
        i_target, i_source = rng.integers(0, len(target_train), 32), rng.integers(0, len(source_train), 32)
        params, opt_state, value = train_step(params, opt_state, target_train[i_target], source_train[i_source],
                                              jax.random.fold_in(jax.random.PRNGKey(args.seed), step))
        if (step + 1) % 250 == 0:
            print(f"step {step + 1}/{args.steps}: loss {float(value):.4g} ({time.perf_counter() - t0:.0f} s)",
                  flush=True)

    test = data.load_source(plain, "test")
    x = test.get(np.arange(len(test)))
    res = jax.jit(lambda p, x, k: translate.translate(jax.tree_util.Partial(model.apply, p), kernel, x, k,
                                                      temperatures=temperatures, step_sizes=eps, noise=0.01))(
        params, x, jax.random.PRNGKey(args.seed + 1))
    translated = np.asarray(res.translated, np.float32)
    io.savez_atomic(out / "translated.npz", source=x, translated=translated, target=target_train[:300],
                    source_labels=test.labels(np.arange(len(test))))
    visualize.save_panels([("source", x[:32]), ("translated", translated[:32])], out / "panels.png",
                          title=f"source-started chains: ink {x.mean():.2f} -> {translated.mean():.2f} "
                                f"(target {target_train.mean():.2f})")
    print(f"train + translate {time.perf_counter() - t0:.0f} s; wrote {out / 'translated.npz'} and panels.png")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
