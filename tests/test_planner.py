"""The front end: plans, explicit algorithms, refusals, and the pure-Python spec layer."""

import subprocess
import sys

import numpy as np
import pytest

import numbaconv
from helpers import reference_conv
from numbaconv.planner import REGISTRY, auto_rule
from numbaconv.spec import conv_spec, output_size


def spec_of(xs, ws, **kwargs):
    return numbaconv.plan(np.empty(xs, np.float32), np.empty(ws, np.float32), **kwargs).spec


def test_output_size_formula():
    assert output_size(7, 3, 1, 1) == 5
    assert output_size(7, 3, 2, 1) == 3
    assert output_size(8, 3, 2, 2) == 2
    assert output_size(5, 5, 1, 1) == 1


def test_same_padding_puts_the_odd_extra_at_the_end():
    spec = spec_of((1, 1, 8, 8), (1, 1, 4, 2), padding="same", dilation=(1, 3))
    assert (spec.pad_top, spec.pad_bottom, spec.pad_left, spec.pad_right) == (1, 2, 1, 2)
    assert (spec.out_height, spec.out_width) == (8, 8)


def test_conv1d_is_a_conv2d_of_height_one():
    spec = conv_spec("conv1d", (2, 3, 10), (4, 3, 3), (4,), 2, "valid", 1, 1, "zeros", "float64")
    assert (spec.in_height, spec.kernel_height, spec.stride_h) == (1, 1, 1)
    assert spec.output_shape == (2, 4, 4)
    assert spec.has_bias and spec.dtype == "float64"


def test_plan_reports_the_decision():
    x = np.empty((8, 64, 56, 56), np.float32)
    w = np.empty((64, 64, 3, 3), np.float32)
    plan = numbaconv.plan(x, w, padding=1)
    assert plan.output_shape == (8, 64, 56, 56)
    assert plan.flops == 2 * 8 * 64 * 56 * 56 * 64 * 9
    assert plan.device == "cpu"
    assert plan.algorithm in REGISTRY
    assert plan.workspace_bytes >= 0
    text = repr(plan)
    for fragment in (plan.algorithm, "cpu", "(8, 64, 56, 56)", "GFLOP", "MiB", "why"):
        assert fragment in text


def test_each_algorithm_can_be_requested_or_refuses(rng):
    x = rng.standard_normal((1, 4, 9, 9)).astype(np.float32)
    w = rng.standard_normal((4, 1, 3, 3)).astype(np.float32)
    for kwargs in (dict(padding=1), dict(padding=1, groups=4, stride=2)):
        weight = w if kwargs.get("groups") else rng.standard_normal((4, 4, 3, 3)).astype(np.float32)
        spec = numbaconv.plan(x, weight, **kwargs).spec
        for name, algorithm in REGISTRY.items():
            if algorithm.supports(spec) is None:
                assert numbaconv.plan(x, weight, **kwargs, algorithm=name).algorithm == name
            else:
                with pytest.raises(numbaconv.UnsupportedAlgorithm, match=name):
                    numbaconv.conv2d(x, weight, **kwargs, algorithm=name)


def test_unsupported_algorithm_is_a_value_error():
    assert issubclass(numbaconv.UnsupportedAlgorithm, ValueError)


def test_auto_is_deterministic_and_always_supported():
    shapes = [((1, 3, 224, 224), (64, 3, 7, 7), dict(stride=2, padding=3)),
              ((8, 64, 56, 56), (64, 64, 3, 3), dict(padding=1)),
              ((8, 32, 112, 112), (32, 1, 3, 3), dict(padding=1, groups=32)),
              ((8, 256, 14, 14), (64, 256, 1, 1), {}),
              ((1, 2, 5, 5), (3, 2, 2, 2), dict(dilation=2))]
    for xs, ws, kwargs in shapes:
        spec = spec_of(xs, ws, **kwargs)
        name, reason = auto_rule(spec)
        assert auto_rule(spec) == (name, reason)
        assert REGISTRY[name].supports(spec) is None
        assert reason


