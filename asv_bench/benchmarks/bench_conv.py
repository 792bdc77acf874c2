"""asv benchmarks: numbaconv's algorithms on the public layer set, torch as a peer.

Run from asv_bench/: ``asv run --python=same`` (see the README). Data are seeded and
built in ``setup``, which also makes the first (compiling) call, so ``time_`` measures
warm calls only; compile time and start-up are measured by ``ColdStart``.
"""

import os
import subprocess
import sys
import tempfile

import numpy as np

import numbaconv
from numbaconv.bench import LAYER_CASES, conv_kwargs, load_layers, make_arrays

LAYERS = load_layers()
ALGORITHMS = ["auto", "direct", "gemm", "winograd_f2x2", "winograd_f4x4", "torch"]
BIG_LAYERS = ["resnet_3x3_64_b8", "resnet_3x3_512_b8", "depthwise_b8"]


def _torch():
    try:
        import torch
    except ImportError:
        return None
    import numba

    torch.set_num_threads(numba.get_num_threads())  # same threads as numbaconv
    return torch


class Conv2dLayers:
    params = (list(LAYERS), ALGORITHMS, ["float32", "float64"])
    param_names = ["layer", "algorithm", "dtype"]
    timeout = 300

    def setup(self, layer, algorithm, dtype):
        spec = LAYERS[layer]
        self.x, self.w, self.b = make_arrays(spec, np.dtype(dtype))
        self.kwargs = conv_kwargs(spec)
        if algorithm == "torch":
            torch = _torch()
            if torch is None:
                raise NotImplementedError("torch is not installed")
            tx, tw, tb = (torch.from_numpy(a) for a in (self.x, self.w, self.b))
            self.call = lambda: torch.nn.functional.conv2d(tx, tw, tb, **self.kwargs)
        else:
            try:
                self.plan = numbaconv.plan(self.x, self.w, self.b, **self.kwargs,
                                           algorithm=algorithm)
            except numbaconv.UnsupportedAlgorithm as exc:
                raise NotImplementedError(str(exc))  # asv skips the combination
            self.call = lambda: numbaconv.conv2d(self.x, self.w, self.b, **self.kwargs,
                                                 algorithm=algorithm)
        self.flops = numbaconv.plan(self.x, self.w, self.b, **self.kwargs).flops
        self.call()  # compile / warm up

    def time_conv2d(self, layer, algorithm, dtype):
        self.call()

    def track_gflops(self, layer, algorithm, dtype):
        import time

        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            self.call()
            best = min(best, time.perf_counter() - start)
        return self.flops / best / 1e9

    track_gflops.unit = "GFLOP/s"


GPU_ALGORITHMS = ["auto", "direct", "winograd_f2x2", "winograd_f4x4", "torch"]


def _gpu():
    """numba.cuda with a real GPU, else NotImplementedError (asv then skips)."""
    try:
        from numba import cuda
    except ImportError:
        raise NotImplementedError("numba-cuda is not installed (pip install 'numbaconv[cuda]')")
    if cuda.config.ENABLE_CUDASIM or not cuda.is_available():
        raise NotImplementedError("no CUDA GPU")
    return cuda


class GpuConv2dLayers:
    """The GPU kernels on device arrays; every timed call waits for the device."""

    params = (list(LAYERS), GPU_ALGORITHMS)
    param_names = ["layer", "algorithm"]
    timeout = 300

    def setup(self, layer, algorithm):
        cuda = _gpu()
        spec = LAYERS[layer]
        x, w, b = make_arrays(spec, np.float32)
        kwargs = conv_kwargs(spec)
        if algorithm == "torch":
            torch = _torch()
            if torch is None or not torch.cuda.is_available():
                raise NotImplementedError("torch with CUDA is not installed")
            tx, tw, tb = (torch.from_numpy(a).cuda() for a in (x, w, b))
            run = lambda: torch.nn.functional.conv2d(tx, tw, tb, **kwargs)
            self.sync = torch.cuda.synchronize
        else:
            try:
                numbaconv.plan(x, w, b, **kwargs, algorithm=algorithm, device="cuda")
            except numbaconv.UnsupportedAlgorithm as exc:
                raise NotImplementedError(str(exc))
            dx, dw, db = (cuda.to_device(a) for a in (x, w, b))
            run = lambda: numbaconv.conv2d(dx, dw, db, **kwargs, algorithm=algorithm)
            self.sync = cuda.synchronize
        self.run = run
        self.run()
        self.sync()

    def time_conv2d(self, layer, algorithm):
        self.run()
        self.sync()


