"""The benchmark's arithmetic (FLOP counts, peaks), its command line, the multi-step training call
and the bfloat16 error measurement. No assertion here depends on how fast anything ran."""

import io
import json
import pathlib

import jax
import jax.numpy as jnp
import pytest

from ebmjax import data, losses, models
from ebmjax.apps import bench
from ebmjax.config import load_config
from ebmjax.errors import DataError
from ebmjax.models import MDSMResNet, MLPEnergy

ROOT = pathlib.Path(__file__).resolve().parents[1]
DIGITS = str(ROOT / "configs" / "mdsm_digits.py")
CIFAR = str(ROOT / "configs" / "mdsm_cifar.py")
TOY = str(ROOT / "configs" / "mdsm_toy2d.py")


def res18_macs_by_hand(d: int, c: int, s: int) -> int:
    """Res18 multiply-accumulates per image, written out from REFERENCE.md's layer list."""
    macs = s * s * 9 * c * d  # stem
    cin, size = d, s
    for cout in (2 * d, 4 * d, 8 * d):
        # down block at `size`: conv_1 cin->cin, conv_2 cin->cout (both 3x3), 1x1 shortcut after the pool
        macs += size * size * 9 * cin * cin + size * size * 9 * cin * cout + (size // 2) ** 2 * cin * cout
        size //= 2
        # two same-width blocks: two 3x3 convs and a 1x1 shortcut each
        macs += 2 * (2 * size * size * 9 * cout * cout + size * size * cout * cout)
        cin = cout
    return macs + 3 * size * size * cin  # head: three dot products with the flattened 4x4x8d map


def test_res18_forward_is_6_6_gflop_per_image():
    flops = bench.forward_flops(MDSMResNet(blocks_per_stage=2, width=128), (32, 32, 3))
    assert flops == 2 * res18_macs_by_hand(128, 3, 32)
    assert flops == pytest.approx(6.6e9, rel=0.01)  # REFERENCE.md §5
    assert bench.forward_flops(MDSMResNet(blocks_per_stage=2, width=128), (32, 32, 3),
                               exclude_padding=True) < flops


def test_dense_layers_are_counted():
    costs = bench.layer_costs(MLPEnergy(hidden=(16, 8)), (2,))
    assert [c.kind for c in costs] == ["dense"] * len(costs)
    assert sum(c.macs for c in costs) >= 2 * 16 + 16 * 8 + 8 * 1


def xla_flops(model, shape, batch=2, compiled=True):
    """XLA's FLOP counts of a forward pass, a Langevin step (forward + input gradient) and the MDSM
    loss gradient, from the compiled executable (or only the lowered HLO, which is much faster)."""
    params = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, *shape))))
    x = jax.ShapeDtypeStruct((batch, *shape), jnp.float32)
    sig = losses.noise_levels(batch, 0.1, 1.0)

    def count(f):
        lowered = jax.jit(f).lower(params, x)
        return (lowered.compile() if compiled else lowered).cost_analysis()["flops"] / batch

    return (count(lambda p, y: model.apply(p, y)),
            count(lambda p, y: losses.score(lambda z: model.apply(p, z), y)),
            count(lambda p, y: jax.grad(
                lambda q: losses.mdsm_loss(lambda z: model.apply(q, z), y, jax.random.PRNGKey(1), sig))(p)))


def test_analytic_flops_match_xla_cost_analysis():
    """Against XLA's count for the compiled executables of the network written with XLA's convolution
    (the matrix-product path of CPUs computes the same sums, some on padding). Both sides leave out
    taps on the zero padding; only XLA counts elementwise work (ELU, pooling, adds: about 2% here)."""
    model, shape = MDSMResNet(blocks_per_stage=0, width=8, conv="xla"), (16, 16, 3)
    fwd = bench.forward_flops(model, shape, exclude_padding=True)
    forward, langevin, train = xla_flops(model, shape)
    assert forward == pytest.approx(fwd, rel=0.04)
    assert langevin == pytest.approx(bench.LANGEVIN_FLOPS_PER_FORWARD * fwd, rel=0.04)
    assert train == pytest.approx(bench.TRAIN_FLOPS_PER_FORWARD * fwd, rel=0.04)


def test_res18_flops_match_xla_hlo_count():
    """The full Res18 d=128 at 32x32x3, counted by XLA on the lowered HLO (compiling it would take
    minutes on a CPU)."""
    model, shape = MDSMResNet(blocks_per_stage=2, width=128, conv="xla"), (32, 32, 3)
    fwd = bench.forward_flops(model, shape, exclude_padding=True)
    forward, langevin, train = xla_flops(model, shape, compiled=False)
    assert forward == pytest.approx(fwd, rel=0.02)
    assert langevin == pytest.approx(bench.LANGEVIN_FLOPS_PER_FORWARD * fwd, rel=0.02)
    assert train == pytest.approx(bench.TRAIN_FLOPS_PER_FORWARD * fwd, rel=0.02)


