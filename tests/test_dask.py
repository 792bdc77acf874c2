"""numbaconv on Dask arrays: every chunking gives the in-memory result.

Property tests draw shapes, layer arguments and chunkings (chunks of one position, chunks
smaller than the halo, one chunk) and compare the lazy result, computed with Dask's
synchronous scheduler, with the in-memory call (itself checked against torch and the NumPy
reference elsewhere; a few cases against torch here too). One test runs a real
``LocalCluster`` with worker processes.
"""

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import numbaconv
from numbaconv import nn

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
if IN_CI:  # CI installs numbaconv[dask]: these tests must run there, never skip
    import dask.array as da
else:
    da = pytest.importorskip("dask.array")
import dask  # noqa: E402

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(autouse=True)
def synchronous():
    with dask.config.set(scheduler="synchronous"):
        yield


def close(got, expected, dtype=np.float32):
    """Within 1e-6 of the largest value (float32; 1e-12 in float64), NaNs where expected."""
    assert got.shape == expected.shape and got.dtype == expected.dtype
    assert np.array_equal(np.isnan(got), np.isnan(expected))
    infinite = np.isinf(expected)
    assert np.array_equal(got[infinite], expected[infinite])
    finite = np.isfinite(expected)
    scale = max(float(np.abs(expected[finite]).max(initial=0.0)), 1e-30)
    error = float(np.abs(got[finite] - expected[finite]).max(initial=0.0)) / scale
    assert error <= (1e-6 if np.dtype(dtype) == np.float32 else 1e-12), error


@st.composite
def chunking(draw, shape, whole_channels=False):
    """Random chunk sizes per axis: any split, chunks of one included."""
    chunks = []
    for axis, size in enumerate(shape):
        if axis == 1 and whole_channels:
            chunks.append((size,))
            continue
        cuts = sorted(draw(st.sets(st.integers(1, size - 1), max_size=min(size - 1, 6)))) \
            if size > 1 else []
        edges = [0] + cuts + [size]
        chunks.append(tuple(b - a for a, b in zip(edges[:-1], edges[1:])))
    return tuple(chunks)


@st.composite
def conv_case(draw, nsp):
    groups = draw(st.sampled_from([1, 1, 2]))
    cin, cout = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(nsp))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(nsp))
    dilation = tuple(draw(st.integers(1, 3)) for _ in range(nsp))
    mode = draw(st.sampled_from(["zeros", "zeros", "reflect", "replicate", "circular"]))
    reach = [d * (k - 1) + 1 for d, k in zip(dilation, kernel)]
    spatial = tuple(draw(st.integers(r, r + 14)) for r in reach)
    if draw(st.booleans()) and stride == (1,) * nsp and mode == "zeros":
        padding = "same"
    else:  # reflect needs padding < size, circular <= size
        padding = tuple(draw(st.integers(0, min(4, n - 1))) for n in spatial)
    batch = draw(st.integers(1, 2))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    return (batch, cin) + spatial, (cout, cin // groups) + kernel, dict(
        stride=stride, padding=padding, dilation=dilation, groups=groups,
        padding_mode=mode), draw(st.booleans()), dtype


