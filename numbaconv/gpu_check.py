"""``python -m numbaconv gpucheck``: the GPU hardware check, in one command.

On a machine with an NVIDIA GPU, numba-cuda and torch (a CUDA build), from the working
tree and without installing anything (``PYTHONPATH=. python -m numbaconv gpucheck``, so it
runs where nothing can be downloaded), it runs in turn:

1. the GPU-marked tests (``tests/test_cuda_hardware.py``: realistic sizes, the public
   API against the CPU and torch CUDA);
2. the GPU kernel suite (``tests_cuda``) on the device instead of the simulator
   (``NUMBA_ENABLE_CUDASIM=0``);
3. the GPU bench: the public convolution layers (``bench --device cuda``) and the other
   layers (``layers --device cuda``) against torch CUDA with TF32 off, then a ResNet-18
   forward pass at batch 32 on the GPU (``Module.to("cuda")``, no host round trip
   between layers) against torch's;

within ``budget`` seconds (each step gets what is left, the tests at most half), then
prints a summary. Exits 0 when every step passed.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pytest(label: str, args: list, env: dict, timeout: float, results: list) -> None:
    started = time.perf_counter()
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args]
    print(f"\n== {label}: {' '.join(command[1:])}", flush=True)
    try:
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=max(timeout, 1))
        summary = (done.stdout.strip().splitlines() or ["(no output)"])[-1]
        print(done.stdout[-4000:] + done.stderr[-2000:], flush=True)
        ok = done.returncode == 0
    except subprocess.TimeoutExpired:
        summary, ok = f"timed out after {timeout:.0f} s", False
    results.append((label, ok, f"{summary} ({time.perf_counter() - started:.0f} s)"))


def _resnet18_forward(torch, batch: int, repeat: int) -> str:
    """numbaconv's ResNet-18 on the GPU against torch's, same weights: ms and error."""
    from numba import cuda

    from . import bench_models, nn

    torch.manual_seed(0)
    reference = bench_models.builtin_models(torch.nn)["resnet18"]().cuda().eval()
    model = bench_models.builtin_models(nn)["resnet18"]()
    model.load_state_dict({k: v.cpu().numpy() for k, v in reference.state_dict().items()})
    model.eval().to("cuda")
    x = torch.randn(batch, 3, 224, 224, device="cuda")
    dx = cuda.as_cuda_array(x)

    def ours():
        out = model(dx)
        cuda.synchronize()
        return out

    def theirs():
        with torch.no_grad():
            out = reference(x)
        torch.cuda.synchronize()
        return out

    error = (torch.as_tensor(ours(), device="cuda") - theirs()).abs().max().item()
    scale = theirs().abs().max().item()
    best = {ours: math.inf, theirs: math.inf}
    for _ in range(repeat):
        for call in (ours, theirs):
            started = time.perf_counter()
            call()
            best[call] = min(best[call], time.perf_counter() - started)
    return (f"ResNet-18 forward, batch {batch}, on the GPU: numbaconv {best[ours] * 1e3:.2f} ms, "
            f"torch {best[theirs] * 1e3:.2f} ms, ratio {best[ours] / best[theirs]:.2f}; "
            f"max abs difference {error:.2e} (largest logit {scale:.2e})")


def run_gpu_check(budget: float = 480) -> int:
    """The check (see the module docstring); returns the exit status."""
    deadline = time.perf_counter() + budget
    results = []
    print("numbaconv GPU hardware check", flush=True)
    try:
        from .cuda.runtime import require_gpu

        cuda = require_gpu()
        if cuda.config.ENABLE_CUDASIM:
            raise RuntimeError("NUMBA_ENABLE_CUDASIM is set: this check needs the real GPU")
        device = cuda.get_current_device()
        print(f"device: {device.name} (compute capability {device.compute_capability})")
    except Exception as error:  # noqa: BLE001 - CudaUnavailable and the simulator
        print(f"no GPU to check: {error}")
        return 2
    try:
        import torch
        torch_cuda = torch.cuda.is_available()
        print(f"torch {torch.__version__}, CUDA {'available' if torch_cuda else 'not available'}")
    except ImportError:
        torch, torch_cuda = None, False
        print("torch is not installed: numbaconv figures only")
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT),
                                                        os.environ.get("PYTHONPATH")])))
    half = budget / 2
    _pytest("GPU-marked tests", ["-m", "gpu", "tests/test_cuda_hardware.py"], env,
            min(half / 2, deadline - time.perf_counter()), results)
    _pytest("GPU kernel suite on the device", ["tests_cuda"], env,
            min(half, deadline - time.perf_counter()) - 10, results)

    from . import bench

    started = time.perf_counter()
    try:
        print("\n== GPU bench (torch CUDA with TF32 off)", flush=True)
        rows = bench.run_bench(device="cuda", repeat=10, numpy_peer=False,
                               use_torch=torch_cuda, progress=open(os.devnull, "w"))
        conv = [r["ratio"] for r in rows if r["ratio"] is not None]
        winograd = [r["ratio"] for r in rows if r["ratio"] and r["algorithm"].startswith("wino")]
        others = bench.run_layer_bench(repeat=10, device="cuda", use_torch=torch_cuda)
        lines = [f"conv layers: geomean time ratio {_geomean(conv)} (Winograd layers "
                 f"{_geomean(winograd)})",
                 "other layers: " + ", ".join(f"{k} {v:.2f}" for k, v in others.items())]
        if torch_cuda and deadline - time.perf_counter() > 30:
            lines.append(_resnet18_forward(torch, 32, 5))
        for line in lines:
            print(line, flush=True)
        results.append(("GPU bench", True, "; ".join(lines) +
                         f" ({time.perf_counter() - started:.0f} s)"))
    except Exception as error:  # noqa: BLE001 - reported in the summary
        results.append(("GPU bench", False, f"{type(error).__name__}: {error}"))
    print("\n== summary (ratio = numbaconv / torch time: below 1 is faster)")
    for label, ok, text in results:
        print(f"{'PASS' if ok else 'FAIL'}  {label}: {text}")
    return 0 if all(ok for _, ok, _ in results) else 1


def _geomean(values) -> str:
    if not values:
        return "-"
    return f"{math.exp(sum(math.log(v) for v in values) / len(values)):.2f}"
