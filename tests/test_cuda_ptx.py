"""Every GPU kernel compiles to PTX for real targets (no GPU or driver needed).

The CUDA simulator runs kernels as Python and misses typing errors that real compilation
catches (shared-array shapes that are not constants, float64 creeping into float32
kernels, unsupported intrinsics); this compiles each kernel signature the GPU path
launches with the toolkit's NVVM from the ``numbaconv[cuda]`` extra.
"""

import os

import pytest

if os.environ.get("CI", "").lower() not in ("1", "true", "yes"):
    pytest.importorskip("numba_cuda", reason="needs numba-cuda: pip install -e '.[cuda]'")

from numbaconv.cuda import runtime  # noqa: E402

if runtime.simulated():
    pytest.skip("NUMBA_ENABLE_CUDASIM is set: the simulator cannot compile PTX",
                allow_module_level=True)

SIGNATURES = runtime.ptx_signatures()


@pytest.mark.parametrize("cc", [(8, 0), (9, 0)], ids=["sm_80", "sm_90"])
@pytest.mark.parametrize("label, source, dtype, signature", SIGNATURES,
                         ids=[entry[0] for entry in SIGNATURES])
def test_compiles_to_ptx(label, source, dtype, signature, cc):
    ptx = runtime.compile_ptx(source, dtype, signature, cc)
    assert f".target sm_{cc[0]}{cc[1]}" in ptx
    assert ".entry" in ptx
    if dtype == "float32" and "gather" not in label:
        # float32 kernels must not compute in float64 (10-64x slower on most GPUs)
        assert ".f64" not in ptx, "float64 arithmetic in a float32 kernel"


def test_every_launched_kernel_is_checked():
    """The list covers each kernel factory the GPU modules define."""
    from numbaconv.cuda import (direct, elementwise, gemm, interpolate, layout, norm, pool,
                                transposed, weight_grad, winograd)

    listed = {entry[1] for entry in SIGNATURES}
    factories = {direct._direct_source, layout._pad_source, layout._pad_gather_source, *gemm.MATMUL.values(),
                 *layout.GATHER.values(), *winograd.WEIGHT_TRANSFORM.values(),
                 *winograd.INPUT_TRANSFORM.values(), *winograd.OUTPUT_TRANSFORM.values(),
                 *elementwise.UNARY.values(), elementwise._add_source,
                 elementwise._bias_columns_source, elementwise._prelu_source, pool._max_pool_source,
                 pool._avg_pool_source, pool._adaptive_source, pool._unpool_source,
                 pool._fill_source, norm._affine_source, *norm.NORMALIZE.values(),
                 *norm.SOFTMAX.values(), transposed._transposed_source,
                 weight_grad._weight_grad_source, *interpolate.RESIZE.values()}
    assert factories <= listed