def test_device_peaks():
    assert bench.peak_tflops("NVIDIA H100 80GB HBM3", "gpu", "bfloat16")[0] == 989.0
    # float32 convolutions run on TF32 tensor cores under JAX's default precision...
    assert bench.peak_tflops("NVIDIA H100 80GB HBM3", "gpu", "float32")[0] == 494.5
    with jax.default_matmul_precision("highest"):  # ...and in true float32 when asked
        assert bench.peak_tflops("NVIDIA H100 80GB HBM3", "gpu", "float32")[0] == 66.9
    assert bench.peak_tflops("NVIDIA H100 PCIe", "gpu", "bfloat16")[0] == 756.0
    assert bench.peak_tflops("NVIDIA H200", "gpu", "bfloat16")[0] == 989.0
    assert bench.peak_tflops("NVIDIA A100-SXM4-80GB", "gpu", "float32")[0] == 156.0
    assert bench.peak_tflops("TPU v5 lite", "tpu", "bfloat16")[0] == 197.0
    assert bench.peak_tflops("TPU v4", "tpu", "float32")[0] == 275.0  # one bf16 pass by default
    peak, note = bench.peak_tflops("cpu", "cpu", "float32")
    assert peak is None and "unknown" in note  # CPUs are estimated from /proc/cpuinfo instead, below


ZEN4 = "vendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\ncpu MHz\t\t: 2596.146\nflags\t\t: fma avx2 avx512f avx512_bf16\n"
XEON = "vendor_id\t: GenuineIntel\ncpu family\t: 6\ncpu MHz\t\t: 2000.000\nflags\t\t: fma avx2 avx512f\n"
OLD = "vendor_id\t: GenuineIntel\ncpu family\t: 6\ncpu MHz\t\t: 3000.000\nflags\t\t: fma avx2\n"


def test_cpu_peak_from_cpuinfo():
    """cores x GHz x 2 FMA pipes x float32 lanes x 2 FLOP, lanes by what the core runs at full rate."""
    assert bench.cpu_peak_gflops(ZEN4, 2)[0] == pytest.approx(2 * 2.596146 * 2 * 8 * 2)  # 512-bit on 256-bit pipes
    assert bench.cpu_peak_gflops(XEON, 4)[0] == pytest.approx(4 * 2.0 * 2 * 16 * 2)
    assert bench.cpu_peak_gflops(OLD, 1)[0] == pytest.approx(3.0 * 2 * 8 * 2)
    peak, note = bench.cpu_peak_gflops("flags\t: avx2\n", 2)
    assert peak is None and "cpu MHz" in note


def test_example_shape_without_prepared_data(tmp_path):
    cifar = load_config(CIFAR, [("data.data_dir", str(tmp_path))])
    assert data.example_shape(cifar.data) == (32, 32, 3)
    mnist = load_config(str(ROOT / "configs" / "mdsm_mnist_tfds.py"), [("data.data_dir", str(tmp_path))])
    assert data.example_shape(mnist.data) == (32, 32, 1)
    assert data.example_shape(load_config(DIGITS).data) == (8, 8, 1)
    # Every dataset supplies its shape through the registry (Dataset.shape); the cycle_gan pairs'
    # photographs differ in size, so their runs' data.image_size gives it, and without one the error
    # says what to pass.
    zebra = load_config(str(ROOT / "configs" / "translate_horse2zebra.py"), [("data.data_dir", str(tmp_path))])
    assert data.example_shape(zebra.data) == (64, 64, 3)
    zebra.data.image_size = None
    with pytest.raises(DataError, match="--config.data.image_size=N"):
        data.example_shape(zebra.data)


# The 2-D toy's small MLP compiles in a second; the conv counts are checked above.
TINY = ["--config.model.hidden=(16,16)", "--config.train.batch_size=8", "--config.train.steps_per_call=2",
        "--config.sample.batch_size=8", "--config.sample.chunk_steps=3", "--min-seconds=0", "--min-calls=1"]


