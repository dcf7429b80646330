"""Config files and --config overrides: the schema, the value syntax, and the ranges of numbers
(issue 11, cases 2 and 5). No JAX work: these run in milliseconds."""

import math
import pathlib

import pytest

from ebmjax import config
from ebmjax.config import ConfigError, load_config

ROOT = pathlib.Path(__file__).resolve().parents[1]
DIGITS = str(ROOT / "configs" / "mdsm_digits.py")


@pytest.mark.parametrize("path", sorted(str(p) for p in (ROOT / "configs").glob("*.py")))
def test_every_shipped_config_passes_the_checks(path):
    cfg = load_config(path)
    config.check_schema(cfg)
    assert cfg.sample.seed is None


@pytest.mark.parametrize("text,value", [
    ("fid", ("fid",)), ("fid,ood", ("fid", "ood")), ("fid, ood,", ("fid", "ood")), ('("fid",)', ("fid",)),
    ('["fid", "ais"]', ("fid", "ais")), ("(fid, ood)", ("fid", "ood")), ('"fid"', ("fid",)),
])
def test_tuples_of_words(text, value):
    assert load_config(DIGITS, [("eval.metrics", text)]).eval.metrics == value


@pytest.mark.parametrize("text,value", [("64", (64,)), ("64,32", (64, 32)), ("(64, 32)", (64, 32)), ("[8]", (8,))])
def test_tuples_of_ints(text, value):
    assert load_config(DIGITS, [("model.hidden", text)]).model.hidden == value


def test_a_tuple_of_the_wrong_items_shows_the_syntax_that_works():
    with pytest.raises(ConfigError) as e:
        load_config(DIGITS, [("model.hidden", "wide,deep")])
    assert str(e.value) == ("--config.model.hidden=wide,deep: expected a tuple of int, e.g. "
                            "--config.model.hidden=128,128 or --config.model.hidden='(128, 128)'.")


@pytest.mark.parametrize("key,text,value", [
    ("train.lr", "1e-3", 1e-3), ("train.lr", "2", 2.0), ("train.steps", "1e4", 10_000),
    ("sample.seed", "3", 3), ("sample.seed", "none", None), ("sample.merge_max_gb", "inf", math.inf),
    ("data.image_size", "32", 32), ("mdsm.denoise", "false", False),
])
def test_values(key, text, value):
    group, field = key.split(".")
    assert load_config(DIGITS, [(key, text)])[group][field] == value


@pytest.mark.parametrize("key,text,says", [
    ("train.lr", "nan", "train.lr must be a finite number > 0 (it is the learning rate); got nan"),
    ("train.lr", "inf", "must be a finite number > 0 (it is the learning rate); got inf"),
    ("train.lr", "0", "got 0.0"),
    ("train.lr_end", "-1e-6", "train.lr_end must be a finite number >= 0 (it is the learning rate at the end of the decay)"),
    ("train.b1", "1.5", "train.b1 must be a number in [0, 1) (it is Adam's first-moment decay)"),
    ("train.eps", "0", "train.eps must be a finite number > 0 (it is Adam's epsilon)"),
    ("train.ema_decay", "1", "train.ema_decay"),
    ("mdsm.sigma0", "nan", "mdsm.sigma0 must be a finite number > 0 (it is the width of the smoothing kernel)"),
    ("mdsm.sigma_high", "-3", "mdsm.sigma_high must be a finite number > 0 (it is the largest noise level)"),
    ("mdsm.step_size", "0", "mdsm.step_size must be a finite number > 0 (it is the Langevin step size); got 0.0"),
    ("mdsm.t_max", "inf", "mdsm.t_max"),
    ("mdsm.init_mean", "nan", "mdsm.init_mean"),
    ("sample.merge_max_gb", "-1", "sample.merge_max_gb"),
    ("restore.mask_fraction", "0", "strictly between 0 and 1"),
    ("eval.ais.step_size", "nan", "eval.ais.step_size"),
    ("eval.ais.ref_step_size", "-0.5", "eval.ais.ref_step_size"),
    ("mdsm.n_anneal", "-5", "mdsm.n_anneal must be an integer >= 0"),
    ("sample.seed", "-1", "sample.seed must be None"),
    ("sample.seed", "4294967296", "[0, 2**32)"),
    ("sample.seed", "abc", "--config.sample.seed=abc: expected a value of type int"),
    ("train.steps", "2.5", "expected a value of type int (a whole number), e.g. --config.train.steps=3000"),
    ("train.lr", "fast", "--config.train.lr=fast: expected a value of type float (a number)"),
])
def test_numbers_out_of_range_say_what_works(key, text, says):
    with pytest.raises(ConfigError) as e:
        load_config(DIGITS, [(key, text)])
    assert says in str(e.value)