def test_import_compiles_nothing():
    # The spec and planner are pure Python: importing numbaconv must not import Numba.
    code = "import sys, numbaconv; numbaconv.plan([[[0.0]]], [[[[1.0]]]]); print('numba' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize("xs, ws, kwargs, expected", [
    ((8, 64, 56, 56), (64, 64, 3, 3), dict(padding=1), "winograd_f4x4"),
    ((8, 512, 7, 7), (512, 512, 3, 3), dict(padding=1), "winograd_f4x4"),
    ((1, 512, 7, 7), (512, 512, 3, 3), dict(padding=1), "gemm"),  # 38 MiB transformed, 49 out
    ((1, 512, 14, 14), (512, 512, 3, 3), dict(padding=1), "winograd_f2x2"),  # 16 F(4x4) tiles
    ((1, 128, 28, 28), (32, 128, 3, 3), dict(padding=1), "winograd_f4x4"),  # 49 tiles
    ((1, 64, 64, 64), (64, 64, 3, 3), dict(padding=2, dilation=2), "winograd_f4x4"),
    ((1, 256, 33, 33), (256, 256, 3, 3), dict(padding=12, dilation=12), "gemm"),  # DeepLab-like
    ((1, 2048, 28, 28), (256, 2048, 3, 3), dict(padding=12, dilation=12), "gemm"),  # DeepLab
    ((1, 1024, 14, 14), (2048, 1024, 1, 1), dict(stride=2), "gemm"),  # 1x1 stride 2
    ((8, 32, 112, 112), (32, 1, 3, 3), dict(padding=1, groups=32), "direct"),  # depthwise
    ((1, 128, 28, 28), (128, 4, 3, 3), dict(padding=1, groups=32), "direct"),  # ResNeXt group
    ((1, 512, 14, 14), (512, 16, 3, 3), dict(padding=1, groups=32), "direct"),  # ResNeXt 32x16
    ((1, 1024, 7, 7), (1024, 32, 3, 3), dict(padding=1, groups=32), "direct"),  # 32x32
    ((1, 256, 14, 14), (256, 128, 3, 3), dict(padding=1, groups=2), "winograd_f2x2"),
    ((8, 256, 14, 14), (256, 128, 3, 3), dict(padding=1, groups=2), "winograd_f4x4"),
    ((1, 48, 1, 1), (1152, 48, 1, 1), {}, "gemm"),  # squeeze-and-excitation
    ((1, 32, 1, 1), (8, 32, 1, 1), {}, "gemm"),  # squeeze-and-excitation, thin
    ((8, 256, 14, 14), (64, 256, 1, 1), {}, "gemm"),  # pointwise
    ((1, 3, 224, 224), (64, 3, 7, 7), dict(stride=2, padding=3), "direct"),  # ResNet stem
    ((1, 3, 227, 227), (96, 3, 11, 11), dict(stride=4), "direct"),  # AlexNet conv1
    ((64, 1, 28, 28), (6, 1, 5, 5), dict(padding=2), "direct"),  # LeNet
    ((1, 64, 56, 56), (128, 64, 3, 3), dict(stride=2, padding=1), "gemm"),  # strided 3x3
    ((8, 64, 56, 56), (128, 64, 3, 3), dict(stride=2, padding=1), "direct"),  # batch 8
    ((2, 1024, 2, 2), (1024, 1024, 3, 3), dict(padding=1), "gemm"),  # deep, tiny image
    ((1, 512, 7, 7), (512, 512, 3, 3), dict(padding=1, dilation=3), "gemm"),  # tiny, dilated
    ((64, 6, 14, 14), (16, 6, 5, 5), {}, "direct"),  # LeNet's second layer
])
def test_auto_rule_on_familiar_layers(xs, ws, kwargs, expected):
    assert numbaconv.plan(np.empty(xs, np.float32), np.empty(ws, np.float32), **kwargs).algorithm == expected