class OtherLayers:
    """Pooling, transposed convolution and linear (``numbaconv.bench.LAYER_CASES``)."""

    params = (list(LAYER_CASES), ["numbaconv", "torch"])
    param_names = ["layer", "library"]
    timeout = 300

    def setup(self, layer, library):
        function, shapes, kwargs = LAYER_CASES[layer]
        rng = np.random.default_rng(0)
        arrays = [rng.standard_normal(s, dtype=np.float32) for s in shapes]
        if library == "torch":
            torch = _torch()
            if torch is None:
                raise NotImplementedError("torch is not installed")
            tensors = [torch.from_numpy(a) for a in arrays]
            self.call = lambda: getattr(torch.nn.functional, function)(*tensors, **kwargs)
        else:
            self.call = lambda: getattr(numbaconv, function)(*arrays, **kwargs)
        self.call()

    def time_layer(self, layer, library):
        self.call()


class PeakMemory:
    params = (BIG_LAYERS, ["auto", "torch"])
    param_names = ["layer", "algorithm"]
    timeout = 300

    def setup(self, layer, algorithm):
        Conv2dLayers.setup(self, layer, algorithm, "float32")

    def peakmem_conv2d(self, layer, algorithm):
        self.call()


_START = """
import time
t0 = time.perf_counter()
import numpy as np, numbaconv
x = np.ones((1, 3, 32, 32), np.float32); w = np.ones((8, 3, 3, 3), np.float32)
numbaconv.conv2d(x, w, padding=1)
print(time.perf_counter() - t0)
"""


def _start_seconds(cache_dir):
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    out = subprocess.run([sys.executable, "-c", _START], env=env, capture_output=True, text=True,
                         check=True)
    return float(out.stdout.strip().splitlines()[-1])


class ColdStart:
    """Fresh processes: import + first conv2d, with an empty and with a warm JIT cache."""

    timeout = 600
    number = 1
    repeat = 1

    def setup(self):
        self.cache = tempfile.mkdtemp(prefix="numbaconv-asv-")

    def track_empty_cache_seconds(self):
        return _start_seconds(tempfile.mkdtemp(prefix="numbaconv-asv-cold-"))

    def track_warm_cache_seconds(self):
        _start_seconds(self.cache)  # fills the cache
        return min(_start_seconds(self.cache) for _ in range(3))

    track_empty_cache_seconds.unit = "s"
    track_warm_cache_seconds.unit = "s"


#: The first call of each common kind of layer, as a newcomer makes it (float32).
_FIRST_CALLS = {
    "winograd_3x3": "numbaconv.conv2d(r((1, 64, 56, 56)), r((64, 64, 3, 3)), padding=1)",
    "direct_strided": "numbaconv.conv2d(r((1, 64, 56, 56)), r((64, 64, 3, 3)), stride=2, padding=1)",
    "pointwise": "numbaconv.conv2d(r((1, 64, 56, 56)), r((64, 64, 1, 1)))",
    "depthwise": "numbaconv.conv2d(r((1, 64, 56, 56)), r((64, 1, 3, 3)), padding=1, groups=64)",
    "max_pool2d": "numbaconv.max_pool2d(r((1, 64, 56, 56)), 3, 2, 1)",
    "cnn_forward": "from numbaconv import nn; nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), "
                   "nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), "
                   "nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 10)).eval()("
                   "r((4, 1, 28, 28)))",
}


class FirstCallCompile:
    """Seconds of the first call of each kind in a fresh process with an empty JIT cache
    (the import excluded): what a newcomer waits for while the kernels compile."""

    params = list(_FIRST_CALLS)
    param_names = ["kind"]
    timeout = 600
    number = 1
    repeat = 1

    def track_first_call_seconds(self, kind):
        code = ("import time, warnings, numpy as np, numbaconv\n"
                "warnings.simplefilter('ignore')\n"
                "r = lambda s: np.random.default_rng(0).standard_normal(s).astype(np.float32)\n"
                f"t0 = time.perf_counter()\n{_FIRST_CALLS[kind]}\n"
                "print(time.perf_counter() - t0)")
        env = dict(os.environ, NUMBA_CACHE_DIR=tempfile.mkdtemp(prefix="numbaconv-asv-cold-"))
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, check=True)
        return float(out.stdout.strip().splitlines()[-1])

    track_first_call_seconds.unit = "s"

