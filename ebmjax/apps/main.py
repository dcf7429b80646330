"""Command line: ``python -m ebmjax.main --config configs/<name>.py [--workdir DIR] [--mode MODE]``.

Config fields can be overridden with ``--config.<group>.<field>=<value>``. Modes:
  train   (default) train to ``train.steps``, resuming from the workdir's latest checkpoint, then sample
          (when ``sample.n`` > 0) and translate (when ``translate.after_train``)
  sample  load the latest checkpoint and write ``sample.n`` samples
  inpaint load the latest checkpoint, mask ``restore.n`` test images and restore them (``<workdir>/inpaint/``)
  denoise load the latest checkpoint, add noise to ``restore.n`` test images and denoise them
          by the single jump and by Langevin from the noisy image (``<workdir>/denoise/``)
  translate load the latest checkpoint and translate ``translate.n`` source-domain images into the
          domain the model learned: Langevin chains from the images themselves (``<workdir>/translate/``)
  eval    load the latest checkpoint and run ``eval.metrics`` (FID/KID/IS, AIS bounds, OOD AUROC,
          neighbours, mode coverage, a classifier's accuracy and calibration) into
          ``<workdir>/eval/report.json`` and pictures
  compose load the latest checkpoint and sample this model times the models trained in
          ``compose.workdirs`` (a product of experts, e.g. a class of digits times a bold-digit
          model) into ``<workdir>/compose/``
Problems the user can fix end with a one-line message and exit code 2 (130 when interrupted).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import pathlib
import sys

from ebmjax.errors import ConfigError, EbmjaxError, Interrupted


def _write_samples(cfg, workdir: pathlib.Path, progress: bool, state, method, source) -> None:
    from ebmjax.apps import sample
    from ebmjax.train.state import inference_params

    if method.source_data is not None:
        logging.getLogger(__name__).warning(
            "This model was trained with chains started at images of another domain (%s; e.g. ml.init = 'source'): "
            "it translates (--mode translate); its chains from noise are not samples of %s.",
            method.source_data["name"], cfg.data.name)
    sample.sample_to_workdir(cfg, method.sampler(inference_params(state, cfg.sample.weights), state.carry), source, workdir,
                             progress=progress)


def _sample_trained(cfg, workdir: pathlib.Path, progress: bool, state, method, source, inputs) -> None:
    _write_samples(cfg, workdir, progress, state, method, source)


def _translate_trained(cfg, workdir: pathlib.Path, progress: bool, state, method, source, inputs) -> None:
    from ebmjax.apps import translate
    from ebmjax.train.state import inference_params

    translate.translate_to_workdir(cfg, method.sampler(inference_params(state, cfg.sample.weights), state.carry), workdir,
                                   sources=inputs, progress=progress, step=int(state.step))


def _translation_inputs(cfg):
    from ebmjax.apps import translate

    return translate.translation_sources(cfg)


# What --mode train does with the trained state, in order: (what, the mode that redoes it, whether the
# config asks for it, its inputs read and checked BEFORE training so that bad settings cost no training
# time (None: nothing to read), the work).
AFTER_TRAIN = (
    ("sampling", "sample", lambda cfg: cfg.sample.n > 0, None, _sample_trained),
    ("translation", "translate", lambda cfg: bool(cfg.translate.after_train), _translation_inputs, _translate_trained),
)


def _train(cfg, workdir: pathlib.Path, progress: bool) -> None:
    from ebmjax.train import loop

    todo = [(what, mode, (read(cfg) if read else None), work)
            for what, mode, asked, read, work in AFTER_TRAIN if asked(cfg)]
    state, method, source = loop.train(cfg, workdir, progress=progress)
    for what, mode, inputs, work in todo:
        try:
            work(cfg, workdir, progress, state, method, source, inputs)
        except ConfigError as e:  # e.g. a batch of chains too large for memory: training itself is safe
            raise ConfigError(f"Training finished (checkpoints in {workdir / 'checkpoints'}), but {what} did "
                              f"not start: {e} Then run --mode {mode}.") from None


def _sample(cfg, workdir: pathlib.Path, progress: bool) -> None:
    from ebmjax.train import loop

    state, method, source = loop.load_trained(cfg, workdir, step=loop.checkpoint_step(cfg, workdir))
    _write_samples(cfg, workdir, progress, state, method, source)


def _restore(which: str):
    def mode(cfg, workdir: pathlib.Path, progress: bool) -> None:
        from ebmjax.apps import restore
        from ebmjax.train import loop
        from ebmjax.train.state import inference_params

        images = restore.restoration_source(cfg)  # bad settings fail before the checkpoint is read
        state, method, _ = loop.load_trained(cfg, workdir, step=loop.checkpoint_step(cfg, workdir))
        sampler = method.sampler(inference_params(state, cfg.sample.weights), state.carry)
        if which == "inpaint":
            restore.inpaint_to_workdir(cfg, sampler, workdir, sigma0=method.denoise_sigma, source=images,
                                       progress=progress, step=int(state.step))
        else:
            restore.denoise_to_workdir(cfg, sampler, workdir, sigma0=method.denoise_sigma,
                                       model_temperature=method.temperature, source=images, progress=progress,
                                       step=int(state.step))

    return mode


def _translate(cfg, workdir: pathlib.Path, progress: bool) -> None:
    from ebmjax.train import loop

    inputs = _translation_inputs(cfg)  # bad settings or images fail before the checkpoint is read
    state, method, source = loop.load_trained(cfg, workdir, step=loop.checkpoint_step(cfg, workdir))
    _translate_trained(cfg, workdir, progress, state, method, source, inputs)


def _eval(cfg, workdir: pathlib.Path, progress: bool) -> None:
    from ebmjax.apps import evaluate
    from ebmjax.train import loop

    evaluate.check_config(cfg)  # a bad metric or OOD set name fails before the checkpoint is read
    if cfg.eval.checkpoints == "all":  # score every checkpoint, then evaluate the best one
        best = evaluate.scan_checkpoints(cfg, workdir, progress=progress)
        step = int(best["best_step"])
    else:
        step = loop.checkpoint_step(cfg, workdir)
    state, method, source = loop.load_trained(cfg, workdir, step=step)
    evaluate.evaluate_to_workdir(cfg, method, state, source, workdir, progress=progress)


def _compose(cfg, workdir: pathlib.Path, progress: bool) -> None:
    from ebmjax.apps import compose

    compose.compose_to_workdir(cfg, workdir, progress=progress)


# Each mode is fn(cfg, workdir, progress); the work lives in the other applications and layer 3, this
# file only dispatches.
MODES = {
    "train": _train,
    "sample": _sample,
    "inpaint": _restore("inpaint"),
    "denoise": _restore("denoise"),
    "translate": _translate,
    "eval": _eval,
    "compose": _compose,
}


def check_workdir(workdir: pathlib.Path) -> None:
    """ConfigError, before anything is written, when ``workdir`` cannot be the run's directory: it is
    a file, it lies under a file, or the directory it would be made in is not writable."""
    if workdir.exists() and not workdir.is_dir():
        raise ConfigError(f"--workdir {workdir} is a file, not a directory. Pass a directory (it is created if "
                          "it does not exist), e.g. --workdir runs/<name>.")
    for parent in workdir.absolute().parents:
        if not parent.exists():
            continue
        if not parent.is_dir():
            raise ConfigError(f"--workdir {workdir} cannot be created: {parent} is a file, not a directory. Pass "
                              "a directory path, e.g. --workdir runs/<name>.")
        break
    existing = workdir if workdir.exists() else next(p for p in workdir.absolute().parents if p.exists())
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"--workdir {workdir}: {existing} is not writable. Pass a directory you can write to.")


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[tuple[str, str]]]:
    parser = argparse.ArgumentParser(
        prog="python -m ebmjax.main", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="config file, e.g. configs/mdsm_digits.py, or a workdir's config.json")
    parser.add_argument("--workdir", default=None, help="output directory (default: runs/<config name>)")
    parser.add_argument("--mode", default="train", choices=sorted(MODES))
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return parse_with_overrides(parser, argv)


def parse_with_overrides(parser: argparse.ArgumentParser,
                         argv: list[str]) -> tuple[argparse.Namespace, list[tuple[str, str]]]:
    """Parses ``argv`` with ``parser``, collecting ``--config.a.b=value`` (or ``--config.a.b value``)
    as (dotted key, text) overrides; any other unknown argument is a usage error."""
    args, rest = parser.parse_known_args(list(argv))
    overrides, unknown = [], []
    i = 0
    while i < len(rest):
        arg = rest[i]
        if arg.startswith("--config."):
            key, eq, value = arg[len("--config."):].partition("=")
            if not eq:
                if i + 1 >= len(rest):
                    parser.error(f"{arg} needs a value: {arg}=VALUE")
                value, i = rest[i + 1], i + 1
            overrides.append((key, value))
        else:
            unknown.append(arg)
        i += 1
    if unknown:
        parser.error(f"unrecognised arguments: {' '.join(unknown)} "
                     "(config fields are set with --config.<group>.<field>=<value>)")
    return args, overrides


def run(argv: list[str]) -> int:
    """Runs the command line on ``argv``; returns the exit code."""
    args, overrides = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("absl").setLevel(logging.WARNING)  # Orbax logs every save at INFO
    logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)  # "no TPU" notices on CPU machines
    from ebmjax.config import load_config

    workdir = pathlib.Path(args.workdir or pathlib.Path("runs") / pathlib.Path(args.config).stem)
    try:
        cfg = load_config(args.config, overrides)
        check_workdir(workdir)
        from ebmjax import io, methods, parallel

        # Both must run before anything touches devices (see configs' dist.* fields): several processes
        # (multi-host) keep one CPU device each; one process splits its batches over its CPU cores.
        if not parallel.initialize_distributed(cfg.get("dist")):
            parallel.use_cpu_cores(cfg.dist.cpu_devices, methods.split_rows(cfg))
            main_process = True  # one process; asking JAX would start its devices before use_cpu_cores
        else:
            main_process = parallel.is_main_process()
        # Process 0 holds the workdir for the run's processes; a second run there stops here.
        with io.WorkdirLock(workdir, f"--mode {args.mode}") if main_process else contextlib.nullcontext():
            MODES[args.mode](cfg, workdir, not args.no_progress)
    except Interrupted as e:
        print(f"ebmjax: {e}", file=sys.stderr)
        return 130
    except EbmjaxError as e:
        print(f"ebmjax: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:
        from ebmjax import io

        reason = io.disk_full(e)
        if reason is None:
            raise
        print(f"ebmjax: error: {disk_full_message(workdir, args.mode, reason)}", file=sys.stderr)
        return 2
    return 0


def disk_full_message(workdir: pathlib.Path, mode: str, reason: str) -> str:
    """What a user must know when a write failed for lack of space: what failed, what survived
    (checkpoints are written to a temporary folder and renamed, other files to a temporary file and
    renamed, so every finished one is whole), and how to go on."""
    from ebmjax.apps.sample import finished_shards
    from ebmjax.train.checkpoint import complete_steps

    ckpt_dir = workdir / "checkpoints"
    steps = complete_steps(ckpt_dir)
    kept = (f"The checkpoint at step {steps[-1]} in {ckpt_dir} is whole" if steps
            else "No checkpoint had been completed in this workdir")
    shards = finished_shards(workdir)
    if shards:
        where = {p.parent.parent for p in shards}
        kept += (f", and so are the {len(shards)} finished sample shards in "
                 f"{where.pop() if len(where) == 1 else workdir}")
    return (f"The disk is full ({reason}) while --mode {mode} was writing to {workdir}. {kept}. Free space on "
            f"the disk that holds {workdir} (df -h {workdir} shows what is left) and run the same command again: "
            "it goes on from there.")


def main() -> None:
    sys.exit(run(sys.argv[1:]))