def _arrays(shape, wshape, bias, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal(wshape).astype(dtype)
    b = rng.standard_normal(wshape[0]).astype(dtype) if bias else None
    return x, w, b


@SETTINGS
@given(data=st.data(), nsp=st.sampled_from([1, 2]))
def test_convolution_on_any_chunking_equals_the_in_memory_call(data, nsp):
    shape, wshape, kwargs, bias, dtype = data.draw(conv_case(nsp))
    x, w, b = _arrays(shape, wshape, bias, dtype)
    chunks = data.draw(chunking(shape))
    run = numbaconv.conv2d if nsp == 2 else numbaconv.conv1d
    lazy = run(da.from_array(x, chunks=chunks), w, b, **kwargs)
    assert isinstance(lazy, da.Array)
    close(lazy.compute(), run(x, w, b, **kwargs), dtype)


@pytest.mark.parametrize("shape, kwargs, chunks", [
    ((2, 64, 40, 37), dict(padding=1), (1, 64, 13, 9)),  # F(4x4): 4x4 output tiles
    ((1, 64, 30, 33), dict(padding=2, dilation=2), (1, 32, 7, 11)),  # per dilation phase
    ((1, 32, 20, 20), dict(padding=1), (1, 32, 1, 3)),  # F(2x2), chunks of one row
    ((3, 16, 12, 12), dict(padding="same"), (2, 16, 5, 5)),
])
def test_winograd_layers_are_the_whole_calls_bit_for_bit(shape, kwargs, chunks):
    rng = np.random.default_rng(2)
    x = rng.standard_normal(shape).astype(np.float32)
    w = rng.standard_normal((64, shape[1], 3, 3)).astype(np.float32)
    assert numbaconv.plan(x, w, **kwargs).algorithm.startswith("winograd")
    lazy = numbaconv.conv2d(da.from_array(x, chunks=chunks), w, **kwargs)
    assert np.array_equal(lazy.compute(), numbaconv.conv2d(x, w, **kwargs))


@st.composite
def transpose_case(draw, nsp):
    groups = draw(st.sampled_from([1, 2]))
    cin, cout = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(nsp))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(nsp))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(nsp))
    padding = tuple(draw(st.integers(0, (d * (k - 1)))) for d, k in zip(dilation, kernel))
    output_padding = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation))
    spatial = tuple(draw(st.integers(1, 12)) for _ in range(nsp))
    return (draw(st.integers(1, 2)), cin) + spatial, (cin, cout // groups) + kernel, dict(
        stride=stride, padding=padding, output_padding=output_padding, groups=groups,
        dilation=dilation), draw(st.booleans()), draw(st.sampled_from([np.float32, np.float64]))


@SETTINGS
@given(data=st.data(), nsp=st.sampled_from([1, 2]))
def test_transposed_convolution_on_any_chunking_equals_the_in_memory_call(data, nsp):
    shape, wshape, kwargs, bias, dtype = data.draw(transpose_case(nsp))
    x, w, _ = _arrays(shape, wshape, False, dtype)
    b = np.random.default_rng(3).standard_normal(wshape[1] * kwargs["groups"]).astype(dtype) \
        if bias else None
    run = numbaconv.conv_transpose2d if nsp == 2 else numbaconv.conv_transpose1d
    try:
        expected = run(x, w, b, **kwargs)
    except ValueError:  # an output size torch rejects: the Dask call must reject it too
        with pytest.raises(ValueError):
            run(da.from_array(x), w, b, **kwargs)
        return
    chunks = data.draw(chunking(shape))
    close(run(da.from_array(x, chunks=chunks), w, b, **kwargs).compute(), expected, dtype)


