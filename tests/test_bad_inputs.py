"""Bad input and divergence: each is one clear message (exit code 2, no traceback) and nothing in the
workdir is overwritten. (Unknown keys in other groups and an unprepared tfds dataset: tests/test_cli.py.)"""

import hashlib
import json
import logging
import pathlib
import shutil

import numpy as np
import pytest

import ebmjax.data
from ebmjax import main
from ebmjax.config import load_config
from ebmjax.data.source import ArraySource
from ebmjax.train import loop
from scale_helpers import DIGITS, TINY, bitwise_equal, final_state, persistent_compile_cache


@pytest.fixture(scope="module", autouse=True)
def compile_once(tmp_path_factory):
    with persistent_compile_cache(tmp_path_factory.mktemp("jax_cache")):
        yield


def run(workdir, *extra) -> int:
    return main.run(["--config", DIGITS, "--workdir", str(workdir), *TINY, *extra])


def snapshot(workdir: pathlib.Path) -> dict[str, str]:
    """Every file under ``workdir`` and a hash of its bytes."""
    return {str(p.relative_to(workdir)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(workdir.rglob("*")) if p.is_file()}


def final_params(workdir, steps: int):
    state = final_state(workdir, TINY + [f"--config.train.steps={steps}"])
    assert int(state.step) == steps
    return state


def assert_clear_error(capsys, *fragments):
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    assert err.startswith("ebmjax: error: "), err
    for f in fragments:
        assert f in err, (f, err)
    return err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A workdir trained for 20 steps, with checkpoints at 10 and 20."""
    wd = tmp_path_factory.mktemp("bad_inputs") / "trained"
    assert run(wd, "--config.train.steps=20") == 0
    return wd


def copy_of(trained, tmp_path) -> pathlib.Path:
    wd = tmp_path / "run"
    shutil.copytree(trained, wd)
    return wd


def test_dist_settings_are_checked(tmp_path, capsys):
    assert run(tmp_path, "--config.dist.initialise=yes") == 2
    assert_clear_error(capsys, 'Did you mean "dist.initialize"')
    assert run(tmp_path, "--config.dist.initialize=maybe") == 2
    assert_clear_error(capsys, "dist.initialize must be one of auto, yes, no")
    assert run(tmp_path, "--config.dist.coordinator_address=localhost:1234") == 2
    assert_clear_error(capsys, "set --config.dist.num_processes and --config.dist.process_id")
    assert not any(tmp_path.iterdir())


def test_image_size_that_does_not_fit_the_model(tmp_path, capsys):
    # Padding the 8x8 digits by 1 gives 10x10; the ResNet halves the size three times.
    assert run(tmp_path / "run", "--config.data.pad=1", "--config.train.steps=5") == 2
    assert_clear_error(capsys, "shape (10, 10, 1)", "data.pad=1", "multiples of 8")
    assert not (tmp_path / "run").exists()


def test_global_batch_larger_than_the_dataset(tmp_path, capsys):
    assert run(tmp_path / "run", "--config.train.batch_size=2048", "--config.train.steps=5") == 2
    assert_clear_error(capsys, "train.batch_size = 2048 is larger than the dataset 'digits' (1442 examples)")
    assert not (tmp_path / "run").exists()


def test_channels_that_do_not_fit_the_checkpoint(trained, tmp_path, capsys, monkeypatch):
    """The same data name, but three channels: the saved parameters' shapes give it away."""
    wd = copy_of(trained, tmp_path)
    before = snapshot(wd)
    real = ebmjax.data.load_source

    def rgb_digits(data_cfg, split):
        src = real(data_cfg, split)
        rgb = np.repeat(src.get(np.arange(len(src))), 3, axis=-1)
        return ArraySource(src.name, rgb, src.labels(np.arange(len(src))), split=split)

    monkeypatch.setattr(ebmjax.data, "load_source", rgb_digits)
    assert run(wd, "--config.train.steps=30") == 2
    assert_clear_error(capsys, "holds parameters of another shape", "(3, 3, 1, 4) in the checkpoint, (3, 3, 3, 4) now",
                       "Use a new --workdir")
    assert snapshot(wd) == before


def test_workdir_of_another_experiment(trained, tmp_path, capsys):
    wd = copy_of(trained, tmp_path)
    before = snapshot(wd)
    assert run(wd, "--config.train.steps=30", "--config.model.width=8") == 2
    assert_clear_error(capsys, "holds checkpoints of another experiment", "model.width: 4 in the workdir, 8 now")
    assert run(wd, "--mode", "sample", "--config.data.pad=4") == 2
    assert_clear_error(capsys, "data.pad: 0 in the workdir, 4 now")
    assert snapshot(wd) == before


def test_corrupt_latest_checkpoint_falls_back_and_resumes_exactly(trained, tmp_path, caplog):
    wd = copy_of(trained, tmp_path)
    for f in (wd / "checkpoints" / "20").rglob("*"):
        if f.is_file() and f.parent.name == "d":  # the array data files
            f.write_bytes(b"not a checkpoint")
    with caplog.at_level(logging.WARNING):
        assert run(wd, "--config.train.steps=20") == 0
    log = caplog.text
    assert "Checkpoint at step 20" in log and "cannot be read" in log
    assert "Resuming from the checkpoint at step 10 instead" in log
    assert (wd / "checkpoints_unreadable" / "20").is_dir()  # kept for inspection, not deleted
    # Steps 10..20 were redone from the checkpoint at 10 and give the very same parameters.
    assert bitwise_equal(final_params(trained, 20), final_params(wd, 20))
    losses = lambda w: [(r["step"], r["loss"]) for r in map(json.loads, (w / "metrics.jsonl").read_text().splitlines())]  # noqa: E731
    assert losses(wd) == losses(trained)


def test_non_finite_values_in_the_data(tmp_path, capsys, monkeypatch):
    real = ebmjax.data.load_source
    n_train = len(real(load_config(DIGITS).data, "train"))
    bad = int(loop.batch_indices(0, 2, n_train, 8)[3])  # an example of the batch of step 2

    def with_nan(data_cfg, split):
        src = real(data_cfg, split)
        x = src.get(np.arange(len(src)))
        x[bad, 4, 4, 0] = np.nan
        return ArraySource(src.name, x, src.labels(np.arange(len(src))), split=split)

    monkeypatch.setattr(ebmjax.data, "load_source", with_nan)
    assert run(tmp_path, "--config.train.steps=20") == 2
    assert_clear_error(capsys, "non-finite values", "batch of step 2", f"examples [{bad}]", "Clean the data")
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()]


