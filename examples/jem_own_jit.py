"""Class-conditional energies, JEM and composition in your own ``jit``, from the parts.

No ebmjax training loop, config or command line: an MLP classifier written here with Flax, optax, and
ebmjax's pure functions, trained on scikit-learn's bundled 8x8 digits:

- ``samplers.marginal_energy(f)``: E(x) = -logsumexp_y f(x)[y], the classifier's generative half;
- ``samplers.class_energy(f, y)``: E(x, y) = -f(x)[y] (y a class, one per example, or -1 for one
  grid row per class);
- ``losses.ml_loss`` with persistent chains (``samplers.buffer_*``, ``samplers.langevin_kernel``):
  ``--objective conditional`` (the default) lowers E(x_i, y_i) of the data against E(x_j, y_j) of
  chains that each run on their own class (the buffer keeps a label per row), as IGEBM's conditional
  models; ``--objective jem`` adds the cross-entropy of p(y|x) to maximum likelihood on E(x) (JEM);
- ``samplers.sum_energies`` and ``samplers.tempered``: composition. "A bold 3" is class 3's energy
  plus an energy of ink, -mean(x) (``--ink`` weighs it): the product of p(x | 3) and exp(ink
  weight x mean pixel).

Either way the network is a classifier, p(y|x) = softmax f(x). It prints the test accuracy and
expected calibration error (``evaluation.calibration``) as it trains, then writes ``classes.png`` (one
row per class, continued from buffer rows of that class), ``bold3.png`` (class 3 alone beside class
3 times the ink expert) and with ``--json`` the figures.

    python examples/jem_own_jit.py --out runs/jem_own_jit      # about 1 minute on 2 CPU cores
    python examples/jem_own_jit.py --objective jem
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
from ebmjax.data import digits_source, judge_for
from ebmjax.evaluation import calibration
from ebmjax.visualize import save_image_grid, save_panels


class MLPClassifier(nn.Module):
    """(B, 8, 8, 1) -> logits (B, 10): two hidden layers with a smooth activation."""

    width: int = 256

    @nn.compact
    def __call__(self, x):
        h = x.reshape(x.shape[0], -1)
        h = nn.swish(nn.Dense(self.width)(h))
        h = nn.swish(nn.Dense(self.width)(h))
        return nn.Dense(10)(h)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--objective", choices=("conditional", "jem"), default="conditional")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--buffer", type=int, default=2000)
    p.add_argument("--chain-steps", type=int, default=20)
    p.add_argument("--step", type=float, default=5.0, help="Langevin: x - step dE/dx + noise z")
    p.add_argument("--noise", type=float, default=0.005)
    p.add_argument("--energy-l2", type=float, default=1.0, help="IGEBM's penalty on the energies' size")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--sample-steps", type=int, default=100, help="Langevin steps of the class-conditional chains")
    p.add_argument("--ink", type=float, default=0.05, help="weight of the ink expert in 'a bold 3'")
    p.add_argument("--log-every", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/jem_own_jit")
    p.add_argument("--json")
    args = p.parse_args(argv)

    train, test = digits_source("train"), digits_source("test")
    x_train = jnp.asarray(train.get(np.arange(len(train))))
    y_train = jnp.asarray(train.labels(np.arange(len(train))), jnp.int32)
    x_test, y_test = test.get(np.arange(len(test))), test.labels(np.arange(len(test)))

    key = jax.random.key(args.seed)
    k_init, k_buf, k_sample, key = jax.random.split(key, 4)
    model = MLPClassifier()
    params = model.init(k_init, x_train[:1])
    opt = optax.adam(args.lr, b1=0.5, b2=0.999)
    opt_state = opt.init(params)
    buffer = samplers.buffer_init(jax.random.uniform(k_buf, (args.buffer, 8, 8, 1)))
    buffer_labels = jnp.arange(args.buffer, dtype=jnp.int32) % 10  # the class each row's chain runs on
    kernel = samplers.langevin_kernel(bounds=(0.0, 1.0))
    eps, temp = samplers.decoupled(args.step, args.noise)

    def logits_fn(params):
        return lambda x: model.apply(params, x)

    def run(energy, x0, key, n_steps):
        state, _ = samplers.run_chain(kernel, energy, kernel.init(x0, energy), key,
                                      temperatures=jnp.full(n_steps, temp), step_sizes=eps)
        return state.position

    @jax.jit
    def train_step(params, opt_state, buffer, buffer_labels, key):
        k_batch, k_draw, k_fresh, k_chain = jax.random.split(key, 4)
        i = jax.random.randint(k_batch, (args.batch,), 0, len(x_train))
        x, y = x_train[i], y_train[i]
        x0, idx, restarted = samplers.buffer_draw(k_draw, buffer, args.batch, reinit_prob=0.05,
                                                  fresh=jax.random.uniform(k_fresh, x.shape))
        if args.objective == "conditional":  # each chain on its row's class; restarted rows take the batch's
            y_chain = jnp.where(restarted, y, buffer_labels[idx])
            x_model = run(samplers.class_energy(logits_fn(params), y_chain), x0, k_chain, args.chain_steps)
        else:  # JEM: chains on E(x)
            y_chain = buffer_labels[idx]
            x_model = run(samplers.marginal_energy(logits_fn(params)), x0, k_chain, args.chain_steps)

        def loss_fn(p):
            f = logits_fn(p)
            ce = optax.softmax_cross_entropy_with_integer_labels(f(x), y).mean()
            if args.objective == "conditional":
                ml = losses.ml_loss(samplers.class_energy(f, y), x, x_model, energy_l2=args.energy_l2,
                                    model_energy_fn=samplers.class_energy(f, y_chain))
                return ml, ce
            return ce + losses.ml_loss(samplers.marginal_energy(f), x, x_model, energy_l2=args.energy_l2), ce

        (loss, ce), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state, samplers.buffer_update(buffer, idx, x_model),
                buffer_labels.at[idx].set(y_chain), ce)

    @jax.jit
    def probs(params, x):
        return jax.nn.softmax(model.apply(params, x), axis=-1)

    log, start = [], time.perf_counter()
    for step in range(1, args.steps + 1):
        params, opt_state, buffer, buffer_labels, ce = train_step(params, opt_state, buffer, buffer_labels,
                                                                  jax.random.fold_in(key, step))
        if step % args.log_every == 0 or step == args.steps:
            pr = np.asarray(probs(params, x_test))
            row = {"step": step, "cross_entropy": float(ce), "test_accuracy": float(np.mean(pr.argmax(1) == y_test)),
                   "test_ece": calibration.expected_calibration_error(pr, y_test)}
            log.append(row)
            print(f"step {step:5d}  cross-entropy {row['cross_entropy']:.3f}  test accuracy {row['test_accuracy']:.3f}  "
                  f"ECE {row['test_ece']:.3f}  {time.perf_counter() - start:5.1f} s", flush=True)

    # Class-conditional samples, one row of ten per class (E(x, y) with y = -1), continued from buffer
    # rows whose chains ran on that class (any rows with --objective jem, whose chains ran on E(x)).
    sample = jax.jit(run, static_argnums=3)
    f = logits_fn(params)
    wanted = np.repeat(np.arange(10), 10)
    labels_now = np.asarray(buffer_labels)
    starts = np.stack([np.flatnonzero(labels_now == c)[:10] for c in range(10)]).reshape(-1)
    rows = np.asarray(sample(samplers.class_energy(f, -1), buffer[starts], k_sample, args.sample_steps))
    # "A bold 3": class 3 times an ink expert exp(ink * mean(x)), i.e. E(x, 3) - ink * mean(x).
    three = samplers.class_energy(f, 3)
    ink = lambda x: -jnp.mean(x, axis=(1, 2, 3))  # noqa: E731
    start3 = buffer[np.flatnonzero(labels_now == 3)[:20]]
    plain3 = np.asarray(sample(three, start3, k_sample, args.sample_steps))
    bold3 = np.asarray(sample(samplers.sum_energies(three, ink, weights=(1.0, args.ink)), start3, k_sample,
                              args.sample_steps))
    # An independent judge of the samples: the digits classifier ebmjax's reports use (not this network).
    judge = judge_for({"name": "digits"}, 0, (8, 8, 1))
    pr_rows, pr_plain, pr_bold = (judge.probabilities(a) for a in (rows, plain3, bold3))
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    save_image_grid(rows, out / "classes.png", title=f"E(x, y), one row per class ({args.objective})")
    save_panels([("class 3", plain3), (f"class 3 x ink^{args.ink:g}", bold3)], out / "bold3.png")
    summary = {
        "log": log,
        "rows_judged_as_their_class": float(np.mean(pr_rows.argmax(1) == wanted)),
        "class3_share": {"plain": float(np.mean(pr_plain.argmax(1) == 3)), "bold": float(np.mean(pr_bold.argmax(1) == 3))},
        "mean_ink": {"plain": float(plain3.mean()), "bold": float(bold3.mean()), "test_digits": float(x_test.mean())},
    }
    print(f"the digits judge reads {summary['rows_judged_as_their_class']:.2f} of the rows' samples as their class; "
          f"class 3: ink {summary['mean_ink']['plain']:.3f} alone (read as 3: {summary['class3_share']['plain']:.2f}), "
          f"{summary['mean_ink']['bold']:.3f} times the ink expert (read as 3: {summary['class3_share']['bold']:.2f}); "
          f"wrote {out}/classes.png, bold3.png")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(summary, indent=1))
    return summary


if __name__ == "__main__":
    main()