@st.composite
def pool_case(draw, nsp):
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(nsp))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(nsp))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(nsp))
    padding = tuple(draw(st.integers(0, k // 2)) for k in kernel)
    spatial = tuple(draw(st.integers(d * (k - 1) + 1, 16)) for d, k in zip(dilation, kernel))
    return (draw(st.integers(1, 2)), draw(st.integers(1, 3))) + spatial, kernel, stride, \
        padding, dilation, draw(st.booleans())


@SETTINGS
@given(data=st.data(), nsp=st.sampled_from([1, 2]), kind=st.sampled_from(["max", "avg"]))
def test_pooling_on_any_chunking_equals_the_in_memory_call(data, nsp, kind):
    shape, kernel, stride, padding, dilation, ceil_mode = data.draw(pool_case(nsp))
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    x.flat[::7] = data.draw(st.sampled_from([np.nan, np.inf, -np.inf, 0.0]))
    if kind == "max":
        run = numbaconv.max_pool2d if nsp == 2 else numbaconv.max_pool1d
        kwargs = dict(stride=stride, padding=padding, dilation=dilation, ceil_mode=ceil_mode)
    else:
        x[np.isinf(x)] = 1.0  # (inf - inf in a window sum: NaN either way, but not the test)
        run = numbaconv.avg_pool2d if nsp == 2 else numbaconv.avg_pool1d
        kwargs = dict(stride=stride, padding=padding, ceil_mode=ceil_mode,
                      count_include_pad=data.draw(st.booleans()))
        if nsp == 2 and data.draw(st.booleans()):
            kwargs["divisor_override"] = data.draw(st.integers(1, 5))
    try:
        expected = run(x, kernel, **kwargs)
    except ValueError:
        return  # an output size torch rejects (checked in the error test)
    chunks = data.draw(chunking(shape))
    close(run(da.from_array(x, chunks=chunks), kernel, **kwargs).compute(), expected)


@SETTINGS
@given(data=st.data())
def test_adaptive_pooling_on_any_chunking_equals_the_in_memory_call(data):
    h, w = data.draw(st.integers(1, 17)), data.draw(st.integers(1, 17))
    x = np.random.default_rng(1).standard_normal((2, 3, h, w)).astype(np.float32)
    out = (data.draw(st.integers(1, h + 3)), data.draw(st.integers(1, w + 3)))
    chunks = data.draw(chunking(x.shape))
    lazy = da.from_array(x, chunks=chunks)
    close(numbaconv.adaptive_avg_pool2d(lazy, out).compute(),
          numbaconv.adaptive_avg_pool2d(x, out))
    close(numbaconv.adaptive_max_pool2d(lazy, out).compute(),
          numbaconv.adaptive_max_pool2d(x, out))
    close(numbaconv.adaptive_avg_pool1d(lazy[0], out[1]).compute(),
          numbaconv.adaptive_avg_pool1d(x[0], out[1]))


def test_pointwise_functions_keep_the_chunks_and_the_values(rng):
    x = rng.standard_normal((2, 4, 9, 7)).astype(np.float32)
    lazy = da.from_array(x, chunks=(1, 2, 4, 3))
    mean, var = rng.standard_normal(4).astype(np.float32), rng.random(4).astype(np.float32) + .5
    weight, bias = rng.standard_normal(4).astype(np.float32), rng.standard_normal(4)
    cases = [
        (numbaconv.relu, ()), (numbaconv.relu6, ()), (numbaconv.sigmoid, ()),
        (numbaconv.tanh, ()), (numbaconv.leaky_relu, (0.2,)), (numbaconv.hardtanh, (-.5, .5)),
        (numbaconv.hardswish, ()), (numbaconv.hardsigmoid, ()), (numbaconv.silu, ()),
        (numbaconv.gelu, ("tanh",)),
        (numbaconv.batch_norm, (mean, var, weight, bias.astype(np.float32), False, 0.1, 1e-3)),
    ]
    for function, args in cases:
        got = function(lazy, *args)
        assert got.chunks == lazy.chunks, function.__name__
        close(got.compute(), function(x, *args))
    w = rng.standard_normal((5, 7)).astype(np.float32)
    got = numbaconv.linear(lazy, w, bias[:1].repeat(5).astype(np.float32))
    assert got.chunks[:3] == lazy.chunks[:3]
    close(got.compute(), numbaconv.linear(x, w, bias[:1].repeat(5).astype(np.float32)))
    close(numbaconv.linear(lazy[0, 0, 0], w).compute(), numbaconv.linear(x[0, 0, 0], w))


def test_a_few_cases_against_torch(torch):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 19, 23)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    lazy = da.from_array(x, chunks=(1, 1, 5, 4))
    F, t = torch.nn.functional, torch.from_numpy
    pairs = [
        (numbaconv.conv2d(lazy, w, padding=2, dilation=2, padding_mode="circular"),
         torch.nn.Conv2d(3, 4, 3, padding=2, dilation=2, bias=False, padding_mode="circular")),
        (numbaconv.max_pool2d(lazy, 3, 2, 1, ceil_mode=True),
         lambda a: F.max_pool2d(a, 3, 2, 1, ceil_mode=True)),
        (numbaconv.avg_pool2d(lazy, 3, 2, 1, ceil_mode=True, count_include_pad=False),
         lambda a: F.avg_pool2d(a, 3, 2, 1, ceil_mode=True, count_include_pad=False)),
        (numbaconv.conv_transpose2d(lazy, w.transpose(1, 0, 2, 3).copy(), stride=2, padding=1,
                                    output_padding=1),
         lambda a: F.conv_transpose2d(a, t(w.transpose(1, 0, 2, 3).copy()), stride=2,
                                      padding=1, output_padding=1)),
    ]
    pairs[0][1].weight.data = t(w)
    for got, module in pairs:
        with torch.no_grad():
            close(got.compute(), module(t(x)).numpy())


def _stack_layers(graph):
    return [name for name in graph.layers if name.startswith("sequential-")
            and "-halo-" not in name and "-layers-" not in name]


def test_sequential_runs_its_layers_as_one_graph_with_one_halo(rng):
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1, rng=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.MaxPool2d(3, 2, 1), nn.Conv2d(8, 8, 3, padding=2, dilation=2, rng=2), nn.ReLU6(),
        nn.Dropout(0.5), nn.AvgPool2d(2, ceil_mode=True),
        nn.ConvTranspose2d(8, 4, 2, stride=2, rng=3), nn.Identity(), nn.SiLU(),
    ).eval()
    bn = model[1]
    bn.running_mean[:] = rng.standard_normal(8)
    bn.running_var[:] = rng.random(8) + 0.5
    x = rng.standard_normal((2, 3, 61, 50)).astype(np.float32)
    expected = model(x)
    for chunks in [(1, 3, 16, 16), (1, 1, 7, 5), (2, 3, 61, 50), (1, 2, 3, 50)]:
        lazy = model(da.from_array(x, chunks=chunks))
        assert len(_stack_layers(lazy.__dask_graph__())) == 1  # one graph for all 11 layers
        close(lazy.compute(), expected)


@st.composite
def stack_case(draw):
    """A random stack of 2-D layers that fuse into one graph, on 3 input channels."""
    channels, layers = 3, []
    for _ in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(["conv", "conv", "max", "avg", "transpose", "relu", "bn"]))
        if kind == "conv":
            out = draw(st.integers(1, 4))
            layers.append(nn.Conv2d(channels, out, draw(st.integers(1, 3)),
                                    stride=draw(st.integers(1, 2)),
                                    dilation=draw(st.integers(1, 2)),
                                    padding=draw(st.integers(0, 2)), rng=len(layers)))
            channels = out
        elif kind in ("max", "avg"):
            k = draw(st.integers(1, 3))
            pad, ceil_mode = draw(st.integers(0, k // 2)), draw(st.booleans())
            layers.append(nn.MaxPool2d(k, 2, pad, ceil_mode=ceil_mode) if kind == "max" else
                          nn.AvgPool2d(k, 2, pad, ceil_mode=ceil_mode,
                                       count_include_pad=draw(st.booleans())))
        elif kind == "transpose":
            out = draw(st.integers(1, 3))
            layers.append(nn.ConvTranspose2d(channels, out, 2, stride=draw(st.integers(1, 2)),
                                             rng=len(layers)))
            channels = out
        elif kind == "relu":
            layers.append(nn.ReLU())
        else:
            layers.append(nn.BatchNorm2d(channels).eval())
            layers[-1].running_var[:] = 2.0
    return nn.Sequential(*layers).eval()


@SETTINGS
@given(data=st.data())
def test_random_stacks_on_any_chunking_equal_the_in_memory_model(data):
    model = data.draw(stack_case())
    side = data.draw(st.integers(8, 40))
    x = np.random.default_rng(4).standard_normal((2, 3, side, side + 3)).astype(np.float32)
    try:
        expected = model(x)
    except ValueError:
        return  # an image too small for the stack (torch rejects it too)
    chunks = data.draw(chunking(x.shape))
    lazy = model(da.from_array(x, chunks=chunks))
    assert len(_stack_layers(lazy.__dask_graph__())) == 1
    close(lazy.compute(), expected)


def test_sequential_breaks_its_stack_where_a_layer_cannot_join(rng):
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1, rng=1), nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=2, padding_mode="reflect", rng=2),  # reads across chunks
        nn.MaxPool2d(2), nn.AdaptiveAvgPool2d((3, 2)), nn.Flatten(), nn.Linear(24, 5, rng=3),
    ).eval()
    x = rng.standard_normal((3, 2, 22, 17)).astype(np.float32)
    lazy = model(da.from_array(x, chunks=(2, 1, 6, 5)))
    assert len(_stack_layers(lazy.__dask_graph__())) == 2  # conv+relu | reflect conv+pool
    close(lazy.compute(), model(x))