@pytest.mark.slow  # about 11 s on 2 CPU cores; the whole suite (CI) runs it
def test_command_line_prints_train_langevin_and_precision_records():
    out = io.StringIO()
    assert bench.run(["--config", TOY, "--what", "train,langevin,precision", "--precision-batch=8", *TINY],
                     out=out) == 0
    train, lang, prec = [json.loads(line) for line in out.getvalue().splitlines()]
    fwd = bench.forward_flops(MLPEnergy(hidden=(16, 16)), (2,))
    assert train["bench"] == "train" and train["batch"] == 8 and train["steps_per_call"] == 2
    assert train["gflop_per_img"] == pytest.approx(6 * fwd / 1e9)
    assert lang["bench"] == "langevin" and lang["chunk_steps"] == 3
    assert lang["gflop_per_img_step"] == pytest.approx(2 * fwd / 1e9)
    for rec in (train, lang):
        assert rec["device"] == jax.devices()[0].device_kind and rec["dtype"] == "float32"
        assert rec["compiled_memory_bytes"] > 0
        # A real machine runs below its peak; an MLP this small runs far below it.
        assert rec["utilisation"] is None or 0 < rec["utilisation"] < 1, rec
        assert rec["utilisation_valid"] is None or rec["utilisation_valid"] <= rec["utilisation"]
        if rec["platform"] == "cpu":  # no memory statistics on a CPU: null, with a reason
            assert rec["peak_memory_bytes"] is None and rec["peak_memory_note"]
    assert prec["bench"] == "precision" and prec["batch"] == 8 and "training examples" in prec["note"]
    for k in ("energy_rel_err", "score_rel_err_median", "loss_rel_err", "param_grad_rel_err"):
        assert 0 < prec[k] < 0.1, (k, prec)


def test_command_line_errors_are_clear(capsys):
    assert bench.run(["--config", DIGITS, "--what", "trian"]) == 2
    assert "--what takes a comma list of train, langevin, precision" in capsys.readouterr().err
    assert bench.run(["--config", DIGITS, "--dtype", "float16"]) == 2
    assert "--dtype" in capsys.readouterr().err
    assert bench.run(["--config", str(ROOT / "configs" / "pcd_digits.py"), "--what", "precision"]) == 2
    assert "--what precision measures bfloat16 against float32 on MDSM's network" in capsys.readouterr().err
    assert bench.run(["--config", DIGITS, "--compare-torch", "--config.model.name=convnet"]) == 2
    err = capsys.readouterr().err
    assert "model.name mdsm_resnet or unet" in err and "time the original's ResNet with --config.model.name" in err


@pytest.mark.slow  # about 15 s on 2 CPU cores; the whole suite (CI) runs it
def test_bfloat16_errors_are_small_but_not_zero():
    cfg = load_config(DIGITS, [("model.width", "8"), ("model.blocks_per_stage", "0")])
    model = models.build_model(cfg.model)
    # An "rbg" key: threefry makes the initialisers of a conv net slow to compile on a CPU.
    params = models.init_params(model, jax.random.key(0, impl="rbg"), (8, 8, 1))
    x = jax.random.uniform(jax.random.PRNGKey(1), (8, 8, 8, 1))
    errs = bench.precision_errors(cfg.model, params, x, jax.random.PRNGKey(2),
                                  losses.noise_levels(8, 0.1, 3.0, "geometric"), 0.1, loss_grad=False)
    # bfloat16 keeps 8 significant bits (relative rounding 2^-9 = 0.2%); errors well above that
    # scale would mean float32 state or accumulation was lost somewhere.
    assert 0 < errs["score_rel_err_median"] < 0.05
    assert 0 < errs["energy_rel_err"] < 0.05
    assert errs["score_cosine_min"] > 0.99


def test_compile_only_reports_memory_without_timing():
    out = io.StringIO()
    assert bench.run(["--config", TOY, "--what", "langevin", "--compile-only", *TINY], out=out) == 0
    rec = json.loads(out.getvalue())
    assert rec["langevin_img_steps_per_s"] is None and rec["tflops"] is None and rec["utilisation"] is None
    assert rec["compiled_memory_bytes"] > 0 and rec["gflop_per_img_step"] > 0


def test_profile_dir_records_xla_operations_not_python_calls(tmp_path):
    """--profile-dir writes a trace of the timed calls whose events are XLA's operations (a fusion or
    a dot of the compiled step), with the Python tracer off so Python calls do not crowd them out."""
    import gzip

    assert bench.run(["--config", TOY, "--what", "train", *TINY, "--profile-dir", str(tmp_path)],
                     out=io.StringIO()) == 0
    (trace,) = tmp_path.glob("plugins/profile/*/*.trace.json.gz")
    events = [e for e in json.load(gzip.open(trace))["traceEvents"] if e.get("ph") == "X"]
    names = {e["name"] for e in events}
    assert any("fusion" in n or n.startswith("dot") for n in names), sorted(names)[:20]
    assert not any(n.startswith("$") or ".py:" in n for n in names), [n for n in names if ".py:" in n][:5]