def test_persistent_divergence_names_the_last_good_checkpoint(trained, tmp_path, capsys):
    wd = copy_of(trained, tmp_path)
    # lr 1e6: the first update blows the parameters up; every later loss is non-finite and skipped.
    assert run(wd, "--config.train.steps=40", "--config.train.lr=1e6", "--config.train.checkpoint_every=1") == 2
    assert_clear_error(capsys, "Training diverged", "since step 21", "The last good checkpoint is step 20",
                       "Checkpoints [21]", "Lower train.lr")
    records = [json.loads(line) for line in (wd / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["skipped"], r["skipped_in_window"]) for r in records[2:]] == [(30, 9, 9), (40, 19, 10)]
    assert sorted(int(p.name) for p in (wd / "checkpoints").iterdir() if p.name.isdigit()) == [10, 20]
    assert (wd / "checkpoints_diverged" / "21").is_dir()
    # What a rerun resumes from: the good state of step 20, as trained.
    assert bitwise_equal(final_params(wd, 20), final_params(trained, 20))


def test_a_non_finite_gradient_skips_the_update_and_counts_it():
    import jax.numpy as jnp
    import optax

    from ebmjax.train.state import apply_if_finite, create

    opt = optax.adam(0.1)
    state = create({"w": jnp.ones(3)}, opt, carry={"buffer": jnp.zeros(2)})
    good = apply_if_finite(state, jnp.float32(1.0), {"w": jnp.ones(3)}, {"buffer": jnp.ones(2)}, opt)
    assert int(good.step) == 1 and int(good.skipped) == 0 and not np.allclose(good.params["w"], 1.0)
    assert np.allclose(good.carry["buffer"], 1.0)  # the method's new carried state is taken with the update
    for loss, grad, carry in ((jnp.float32(np.nan), jnp.ones(3), jnp.full(2, 2.0)),
                              (jnp.float32(1.0), jnp.array([1.0, np.inf, 0.0]), jnp.full(2, 2.0)),
                              (jnp.float32(1.0), jnp.ones(3), jnp.array([2.0, np.nan]))):
        bad = apply_if_finite(good, loss, {"w": grad}, {"buffer": carry}, opt)
        assert int(bad.step) == 2 and int(bad.skipped) == 1
        assert bitwise_equal((bad.params, bad.opt_state, bad.carry), (good.params, good.opt_state, good.carry))