def test_output_chunks_follow_the_input_chunks_through_the_strides():
    x = da.zeros((1, 3, 1024, 1024), chunks=(1, 3, 256, 256), dtype=np.float32)
    from numbaconv.bench_dask import bench_model

    y = bench_model()(x)  # total stride 4: every chunk a quarter
    assert y.chunks[2:] == ((64,) * 4, (64,) * 4)
    assert numbaconv.conv2d(x, np.zeros((2, 3, 3, 3), np.float32), stride=2, padding=1
                            ).chunks[2] == (128,) * 4


def test_memory_per_task_follows_the_chunks():
    x = np.random.default_rng(0).standard_normal((4, 64, 56, 56)).astype(np.float32)
    w = np.random.default_rng(1).standard_normal((64, 64, 3, 3)).astype(np.float32)
    lazy = numbaconv.conv2d(da.from_array(x, chunks=(1, 64, 14, 14)), w, padding=1)
    expected = numbaconv.conv2d(x, w, padding=1)
    numbaconv.set_memory_limit(2**20)  # 1 MiB: less than the whole call's 3 MiB output
    try:
        with pytest.raises(MemoryError):
            numbaconv.conv2d(x, w, padding=1)
        got = lazy.compute()  # each task: one image's 14x14 tile and its halo
    finally:
        numbaconv.set_memory_limit(None)
    close(got, expected)


