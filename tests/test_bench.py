"""The bench command's plumbing (its timings are never asserted)."""

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from numbaconv import bench
from helpers import reference_conv


def test_layer_table_is_the_public_set():
    layers = bench.load_layers()
    public = Path(__file__).resolve().parents[2] / "shared" / "bench" / "layers.json"
    if public.exists():  # the copy shipped in the package must not drift from the public set
        rows = {k: v for k, v in json.loads(public.read_text()).items() if not k.startswith("_")}
        assert {name: list(layer.values()) for name, layer in layers.items()} == rows
    assert "resnet_3x3_64_b8" in layers and layers["depthwise_b8"]["groups"] == 32


def test_numpy_peer_computes_the_convolution():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 11, 12))
    w = rng.standard_normal((4, 3, 3, 3))
    b = rng.standard_normal(4)
    for stride, padding, dilation in [(1, 1, 1), (2, 0, 1), (1, 2, 2)]:
        got = bench.numpy_im2col_conv2d(x, w, b, stride, padding, dilation, 1)
        want = reference_conv("conv2d", x, w, b, stride, padding, dilation, 1, "zeros")
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_run_bench_prints_a_row_per_layer_without_torch():
    out = io.StringIO()
    rows = bench.run_bench(["lenet_5x5_b64"], repeat=1, use_torch=False, out=out,
                           progress=io.StringIO())
    text = out.getvalue()
    assert "lenet_5x5_b64" in text and rows[0]["algorithm"] in text
    assert rows[0]["torch_ms"] is None and rows[0]["error"] < 1e-5 and rows[0]["numpy_ms"] > 0


def test_bench_on_cuda_without_a_gpu_explains_and_fails():
    # numba-cuda, not Numba's deprecated built-in numba.cuda (which imports without it
    # and is rejected with another message: see test_missing_numba_cuda_says_what_to_install).
    pytest.importorskip("numba_cuda", reason="needs numba-cuda: pip install -e '.[cuda]'")
    from numba import cuda

    if cuda.is_available():
        pytest.skip("a GPU is available here")
    result = subprocess.run([sys.executable, "-m", "numbaconv", "bench", "--device", "cuda",
                             "--layers", "lenet_5x5_b64"], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 2
    assert "no usable CUDA GPU" in result.stderr and "Traceback" not in result.stderr


def test_layer_bench_prints_every_case_without_torch():
    out = io.StringIO()
    bench.run_layer_bench(repeat=1, use_torch=False, out=out)
    text = out.getvalue()
    assert all(name in text for name in bench.LAYER_CASES)


def test_network_set_ships_with_the_package_and_every_conv_has_a_kind():
    from numbaconv.bench_networks import conv_kind, load_network_layers

    entries = load_network_layers()
    ops = {e["op"] for e in entries}
    assert ops == {"conv2d", "conv_transpose2d", "max_pool2d", "avg_pool2d", "linear"}
    kinds = {conv_kind(e) for e in entries if e["op"] == "conv2d"}
    assert {"depthwise", "grouped", "dilated", "strided", "pointwise 1x1", "3x3 stride 1",
            "1x1 on 1x1 image (SE)", "large kernel"} <= kinds
    assert conv_kind(dict(x=[1, 8, 1, 1], w=[4, 8, 1, 1], groups=1, stride=[1, 1],
                          dilation=[1, 1])) == "1x1 on 1x1 image (SE)"


def test_network_bench_reports_kinds_models_and_worst_layers(torch):
    from numbaconv.bench_networks import load_network_layers, run_network_bench

    entries = load_network_layers()
    picked = [next(e for e in entries if e["op"] == op)
              for op in ("conv2d", "max_pool2d", "linear", "conv_transpose2d")]
    out = io.StringIO()
    rows = run_network_bench(repeat=1, entries=picked, out=out, progress=io.StringIO())
    text = out.getvalue()
    assert len(rows) == 4 and all(r["ratio"] > 0 for r in rows)
    assert "vector ISA" in text and "all conv2d" in text and "resnet18" in text
    assert "worst" in text and rows[0]["algorithm"] in text


def test_network_bench_without_torch_still_times_numbaconv():
    from numbaconv.bench_networks import load_network_layers, run_network_bench

    picked = load_network_layers()[:2]
    out = io.StringIO()
    rows = run_network_bench(repeat=1, use_torch=False, entries=picked, out=out,
                             progress=io.StringIO())
    assert all(r["ms"] > 0 and r["torch_ms"] is None for r in rows)


def test_models_bench_runs_a_model_through_onnx(torch):
    pytest.importorskip("onnx")  # (CI installs it: tests/test_onnx.py fails there without)
    from numbaconv.bench_models import available_models, run_models_bench

    out = io.StringIO()
    rows = run_models_bench(["resnet18"], (1, 2), size=32, repeat=1, out=out,
                            progress=io.StringIO())
    assert [(r["model"], r["batch"]) for r in rows] == [("resnet18", 1), ("resnet18", 2)]
    assert all(r["error"] < 1e-4 and r["ms"] > 0 and r["torch_ms"] > 0 for r in rows)
    text = out.getvalue()
    assert "numbaconv models:" in text and "resnet18" in text
    makers, source = available_models(torch)
    assert {"resnet18", "mobilenet_v2"} <= set(makers)
    with pytest.raises(ValueError, match="unknown model"):
        run_models_bench(["resnet1000"], (1,), out=io.StringIO())


def test_training_bench_times_a_step_of_each_model_against_torch(torch):
    """bench --training: a row per model (LeNet-5, the ResNet-18), both libraries timed,
    the header saying how many steps each took."""
    from numbaconv.bench_training import run_training_bench

    out = io.StringIO()
    rows = run_training_bench(repeat=1, out=out)
    assert [r["model"] for r in rows] == ["lenet5", "resnet18"]
    assert all(r["ms"] > 0 and r["torch_ms"] > 0 for r in rows)
    # one round: its ratio is the ratio of the bests
    assert all(r["median_ratio"] == pytest.approx(r["ms"] / r["torch_ms"]) for r in rows)
    text = out.getvalue()
    assert "best of 1" in text and "64x1x28x28" in text and "8x3x64x64" in text
    assert "median ratio" in text


def test_interleaved_rounds_take_turns_in_alternating_order(monkeypatch):
    """Each round times both, ours first in even rounds and the peer first in odd ones;
    each turn is an untimed call, then the timed one."""
    from numbaconv import bench

    monkeypatch.setattr(bench, "SETTLE_SECONDS", 0)
    calls = []
    ours, theirs = bench.interleaved_rounds(lambda: calls.append("o"),
                                            lambda: calls.append("t"), 3)
    assert len(ours) == len(theirs) == 3 and min(ours + theirs) >= 0
    assert "".join(calls) == "oott" "ttoo" "oott"