def test_a_nan_anywhere_is_refused(tmp_path):
    """A NaN set in a config file is caught like one on the command line, and fields without a rule
    of their own (a new method's group) cannot be nan either."""
    path = tmp_path / "c.py"
    path.write_text("from ebmjax.config import defaults\n\ndef get_config():\n    c = defaults()\n"
                    "    c.train.lr = float('nan')\n    return c\n")
    with pytest.raises(ConfigError, match=r"train.lr must be a finite number > 0 \(it is the learning rate\); got nan"):
        load_config(str(path))
    cfg = load_config(DIGITS)
    cfg.mdsm.new_weight = float("nan")
    with pytest.raises(ConfigError, match=r"mdsm.new_weight is nan; it must be a number"):
        config.validate(cfg)
    cfg.mdsm.new_weight = 1.0
    config.validate(cfg)
    cfg.mdsm.new_levels = (0.5, float("nan"))
    with pytest.raises(ConfigError, match=r"mdsm.new_levels\[1\] is nan"):
        config.validate(cfg)


@pytest.mark.parametrize("line,says", [
    ("c.trian = 3", ["'trian', which is not a config field", 'Did you mean "train"']),
    ("c.model.widht = 4", ["'model.widht'", 'Did you mean "model.width"', "Fields there: activation, blocks_per_stage"]),
    ("c.model = 4", ["could not", "model"]),
])
def test_typos_in_a_config_file_are_refused(tmp_path, line, says):
    text = pathlib.Path(DIGITS).read_text().replace("    return c\n", f"    {line}\n    return c\n")
    path = tmp_path / "typo.py"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(str(path))
    for fragment in says:
        assert fragment.lower() in str(e.value).lower(), str(e.value)


@pytest.mark.parametrize("old", sorted(config.MOVED))
def test_a_moved_field_names_its_new_place(old, tmp_path):
    """MDSM's annealing moved from sample.* to mdsm.*: the old name, on the command line or in a config
    file, says where it went, and the new name holds the same default."""
    new = config.MOVED[old]
    with pytest.raises(ConfigError, match=f'It is now "{new}"'):
        load_config(DIGITS, [(old, "1")])
    group, field = old.split(".")
    path = tmp_path / "old.py"
    path.write_text(f"from ebmjax.config import defaults\n\ndef get_config():\n    c = defaults()\n"
                    f"    c.{group}.{field} = c.{new}\n    return c\n")
    with pytest.raises(ConfigError):
        load_config(str(path))
    assert field not in config.defaults().sample and field in config.defaults().mdsm


def test_every_method_group_comes_from_its_module():
    """The schema holds each method's own group as its module's defaults(), and its rules are checked
    by load_config for every config (a bad ml.step_size fails even when the method is mdsm)."""
    from ebmjax.methods import METHODS

    c = config.defaults()
    for name, entry in METHODS.items():
        assert c[name].to_dict() == entry.defaults().to_dict()
        assert {f for f, _, _ in entry.rules} <= set(entry.defaults().keys())
    with pytest.raises(ConfigError, match="ml.step_size must be a finite number > 0"):
        load_config(DIGITS, [("ml.step_size", "-1")])


def test_a_workdirs_config_json_is_a_config_file(tmp_path):
    """--config runs/x/config.json: the config a workdir records, as written (tuples as JSON lists),
    loads back equal to the run's config, takes overrides, and a file that is not a config is refused
    with a message rather than a traceback."""
    cfg = load_config(DIGITS, [("model.width", "8"), ("eval.metrics", "fid,ood"), ("sample.seed", "3")])
    path = tmp_path / "config.json"
    path.write_text(cfg.to_json_best_effort(indent=2))
    again = load_config(str(path))
    assert again.to_dict() == cfg.to_dict()
    assert load_config(str(path), [("train.steps", "7")]).train.steps == 7
    for name, text, says in (("bad.json", "{not json", "is not valid JSON"),
                             ("list.json", "[1, 2]", "holds a JSON list"),
                             ("c.yaml", "a: 1", "neither a Python config file")):
        (tmp_path / name).write_text(text)
        with pytest.raises(ConfigError, match=says):
            load_config(str(tmp_path / name))