def test_errors_are_the_in_memory_calls(rng):
    x = np.zeros((1, 2, 5, 5), np.float32)
    lazy = da.from_array(x, chunks=2)
    w = np.zeros((3, 2, 3, 3), np.float32)
    for call in [lambda a: numbaconv.conv2d(a, w, padding=-1),
                 lambda a: numbaconv.conv2d(a, w, stride=2, padding="same"),
                 lambda a: numbaconv.conv2d(a, w, padding=5, padding_mode="reflect"),
                 lambda a: numbaconv.conv2d(a, np.zeros((3, 1, 3, 3), np.float32)),
                 lambda a: numbaconv.max_pool2d(a, 3, padding=2),
                 lambda a: numbaconv.avg_pool2d(a, 7),
                 lambda a: numbaconv.conv_transpose2d(a, w, output_padding=1)]:
        with pytest.raises(ValueError) as in_memory:
            call(x)
        with pytest.raises(ValueError) as on_dask:
            call(lazy)
        assert str(on_dask.value) == str(in_memory.value)
    with pytest.raises(TypeError, match="float32 or float64"):
        numbaconv.conv2d(lazy.astype(np.int32), w)
    with pytest.raises(NotImplementedError, match="return_indices"):
        numbaconv.max_pool2d(lazy, 2, return_indices=True)
    with pytest.raises(ValueError, match="inplace"):
        numbaconv.relu6(lazy, inplace=True)
    with pytest.raises(NotImplementedError, match="training"):
        numbaconv.batch_norm(lazy, None, None, training=True)
    with pytest.raises(ValueError, match="algorithm"):
        numbaconv.conv2d(lazy, w, algorithm="gemm")
    # functions without Dask support refuse a Dask array rather than compute it whole
    for call in [lambda: numbaconv.dropout(lazy, 0.5, True),
                 lambda: numbaconv.interpolate(lazy, scale_factor=2),
                 lambda: numbaconv.layer_norm(lazy, (5,)),
                 lambda: numbaconv.conv2d(x, da.from_array(w))]:
        with pytest.raises(TypeError, match="Dask array"):
            call()


def test_the_input_by_keyword_goes_to_dask_too(rng):
    x = rng.standard_normal((1, 2, 9, 9)).astype(np.float32)
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    lazy = numbaconv.conv2d(input=da.from_array(x, chunks=4), weight=w, padding=1)
    assert isinstance(lazy, da.Array)
    close(lazy.compute(), numbaconv.conv2d(x, w, padding=1))
    assert isinstance(numbaconv.relu(input=da.from_array(x)), da.Array)


def test_two_calls_of_one_activation_in_one_graph(rng):
    x = da.from_array(rng.standard_normal((2, 3)).astype(np.float32), chunks=1)
    both = numbaconv.relu(x) + numbaconv.relu(-x)  # same function, other inputs: other keys
    close(both.compute(), np.abs(x.compute()))


def test_the_input_is_not_computed_nor_changed(rng):
    x = rng.standard_normal((1, 2, 8, 8)).astype(np.float32)
    before = x.copy()
    calls = []

    def counted(block):
        if block.size:  # (Dask may call it on an empty array to learn the result's type)
            calls.append(1)
        return block

    lazy = da.from_array(x, chunks=4).map_blocks(counted, dtype=np.float32)
    y = nn.Sequential(nn.Conv2d(2, 2, 3, padding=1, rng=0), nn.ReLU())(lazy)
    assert not calls  # building the graph computes nothing
    y.compute()
    assert np.array_equal(x, before)