@pytest.mark.parametrize("vector_bytes, expected", [(32, "direct"), (64, "gemm")])
def test_auto_rule_takes_the_isa_into_account(monkeypatch, vector_bytes, expected):
    # AlexNet's 5x5: direct with AVX2's narrower tiles, the whole im2col with AVX-512.
    monkeypatch.setattr(numbaconv.isa, "VECTOR_BYTES", vector_bytes)
    spec = spec_of((1, 64, 27, 27), (192, 64, 5, 5), padding=2)
    assert auto_rule(spec)[0] == expected
    # a 1x7 (7 taps) or a strided 5x5 stays GEMM on both
    assert auto_rule(spec_of((1, 128, 17, 17), (128, 128, 1, 7), padding=(0, 3)))[0] == "gemm"


def test_winograd_runs_larger_kernels_only_when_asked():
    from numbaconv.registry import CUDA_REGISTRY, winograd_input_copy_bytes
    spec = spec_of((8, 64, 27, 27), (192, 64, 5, 5), padding=2)
    for name in ("winograd_f2x2", "winograd_f4x4"):
        assert REGISTRY[name].supports(spec) is None
        assert "3x3 kernel on the GPU" in CUDA_REGISTRY[name].supports(spec)
    assert auto_rule(spec)[0] != "winograd_f4x4"
    assert "dilation 1" in REGISTRY["winograd_f4x4"].supports(
        spec_of((1, 8, 20, 20), (8, 8, 5, 5), dilation=2))
    assert "at least 3x3" in REGISTRY["winograd_f4x4"].supports(
        spec_of((1, 8, 20, 20), (8, 8, 1, 7)))
    # the stacked copy of the input: 4 pieces of (27 + 2)^2 per channel and image
    assert winograd_input_copy_bytes(spec) == 8 * 4 * 64 * 29 * 29 * 4
    assert winograd_input_copy_bytes(spec_of((1, 8, 20, 20), (8, 8, 3, 3), padding=1)) == 0
    assert REGISTRY["winograd_f4x4"].workspace_bytes(spec) > winograd_input_copy_bytes(spec)
    plan = numbaconv.plan(np.empty((8, 64, 27, 27), np.float32),
                          np.empty((192, 64, 5, 5), np.float32), padding=2,
                          algorithm="winograd_f4x4")
    assert plan.kernel in ("blocks", "stages")


def test_winograd_blocks_or_stages():
    from numbaconv.registry import winograd_block_rows
    # Many tiles, small weights: blocks, one per thread, each under 196 tiles.
    assert winograd_block_rows(spec_of((8, 64, 56, 56), (64, 64, 3, 3), padding=1), 4, 2) == 14
    # Two blocks of 8 tiles would each read 9 MiB of weights: stage by stage (all 4 rows).
    assert winograd_block_rows(spec_of((1, 256, 14, 14), (256, 256, 3, 3), padding=1), 4, 2) == 4
    # The same layer's 0.25 MiB of F(2x2) weights at 64 channels: blocks.
    assert winograd_block_rows(spec_of((1, 64, 14, 14), (64, 64, 3, 3), padding=1), 2, 2) == 4
    # More threads, more blocks re-reading the weights.
    spec = spec_of((1, 128, 28, 28), (128, 128, 3, 3), padding=1)
    assert winograd_block_rows(spec, 4, 2) == 4
    assert winograd_block_rows(spec, 4, 8) == 7


#: (input, weight, arguments, the direct kernel that runs it, its function in cpu.direct)
DIRECT_KERNEL_CASES = [
    ((1, 32, 56, 56), (32, 1, 3, 3), dict(padding=1, groups=32), "depthwise3x3_rows",
     "depthwise3x3_conv2d"),
    ((1, 32, 14, 14), (32, 1, 5, 5), dict(padding=2, groups=32), "depthwise_channels_last",
     "depthwise_channels_last"),
    ((2, 4, 14, 14), (4, 1, 3, 3), dict(padding=1, groups=4, stride=2), "depthwise3x3_stacked",
     "depthwise3x3_stacked"),
    ((1, 4, 20, 20), (4, 1, 5, 5), dict(padding=2, groups=4), "depthwise_rows",
     "depthwise_conv2d"),
    ((1, 3, 32, 32), (8, 3, 3, 3), dict(padding=1), "tiled", "tiled_conv2d"),
    ((1, 64, 14, 14), (64, 8, 3, 3), dict(padding=1, groups=8, stride=2), "grouped_tiled",
     "grouped_tiled_conv2d"),
    ((1, 3, 16, 16), (2, 3, 3, 3), dict(padding=1), "channel_rows", "direct_conv2d"),
]


