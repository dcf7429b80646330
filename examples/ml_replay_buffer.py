"""Maximum-likelihood EBM with a replay buffer (persistent contrastive divergence), from the parts.

No ebmjax training loop, config or command line: a small network written here with Flax (an MLP on
the pixels by default, ``--net conv`` for a conv net), optax, and ebmjax's layer-1 functions
(``losses.ml_loss``, ``samplers.buffer_init`` / ``buffer_draw`` / ``buffer_update``,
``samplers.langevin_kernel``, ``samplers.decoupled``, ``samplers.run_chain``), trained on
scikit-learn's bundled 8x8 digits (``ebmjax.data.digits_source``: NHWC, in [0, 1]).

Every step draws a batch of chains from a buffer of past chain ends (5% restarted from uniform
noise), runs Langevin x <- clamp(x - step dE/dx + noise z) on the current energy, writes the ends back
and lowers the energy of the (slightly noised) data against that of the chains' ends. As it trains
it prints:

- the loss, mean E(data) - mean E(samples), which is minus the energy gap E(samples) - E(data): the
  parameter updates raise the gap, the chains lower it, and it settles near 0 once the chains' ends
  are what the energy cannot tell from data;
- E(noise) - E(test digits), on held-out digits and fresh uniform noise: the energy learning to
  prefer digits;
- the share of buffer rows the chains have moved.

At the end it continues the first buffer rows for ``--sample-steps`` more steps and writes them as
``grid.png`` (``ebmjax.visualize.save_image_grid``) and ``samples.npz`` (key ``images``, which
``python scripts/digits_quality.py <out>/samples.npz`` judges), and with ``--json`` the logged
figures.

Run it from the repository root (about 1 minute on 2 CPU cores):

    python examples/ml_replay_buffer.py --out runs/ml_replay_buffer
    python examples/ml_replay_buffer.py --net conv --steps 1000   # about 6 minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ebmjax import losses, samplers
from ebmjax.data import digits_source
from ebmjax.visualize import save_image_grid


class MLPEnergy(nn.Module):
    """(B, 8, 8, 1) -> (B,): two hidden dense layers on the pixels. Fast on a CPU."""

    width: int = 256

    @nn.compact
    def __call__(self, x):
        h = x.reshape(x.shape[0], -1)
        h = nn.leaky_relu(nn.Dense(self.width)(h), 0.2)
        h = nn.leaky_relu(nn.Dense(self.width)(h), 0.2)
        return nn.Dense(1)(h)[:, 0]


class ConvNetEnergy(nn.Module):
    """(B, 8, 8, 1) -> (B,): two stages of conv-conv-pool and a linear read-out. Learns more per step
    than the MLP, but XLA's CPU convolutions of tiny images are slow: for an accelerator."""

    width: int = 16

    @nn.compact
    def __call__(self, x):
        h = x
        for c in (self.width, 2 * self.width):
            h = nn.leaky_relu(nn.Conv(c, (3, 3))(h), 0.2)
            h = nn.leaky_relu(nn.Conv(c, (3, 3))(h), 0.2)
            h = nn.avg_pool(h, (2, 2), (2, 2))
        return nn.Dense(1)(h.reshape(h.shape[0], -1))[:, 0]


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--net", choices=("mlp", "conv"), default="mlp", help="the energy network (conv: slow on CPUs)")
    p.add_argument("--width", type=int, help="hidden units (mlp, default 256) or first channels (conv, default 16)")
    p.add_argument("--steps", type=int, default=3000, help="training steps")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--buffer", type=int, default=2000, help="persistent chains in the replay buffer")
    p.add_argument("--reinit", type=float, default=0.05, help="share of drawn chains restarted from noise")
    p.add_argument("--chain-steps", type=int, default=20, help="Langevin steps per training step")
    p.add_argument("--step", type=float, default=5.0, help="Langevin step: x - step dE/dx + noise z")
    p.add_argument("--noise", type=float, default=0.005, help="Langevin noise std")
    p.add_argument("--data-noise", type=float, default=0.015, help="std of noise added to the data")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--sample-steps", type=int, default=200, help="Langevin steps continuing buffer rows at the end")
    p.add_argument("--n-samples", type=int, default=300, help="buffer rows continued and saved")
    p.add_argument("--log-every", type=int, default=250)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/ml_replay_buffer", help="folder for grid.png and samples.npz")
    p.add_argument("--json", help="also write the logged figures to this JSON file")
    args = p.parse_args(argv)

    train, test = digits_source("train"), digits_source("test")
    data = jnp.asarray(train.get(np.arange(len(train))))  # (1442, 8, 8, 1) in [0, 1]
    held_out = jnp.asarray(test.get(np.arange(len(test))))  # (355, 8, 8, 1), never trained on

    key = jax.random.PRNGKey(args.seed)
    k_init, k_buf, k_noise, k_sample, key = jax.random.split(key, 5)
    model = MLPEnergy(args.width or 256) if args.net == "mlp" else ConvNetEnergy(args.width or 16)
    params = model.init(k_init, data[:1])
    opt = optax.adam(args.lr, b1=0.5, b2=0.999)
    opt_state = opt.init(params)
    buffer = samplers.buffer_init(jax.random.uniform(k_buf, (args.buffer,) + data.shape[1:]))
    kernel = samplers.langevin_kernel(bounds=(0.0, 1.0))  # clamped to the data range after every step
    eps, temp = samplers.decoupled(args.step, args.noise)  # (step, noise) as the kernels' (eps, T)
    noise_probe = jax.random.uniform(k_noise, (256,) + data.shape[1:])

    def chains(params, x0, key, n_steps):
        energy = lambda y: model.apply(params, y)  # noqa: E731
        state, _ = samplers.run_chain(kernel, energy, kernel.init(x0, energy), key,
                                      temperatures=jnp.full(n_steps, temp), step_sizes=eps)
        return state.position

    @jax.jit
    def train_step(params, opt_state, buffer, key):
        k_batch, k_noise, k_draw, k_fresh, k_chain = jax.random.split(key, 5)
        x = data[jax.random.randint(k_batch, (args.batch,), 0, len(data))]
        x = x + args.data_noise * jax.random.normal(k_noise, x.shape)
        x0, idx, _ = samplers.buffer_draw(k_draw, buffer, args.batch, reinit_prob=args.reinit,
                                          fresh=jax.random.uniform(k_fresh, x.shape))
        x_model = chains(params, x0, k_chain, args.chain_steps)

        def loss_fn(p):  # mean E(data) - mean E(x_model); x_model carries no gradient into p
            return losses.ml_loss(lambda y: model.apply(p, y), x, x_model)

        loss, grads = jax.value_and_grad(loss_fn)(params)
        metrics = {"loss": loss, "energy_data": model.apply(params, x).mean(),
                   "energy_model": model.apply(params, x_model).mean()}
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, samplers.buffer_update(buffer, idx, x_model), metrics

    @jax.jit
    def probe(params):  # mean energies of held-out digits and of fresh uniform noise
        return model.apply(params, held_out).mean(), model.apply(params, noise_probe).mean()

    buffer0 = np.asarray(buffer)
    log, window, start = [], [], time.perf_counter()
    for step in range(args.steps + 1):
        if step:
            params, opt_state, buffer, metrics = train_step(params, opt_state, buffer, jax.random.fold_in(key, step))
            window.append(metrics)
        if step % args.log_every and step != args.steps:
            continue
        e_test, e_noise = (float(v) for v in probe(params))
        row = {"step": step, "energy_test": e_test, "energy_noise": e_noise, "noise_minus_test": e_noise - e_test,
               "buffer_moved": float(np.mean(np.any(np.asarray(buffer) != buffer0, axis=(1, 2, 3))))}
        line = ""
        if window:
            row.update({k: float(np.mean([m[k] for m in jax.device_get(window)])) for k in window[0]})
            row["energy_gap"] = row["energy_model"] - row["energy_data"]
            line = f"loss {row['loss']:+.4f}  E(samples)-E(data) {row['energy_gap']:+.4f}  "
            window = []
        log.append(row)
        print(f"step {step:5d}  {line}E(noise)-E(test digits) {row['noise_minus_test']:+.4f}  "
              f"buffer rows moved {row['buffer_moved']:.2f}  {time.perf_counter() - start:5.1f} s", flush=True)
        if not all(np.isfinite(v) for v in row.values()):
            raise SystemExit("not finite: lower --lr or --step")

    # Samples: continue the first n_samples buffer rows for a few more steps (long-run chains of the
    # buffer look better than the rows of any one training step, some of which just restarted).
    samples = np.asarray(jax.jit(chains, static_argnums=3)(params, buffer[: args.n_samples], k_sample,
                                                            args.sample_steps))
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    save_image_grid(samples, out / "grid.png", title=f"{args.steps} steps, buffer rows + {args.sample_steps}")
    np.savez(out / "samples.npz", images=samples)
    print(f"wrote {out / 'grid.png'} and {out / 'samples.npz'} ({len(samples)} samples) "
          f"in {time.perf_counter() - start:.1f} s")
    summary = {"log": log, "buffer_shape": list(buffer.shape), "buffer_range": [float(buffer.min()), float(buffer.max())],
               "samples_shape": list(samples.shape)}
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(summary, indent=1))
    return summary


if __name__ == "__main__":
    main()
