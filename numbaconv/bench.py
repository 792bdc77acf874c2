"""The bench command: numbaconv against torch (and NumPy) on the public layer set.

Both libraries run in this one process on the same number of threads, taking turns
call by call so that machine noise hits both alike (each turn settles first, see
:func:`interleaved_best`); the best of ``repeat`` runs is reported. Accuracy is max |out - ref| / max |ref| against a float64 computation.
"""

from __future__ import annotations

import json
import math
import sys
import time
from importlib import resources

import numpy as np

from . import functional, planner

FIELDS = ("N", "C", "H", "W", "K", "R", "S", "stride", "padding", "dilation", "groups")


def load_layers() -> dict:
    """The public benchmark layers: name -> dict of FIELDS."""
    text = resources.files("numbaconv").joinpath("layers.json").read_text()
    table = json.loads(text)
    return {name: dict(zip(FIELDS, row)) for name, row in table.items() if not name.startswith("_")}


def make_arrays(layer: dict, dtype=np.float32, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((layer["N"], layer["C"], layer["H"], layer["W"]), dtype=np.float64)
    w = rng.standard_normal((layer["K"], layer["C"] // layer["groups"], layer["R"], layer["S"]))
    w /= math.sqrt(w[0].size)  # keeps outputs O(1), as trained weights do
    b = rng.standard_normal(layer["K"])
    return x.astype(dtype), w.astype(dtype), b.astype(dtype)


def conv_kwargs(layer: dict) -> dict:
    return dict(stride=layer["stride"], padding=layer["padding"], dilation=layer["dilation"],
                groups=layer["groups"])


def _best_time(fn, repeat: int) -> float:
    best = math.inf
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


#: Pause before each library's turn in :func:`interleaved_best`. torch's OpenMP threads
#: (its own copy of libgomp, apart from Numba's) and Numba's keep spinning on the cores
#: for a while after each parallel region, and slow whatever the other library runs
#: next: measured (2 threads, AVX-512), ConvNeXt's 4x4 stride-4 stem took 0.79 ms right
#: after a torch call and 0.28 ms after a 0.5 ms pause; torch's times move the same way.
SETTLE_SECONDS = 0.002


def interleaved_best(ours, peer, repeat: int) -> tuple:
    """Best seconds of ``ours`` and of ``peer`` (inf when None) over ``repeat`` rounds in
    which each takes its turn: both see the same machine state.

    A turn is a pause (``SETTLE_SECONDS``, so that the other library's threads have
    stopped spinning), one untimed call (which wakes this library's threads), then the
    timed call: each library is measured as it runs in a model, back to back with
    itself, and never while the other's threads compete for the cores.
    """
    t_ours, t_peer = math.inf, math.inf
    for _ in range(repeat):
        t_ours = min(t_ours, _settled_time(ours))
        if peer is not None:
            t_peer = min(t_peer, _settled_time(peer))
    return t_ours, t_peer


def interleaved_rounds(ours, peer, repeat: int) -> tuple[list, list]:
    """The seconds of each of ``repeat`` rounds of :func:`interleaved_best`'s turns, for
    ``ours`` and for ``peer``, which go first in alternate rounds (neither always follows
    the other): for the ratio of each round's pair, whose median is steadier than the
    ratio of the bests where the machine's speed drifts between rounds."""
    t_ours, t_peer = [], []
    for round_ in range(repeat):
        if round_ % 2:
            t_peer.append(_settled_time(peer))
            t_ours.append(_settled_time(ours))
        else:
            t_ours.append(_settled_time(ours))
            t_peer.append(_settled_time(peer))
    return t_ours, t_peer


def _settled_time(fn) -> float:
    time.sleep(SETTLE_SECONDS)
    fn()
    return _best_time(fn, 1)


def import_torch(use_torch: bool, out):
    """torch, or None (saying so on ``out`` when it was wanted but is not installed)."""
    if not use_torch:
        return None
    try:
        import torch
    except ImportError:
        print("torch is not installed: numbaconv figures only "
              "(pip install torch==2.13.0 for the comparison)", file=out)
        return None
    return torch


def set_threads(threads: int | None, torch) -> int:
    import numba

    threads = threads or numba.config.NUMBA_NUM_THREADS
    numba.set_num_threads(threads)
    if torch is not None:
        torch.set_num_threads(threads)
    return threads


def numpy_im2col_conv2d(x, w, b, stride, padding, dilation, groups):
    """The NumPy way a user would write it: im2col by sliding windows, then one tensordot."""
    from numpy.lib.stride_tricks import sliding_window_view

    assert groups == 1
    kh, kw = w.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    win = sliding_window_view(xp, (dilation * (kh - 1) + 1, dilation * (kw - 1) + 1), axis=(2, 3))
    win = win[:, :, ::stride, ::stride, ::dilation, ::dilation]
    out = np.tensordot(win, w, axes=([1, 4, 5], [1, 2, 3]))  # (N, OH, OW, K)
    return out.transpose(0, 3, 1, 2) + b[None, :, None, None]


def reference(x, w, b, kwargs, measured: str = "") -> np.ndarray:
    """A float64 result from an algorithm other than the ``measured`` one, as the oracle:
    GEMM (BLAS) for everything but GEMM itself, which is checked against direct."""
    oracle = "direct" if measured == "gemm" else "gemm"
    return functional.conv2d(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64),
                             **kwargs, algorithm=oracle)


def _cpu_calls(x, w, b, kwargs, algorithm, torch):
    """(numbaconv call, torch call or None, result -> NumPy array)."""
    ours = lambda: functional.conv2d(x, w, b, **kwargs, algorithm=algorithm)
    peer = None
    if torch is not None:
        tx, tw, tb = (torch.from_numpy(a) for a in (x, w, b))
        peer = lambda: torch.nn.functional.conv2d(tx, tw, tb, **kwargs)
    return ours, peer, np.asarray


def _cuda_calls(x, w, b, kwargs, algorithm, torch):
    """The same on the GPU: device arrays in, each call waits for the device to finish
    (timings include the kernels, not just their launch); torch CUDA as the peer."""
    from .cuda.runtime import require_gpu

    cuda = require_gpu()
    dx, dw, db = (cuda.to_device(a) for a in (x, w, b))

    def ours():
        out = functional.conv2d(dx, dw, db, **kwargs, algorithm=algorithm)
        cuda.synchronize()
        return out

    peer = None
    if torch is not None and torch.cuda.is_available():
        torch_exact_on_gpu(torch)
        tx, tw, tb = (torch.from_numpy(a).cuda() for a in (x, w, b))

        def peer():
            torch.nn.functional.conv2d(tx, tw, tb, **kwargs)
            torch.cuda.synchronize()
    return ours, peer, lambda out: out.copy_to_host()


def bench_layer(layer: dict, *, algorithm="auto", dtype=np.float32, repeat=15, torch=None,
                numpy_peer=True, device="cpu"):
    x, w, b = make_arrays(layer, dtype)
    kwargs = conv_kwargs(layer)
    chosen = functional.plan(x, w, b, **kwargs, algorithm=algorithm, device=device)
    calls = _cuda_calls if device == "cuda" else _cpu_calls
    ours, peer, to_host = calls(x, w, b, kwargs, chosen.algorithm, torch)
    out = to_host(ours())  # compiles on first use
    ref = reference(x, w, b, kwargs, chosen.algorithm)
    error = float(np.max(np.abs(out - ref)) / np.max(np.abs(ref)))
    row = dict(algorithm=chosen.algorithm, flops=chosen.flops, error=error)
    if peer is not None:
        peer()
    t_ours, t_peer = interleaved_best(ours, peer, repeat)
    row["ms"] = t_ours * 1e3
    row["torch_ms"] = t_peer * 1e3 if peer is not None else None
    row["ratio"] = t_ours / t_peer if peer is not None else None
    row["gflops"] = chosen.flops / t_ours / 1e9
    row["numpy_ms"] = None
    if numpy_peer and device == "cpu" and layer["groups"] == 1:  # slow (copies every window)
        numpy_call = lambda: numpy_im2col_conv2d(x, w, b, **kwargs)
        numpy_call()
        row["numpy_ms"] = _best_time(numpy_call, 3) * 1e3
    return row


def run_bench(names=None, *, algorithm="auto", dtype="float32", repeat=15, threads=None,
              use_torch=True, numpy_peer=True, device="cpu", out=sys.stdout,
              progress=sys.stderr):
    """Print the benchmark table; returns the rows. ``device='cuda'`` times the GPU
    kernels on device arrays (against torch's CUDA convolution when it has CUDA)."""
    torch = import_torch(use_torch, out)
    threads = set_threads(threads, torch)
    where = f"{threads} threads"
    if device == "cuda":
        from .cuda.runtime import require_gpu

        cuda = require_gpu()  # CudaUnavailable says what is missing
        where = f"GPU {cuda.get_current_device().name!r}"
        if torch is not None and not torch.cuda.is_available():
            print("torch has no CUDA here: numbaconv figures only", file=out)
            torch = None
    layers = load_layers()
    names = names or list(layers)
    unknown = [n for n in names if n not in layers]
    if unknown:
        raise SystemExit(f"unknown layer(s) {unknown}; choose from {list(layers)}")
    print(f"numbaconv bench: {dtype}, {where}, best of {repeat}, "
          f"algorithm={algorithm}; ratio = numbaconv / torch time; numpy = im2col by "
          f"sliding windows + tensordot (groups=1 layers)", file=out)
    header = (f"{'layer':20s} {'algorithm':14s} {'numbaconv ms':>12s} {'torch ms':>9s} "
              f"{'ratio':>6s} {'GFLOP/s':>8s} {'max rel err':>11s} {'numpy ms':>9s}")
    print(header, file=out)
    print("-" * len(header), file=out)
    rows = []
    for i, name in enumerate(names, 1):
        print(f"[{i}/{len(names)}] {name} ...", file=progress, flush=True)
        try:
            row = bench_layer(layers[name], algorithm=algorithm, dtype=np.dtype(dtype),
                              repeat=repeat, torch=torch, numpy_peer=numpy_peer, device=device)
        except planner.UnsupportedAlgorithm as exc:
            print(f"{name:20s} {'-':14s} unsupported: {exc}", file=out)
            continue
        rows.append(row)
        torch_ms = f"{row['torch_ms']:9.3f}" if row["torch_ms"] is not None else f"{'-':>9s}"
        ratio = f"{row['ratio']:6.2f}" if row["ratio"] is not None else f"{'-':>6s}"
        numpy_ms = f"{row['numpy_ms']:9.2f}" if row["numpy_ms"] is not None else f"{'-':>9s}"
        print(f"{name:20s} {row['algorithm']:14s} {row['ms']:12.3f} {torch_ms} {ratio} "
              f"{row['gflops']:8.1f} {row['error']:11.2e} {numpy_ms}", file=out, flush=True)
    ratios = [r["ratio"] for r in rows if r["ratio"] is not None]
    if ratios:
        geomean = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
        print(f"geometric-mean time ratio numbaconv/torch: {geomean:.3f} "
              f"(< 1 means numbaconv is faster)", file=out)
    return rows


# --------------------------------------------------------------------------- other layers

#: name -> (function name in numbaconv and torch.nn.functional, array shapes, keyword
#: arguments);
#: shapes of the layers around the public convolutions (ResNet, VGG, LeNet, a classifier).
LAYER_CASES = {
    "max_pool2d_3x3s2_b8": ("max_pool2d", [(8, 64, 112, 112)], dict(kernel_size=3, stride=2,
                                                                      padding=1)),
    "max_pool2d_2x2_b8": ("max_pool2d", [(8, 128, 56, 56)], dict(kernel_size=2)),
    "avg_pool2d_2x2_b8": ("avg_pool2d", [(8, 128, 56, 56)], dict(kernel_size=2)),
    "conv_transpose2d_s2_b8": ("conv_transpose2d", [(8, 64, 28, 28), (64, 32, 4, 4)],
                               dict(stride=2, padding=1)),
    "conv_transpose2d_3x3_b8": ("conv_transpose2d", [(8, 64, 28, 28), (64, 64, 3, 3)],
                                dict(padding=1)),
    "linear_4096_b64": ("linear", [(64, 4096), (1000, 4096)], {}),
    "relu_b8": ("relu", [(8, 64, 112, 112)], {}),
}


def torch_exact_on_gpu(torch) -> None:
    """torch's CUDA convolutions and matrix products in true fp32 (TF32 off), as ours."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def run_layer_bench(repeat=15, threads=None, use_torch=True, out=sys.stdout, device="cpu"):
    """Time pooling, transposed convolution, linear and relu against torch (same threads);
    ``device='cuda'``: on device arrays against torch CUDA, each call waiting for its
    kernels. Returns {layer: numbaconv / torch time}."""
    import numbaconv

    torch = import_torch(use_torch, out)
    where = f"{set_threads(threads, torch)} threads"
    to_device = to_host = lambda a: a  # noqa: E731
    wait = lambda: None  # noqa: E731
    torch_device = "cpu"
    if device == "cuda":
        from .cuda.runtime import require_gpu

        cuda = require_gpu()
        where = f"GPU {getattr(cuda.get_current_device(), 'name', 'simulated')!r}"
        to_device, to_host, wait = cuda.to_device, (lambda a: a.copy_to_host()), cuda.synchronize
        torch = torch if torch is not None and torch.cuda.is_available() else None
        if torch is not None:
            torch_exact_on_gpu(torch)
            torch_device = "cuda"
    print(f"numbaconv layers bench: float32, {where}, best of {repeat}", file=out)
    print(f"{'layer':26s} {'numbaconv ms':>12s} {'torch ms':>9s} {'ratio':>6s} {'max abs diff':>12s}",
          file=out)
    rng = np.random.default_rng(0)
    ratios = {}
    for name, (function, shapes, kwargs) in LAYER_CASES.items():
        arrays = [rng.standard_normal(s, dtype=np.float32) / math.sqrt(s[-1]) for s in shapes]
        inputs = [to_device(a) for a in arrays]

        def ours():
            result = getattr(numbaconv, function)(*inputs, **kwargs)
            wait()
            return result
        result = to_host(ours())
        peer, diff = None, "-"
        if torch is not None:
            tensors = [torch.from_numpy(a).to(torch_device) for a in arrays]

            def peer():
                result = getattr(torch.nn.functional, function)(*tensors, **kwargs)
                if torch_device == "cuda":
                    torch.cuda.synchronize()
                return result
            diff = f"{np.abs(result - peer().cpu().numpy()).max():12.2e}"
        t_ours, t_peer = interleaved_best(ours, peer, repeat)
        torch_ms = f"{t_peer * 1e3:9.3f}" if peer else f"{'-':>9s}"
        ratio = f"{t_ours / t_peer:6.2f}" if peer else f"{'-':>6s}"
        if peer:
            ratios[name] = t_ours / t_peer
        print(f"{name:26s} {t_ours * 1e3:12.3f} {torch_ms} {ratio} {diff:>12s}", file=out,
              flush=True)
    return ratios