@pytest.mark.slow  # about 39 s on 2 CPU cores; the whole suite (CI) runs it
def test_train_bench_times_other_methods_in_their_last_phase():
    """CF-EBM (per_stage: networks initialised from each other, phases = stages) times its last stage;
    FLOPs are MDSM's count, so other methods report the rate alone."""
    cfebm = str(ROOT / "configs" / "cfebm_digits.py")
    out = io.StringIO()
    assert bench.run(["--config", cfebm, "--what", "train", "--config.cfebm.widths=4,4,4",
                      "--config.cfebm.head_width=4", "--config.cfebm.steps=2", "--config.train.batch_size=8",
                      "--min-seconds=0", "--min-calls=1"], out=out) == 0
    rec = json.loads(out.getvalue())
    assert rec["bench"] == "train" and rec["batch"] == 8 and rec["train_img_per_s"] > 0
    assert rec["gflop_per_img"] is None and rec["tflops"] is None and rec["utilisation"] is None
    # A method that learns from two domains (ml.init = "source") is timed on a batch of each.
    translate = str(ROOT / "configs" / "translate_digits.py")
    out = io.StringIO()
    assert bench.run(["--config", translate, "--what", "train", "--config.model.widths=4,4",
                      "--config.ml.steps=2", "--config.train.batch_size=8", "--min-seconds=0", "--min-calls=1"],
                     out=out) == 0
    rec = json.loads(out.getvalue())
    assert rec["bench"] == "train" and rec["batch"] == 8 and rec["train_img_per_s"] > 0
    # A method that learns from labels (JEM) is timed on labelled batches.
    out = io.StringIO()
    assert bench.run(["--config", str(ROOT / "configs" / "jem_digits.py"), "--what", "train,langevin",
                      "--config.model.widths=4,4", "--config.ml.steps=2", "--config.ml.buffer_size=64",
                      "--config.train.batch_size=8", "--config.sample.batch_size=8", "--config.ml.sample_steps=2",
                      "--config.sample.chunk_steps=2", "--min-seconds=0", "--min-calls=1"], out=out) == 0
    recs = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["bench"] for r in recs] == ["train", "langevin"] and recs[1]["method"] == "jem", recs
    assert recs[0]["train_img_per_s"] > 0 and recs[1]["langevin_img_steps_per_s"] > 0


def test_langevin_bench_times_every_methods_own_sampler():
    """The Langevin bench runs the chains the method samples with: multigrid's finest grid (it once
    timed a default MDSM network and failed on multigrid's parameters), and a maximum-likelihood
    chain whose FLOPs per step XLA counts: a forward pass and its input gradient, about 2 forwards."""
    out = io.StringIO()
    assert bench.run(["--config", str(ROOT / "configs" / "multigrid_digits.py"), "--what", "langevin",
                      "--config.multigrid.widths=4,4", "--config.sample.batch_size=8", "--config.sample.chunk_steps=2",
                      "--min-seconds=0", "--min-calls=1"], out=out) == 0
    rec = json.loads(out.getvalue())
    assert rec["method"] == "multigrid" and rec["stage"] == "grid 8x8" and rec["batch"] == 8
    assert rec["langevin_img_steps_per_s"] > 0 and rec["gflop_per_img_step"] > 0
    # CF-EBM is timed in its last stage, at the full resolution (not the first stage a fresh run has).
    out = io.StringIO()
    assert bench.run(["--config", str(ROOT / "configs" / "cfebm_digits.py"), "--what", "langevin",
                      "--config.cfebm.widths=4,4,4", "--config.cfebm.head_width=4", "--config.cfebm.sample_steps=2",
                      "--config.sample.batch_size=8", "--config.sample.chunk_steps=2", "--min-seconds=0",
                      "--min-calls=1"], out=out) == 0
    rec = json.loads(out.getvalue())
    assert rec["method"] == "cfebm" and rec["stage"] == "8x8" and rec["shape"] == [8, 8, 1], rec
    out = io.StringIO()
    # Wide enough that the products outweigh the elementwise work and the noise, which XLA counts too.
    assert bench.run(["--config", str(ROOT / "configs" / "ml_toy2d.py"), "--what", "langevin", *TINY,
                      "--config.model.hidden=(256,256)"], out=out) == 0
    rec = json.loads(out.getvalue())
    fwd = bench.forward_flops(MLPEnergy(hidden=(256, 256)), (2,))
    assert rec["method"] == "ml" and rec["stage"] == "langevin"
    assert 2 * fwd <= rec["gflop_per_img_step"] * 1e9 <= 2.3 * fwd, (rec["gflop_per_img_step"] * 1e9, fwd)