@pytest.mark.parametrize("xs, ws, kwargs, kernel, function", DIRECT_KERNEL_CASES)
def test_plan_names_the_direct_kernel_that_runs(monkeypatch, rng, xs, ws, kwargs, kernel,
                                                function):
    """plan() names the kernel the direct algorithm will run (registry.direct_kernel, a
    pure-Python rule that direct.run dispatches on): that kernel, and only it, runs."""
    from numbaconv.cpu import direct

    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal(ws).astype(np.float32)
    plan = numbaconv.plan(x, w, **kwargs, algorithm="direct")
    assert plan.kernel == kernel
    assert f"kernel {kernel!r}" in repr(plan) and plan.kernel_summary in repr(plan)
    assert plan.kernel_summary == REGISTRY["direct"].kernels[kernel]
    expected = reference_conv("conv2d", x, w, None, **(dict(
        stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros") | kwargs))
    np.testing.assert_allclose(numbaconv.conv2d(x, w, **kwargs, algorithm="direct"), expected,
                               rtol=1e-4, atol=1e-4)

    def refuse(*args, **kw):
        raise AssertionError(f"{function} ran")

    monkeypatch.setattr(direct, function, refuse)
    with pytest.raises(AssertionError, match=function):
        numbaconv.conv2d(x, w, **kwargs, algorithm="direct")


def test_every_kernel_has_a_summary_and_a_workspace():
    """Each kernel a rule can name is described, and the memory guard counts what that
    kernel allocates: a grouped layer no longer counts the padded copy of the whole input
    that only the ungrouped tiled kernel makes."""
    from numbaconv import registry

    for algorithm in REGISTRY.values():
        for name, summary in algorithm.kernels.items():
            assert name and summary.strip()
    for xs, ws, kwargs, kernel, _ in DIRECT_KERNEL_CASES:
        spec = spec_of(xs, ws, **kwargs)
        assert registry.direct_kernel(spec) == kernel
        assert REGISTRY["direct"].workspace_bytes(spec) > 0
    grouped = spec_of((8, 512, 56, 56), (512, 16, 3, 3), padding=1, groups=32)
    ungrouped = spec_of((8, 512, 56, 56), (512, 512, 3, 3), padding=1)
    assert registry.direct_kernel(grouped) == "grouped_tiled"
    copy = registry._phase_split_bytes(grouped)
    assert REGISTRY["direct"].workspace_bytes(grouped) < copy
    assert REGISTRY["direct"].workspace_bytes(ungrouped) > copy


@pytest.mark.parametrize("xs, ws, padding, dilation, staged", [
    ((1, 256, 14, 14), (256, 256, 3, 3), 1, 1, True),   # 9 MiB of weights per block
    ((8, 64, 56, 56), (64, 64, 3, 3), 1, 1, False),
    ((1, 64, 32, 32), (64, 64, 3, 3), 2, 2, False),    # dilated: its phases as a batch
])
def test_plan_names_winograds_blocks_or_stages(monkeypatch, rng, xs, ws, padding, dilation,
                                               staged):
    from numbaconv.cpu import winograd

    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal(ws).astype(np.float32)
    plan = numbaconv.plan(x, w, padding=padding, dilation=dilation,
                          algorithm="winograd_f4x4")
    assert plan.kernel == ("stages" if staged else "blocks")

    def refuse(*args, **kw):
        raise AssertionError("the other Winograd kernel ran")

    monkeypatch.setattr(winograd, "winograd_conv2d" if staged else "winograd_input_stage",
                        refuse)
    numbaconv.conv2d(x, w, padding=padding, dilation=dilation, algorithm="winograd_f4x4")


def test_plan_names_the_gemm_kernel():
    from numbaconv.registry import gemm_kernel

    for xs, ws, kwargs, kernel in [((1, 48, 1, 1), (8, 48, 1, 1), {}, "vector_products"),
                                   ((1, 64, 14, 14), (32, 64, 1, 1), {}, "pointwise"),
                                   ((1, 64, 14, 14), (32, 64, 3, 3), dict(padding=1),
                                    "im2col_whole")]:
        plan = numbaconv.plan(np.empty(xs, np.float32), np.empty(ws, np.float32), **kwargs,
                              algorithm="gemm")
        assert plan.kernel == gemm_kernel(plan.spec) == kernel
        assert plan.kernel_summary in repr(plan)


def test_specs_of_exact_arguments_are_kept_and_refusals_repeat():
    """conv_spec and conv_transpose_spec keep the specs of exact arguments (spec._SPECS):
    the same arguments give the same spec object; arguments equal to kept ones but of
    another type (True for 1, 1.0, a NumPy int) are validated anew, and refused as
    before; a refused call keeps nothing and is refused again."""
    from numbaconv import spec as spec_module
    from numbaconv.spec import conv_transpose_spec

    spec_module._SPECS.clear()
    args = ("conv2d", (2, 4, 9, 9), (6, 4, 3, 3), None, 1, 1, 1, 1, "zeros", np.float32)
    first = conv_spec(*args)
    assert conv_spec(*args) is first
    assert conv_spec("conv2d", [2, 4, 9, 9], [6, 4, 3, 3], *args[3:]) is first  # lists
    kept = len(spec_module._SPECS)
    for stride in (True, 1.0):
        with pytest.raises(TypeError, match="stride"):
            conv_spec("conv2d", (2, 4, 9, 9), (6, 4, 3, 3), None, stride, 1, 1, 1, "zeros",
                      np.float32)
    numpy_stride = conv_spec("conv2d", (2, 4, 9, 9), (6, 4, 3, 3), None, np.int64(1), 1, 1,
                             1, "zeros", np.float32)
    assert numpy_stride == first and numpy_stride is not first  # valid, not kept
    for _ in range(2):
        with pytest.raises(ValueError, match="groups"):
            conv_spec("conv2d", (2, 4, 9, 9), (6, 4, 3, 3), None, 1, 1, 1, 4, "zeros",
                      np.float32)
    assert len(spec_module._SPECS) == kept
    t_args = ("conv_transpose2d", (2, 4, 5, 5), (4, 3, 3, 3), None, 2, 1, 1, 1, 1,
              np.dtype(np.float32))
    assert conv_transpose_spec(*t_args) is conv_transpose_spec(*t_args)
    spec_module._SPECS.clear()


class TestRepeatedCalls:
    """conv2d keeps the spec and plan of plain CPU calls (functional._REPEATS); a repeat
    must behave exactly as a first call: same result, same refusals, memory limit checked."""

    @pytest.fixture(autouse=True)
    def empty_cache(self):
        from numbaconv import functional

        functional._REPEATS.clear()
        yield functional._REPEATS
        functional._REPEATS.clear()

    def test_a_repeat_is_served_from_the_cache_and_computes_the_same(self, rng, empty_cache):
        x = rng.standard_normal((2, 3, 9, 8)).astype(np.float32)
        w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
        first = numbaconv.conv2d(x, w, padding=1)
        assert len(empty_cache) == 1
        x2 = rng.standard_normal(x.shape).astype(np.float32)
        again = numbaconv.conv2d(x2, w, padding=1)
        assert len(empty_cache) == 1
        np.testing.assert_array_equal(first, numbaconv.conv2d(x, w, padding=1))
        fresh = numbaconv.conv2d(x2, w, padding=(1, 1))  # another key, planned anew
        assert len(empty_cache) == 2
        np.testing.assert_array_equal(again, fresh)

    @pytest.mark.parametrize("xs, ws, kwargs", [
        ((1, 48, 1, 1), (24, 48, 1, 1), {}),                    # vector products
        ((2, 32, 7, 9), (40, 32, 1, 1), {}),                    # pointwise
        ((2, 32, 7, 9), (40, 16, 1, 1), dict(groups=2)),        # grouped pointwise
        ((1, 32, 9, 9), (20, 32, 1, 1), dict(stride=2)),        # strided 1x1
        ((1, 16, 10, 10), (16, 16, 3, 3), dict(padding=1)),     # Winograd
        ((48, 3, 7), (5, 3, 3), dict(padding=2)),               # conv1d, unbatched
    ])
    @pytest.mark.parametrize("with_bias", [True, False])
    def test_prepared_repeats_compute_what_first_calls_do(self, rng, xs, ws, kwargs, with_bias):
        """From its second call a layer runs planner.prepare's runner: every call, with new
        data, a non-contiguous input and another thread count, must match the reference."""
        import numba

        w = rng.standard_normal(ws).astype(np.float32)
        b = rng.standard_normal(ws[0]).astype(np.float32) if with_bias else None
        conv = numbaconv.conv1d if len(ws) == 3 else numbaconv.conv2d
        op = "conv1d" if len(ws) == 3 else "conv2d"
        full = dict(stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros") | kwargs
        threads = numba.get_num_threads()
        try:
            for call in range(4):
                x = rng.standard_normal(xs[:-1] + (2 * xs[-1],)).astype(np.float32)
                x = x[..., ::2] if call == 2 else np.ascontiguousarray(x[..., ::2])
                if call == 3:
                    numba.set_num_threads(1)
                expected = reference_conv(op, x, w, b, **full)
                np.testing.assert_allclose(conv(x, w, b, **kwargs), expected, rtol=2e-4,
                                           atol=2e-4)
        finally:
            numba.set_num_threads(threads)

    @pytest.mark.parametrize("kwargs, error", [
        (dict(stride=1.0), TypeError), (dict(stride=True), TypeError),
        (dict(padding=(1.0, 1)), TypeError), (dict(groups=2), ValueError),
        (dict(padding="full"), ValueError), (dict(algorithm="nope"), ValueError),
    ])
    def test_arguments_equal_to_a_cached_call_are_still_validated(self, kwargs, error):
        x = np.ones((1, 3, 6, 6), np.float32)
        w = np.ones((4, 3, 3, 3), np.float32)
        numbaconv.conv2d(x, w, padding=1)  # 1.0 == True == 1: a key built from them would hit
        args = dict(dict(padding=1), **kwargs)
        with pytest.raises(error):
            numbaconv.conv2d(x, w, **args)

    def test_the_memory_limit_applies_to_repeats(self):
        x = np.ones((1, 3, 64, 64), np.float32)
        w = np.ones((4, 3, 3, 3), np.float32)
        numbaconv.conv2d(x, w, padding=1)
        numbaconv.set_memory_limit(1000)  # bytes: less than the output
        try:
            with pytest.raises(MemoryError):
                numbaconv.conv2d(x, w, padding=1)
        finally:
            numbaconv.set_memory_limit(None)

    def test_only_plain_numpy_calls_are_cached(self, empty_cache, tmp_path, monkeypatch):
        monkeypatch.setenv("NUMBACONV_CACHE_DIR", str(tmp_path))  # autotune's decisions
        x = np.ones((1, 2, 4, 4), np.float32)
        w = np.ones((2, 1, 3, 3), np.float32)
        numbaconv.conv2d(x.tolist(), w, padding=1, groups=2)  # nested lists
        numbaconv.conv2d(x, w, padding=[1, 1], groups=2)  # a list: its items are unchecked
        numbaconv.conv2d(x.view(np.recarray), w, groups=2)  # an ndarray subclass
        numbaconv.conv2d(x, w, padding=1, groups=2, algorithm="autotune")
        assert not empty_cache