def test_task_threads_setting(monkeypatch):
    from numbaconv import dask_arrays

    assert dask_arrays.task_threads() == 1
    monkeypatch.setenv("NUMBACONV_DASK_THREADS", "2")
    assert dask_arrays.task_threads() == 2
    dask_arrays.set_task_threads(3)
    try:
        assert dask_arrays.task_threads() == 3
        with pytest.raises(ValueError):
            dask_arrays.set_task_threads(0)
    finally:
        dask_arrays.set_task_threads(None)


@pytest.fixture(scope="module")
def cluster():
    """A LocalCluster of two worker processes, shared by the module's cluster tests."""
    distributed = pytest.importorskip("distributed") if not IN_CI else __import__("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as local, \
            distributed.Client(local) as client:
        yield client


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_layers_and_chunkings_on_worker_processes(cluster, data):
    if data.draw(st.booleans()):
        shape, wshape, kwargs, bias, dtype = data.draw(conv_case(2))
        x, w, b = _arrays(shape, wshape, bias, dtype)
        run = lambda a: numbaconv.conv2d(a, w, b, **kwargs)  # noqa: E731
    else:
        run = data.draw(stack_case())
        dtype = np.float32
        x = np.random.default_rng(4).standard_normal((2, 3, 24, 27)).astype(np.float32)
    try:
        expected = run(x)
    except ValueError:
        return
    lazy = run(da.from_array(x, chunks=data.draw(chunking(x.shape))))
    close(cluster.compute(lazy).result(), expected, dtype)


def _threads_in_a_task(block):
    import numba

    return np.full(block.shape, numba.get_num_threads(), np.float32)


def test_on_a_local_cluster_of_worker_processes(cluster, rng):
    model = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1, rng=1), nn.ReLU(),
                          nn.Conv2d(8, 8, 3, padding=2, dilation=2, rng=2), nn.MaxPool2d(2),
                          nn.Conv2d(8, 4, 1, rng=3)).eval()
    x = rng.standard_normal((2, 3, 96, 80)).astype(np.float32)
    lazy = model(da.from_array(x, chunks=(1, 3, 32, 32)))
    graph = dict(lazy.__dask_graph__())
    layer_keys = [k for k in graph if isinstance(k, tuple) and "-layers-" in str(k[0])]
    assert len(layer_keys) == 1  # the weights: one key every task depends on
    got = cluster.compute(lazy).result()
    close(got, model(x))
    # Numba's threads inside a task: task_threads() (1), whatever the worker's default
    from numbaconv.dask_arrays import _apply
    from numbaconv.dask_tiles import PointwiseStep

    probe = _apply(da.from_array(x, chunks=(1, 3, 48, 40)),
                   [PointwiseStep(x.shape[2:], _threads_in_a_task, np.float32)], "probe")
    assert set(np.unique(cluster.compute(probe).result())) == {1.0}


def test_an_onnx_model_runs_on_chunks_of_the_batch(torch):
    pytest.importorskip("onnx")
    import io

    import numbaconv.onnx

    class Residual(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)
            self.head = torch.nn.Linear(3, 4)

        def forward(self, x):
            y = torch.relu(self.conv(x)) + x
            return self.head(y.mean((2, 3)))

    model = Residual().eval()
    buffer = io.BytesIO()
    torch.onnx.export(model, torch.zeros(1, 3, 16, 16), buffer, dynamo=False,
                      input_names=["image"], dynamic_axes={"image": {0: "batch"}})
    ours = numbaconv.onnx.load(buffer.getvalue())
    x = np.random.default_rng(0).standard_normal((7, 3, 16, 16)).astype(np.float32)
    lazy = ours(da.from_array(x, chunks=(3, 1, 8, 16)))
    assert isinstance(lazy, da.Array) and lazy.chunks == ((3, 3, 1), (4,))
    got = lazy.compute()
    close(got, ours(x))
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


@pytest.mark.slow
@settings(max_examples=600, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data(), nsp=st.sampled_from([1, 2]))
def test_many_more_convolutions_and_stacks_on_random_chunkings(data, nsp):
    """The property tests above at 600 examples each (CI's slow pass)."""
    test_convolution_on_any_chunking_equals_the_in_memory_call.hypothesis.inner_test(
        data=data, nsp=nsp)
    test_transposed_convolution_on_any_chunking_equals_the_in_memory_call.hypothesis \
        .inner_test(data=data, nsp=nsp)
    test_random_stacks_on_any_chunking_equal_the_in_memory_model.hypothesis.inner_test(
        data=data)
