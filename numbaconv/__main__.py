"""``python -m numbaconv``: a correctness self-check and the benchmark table.

    python -m numbaconv                 # self-check, then the bench table
    python -m numbaconv compile         # compile the common kernels now, on every core
    python -m numbaconv selfcheck       # correctness only
    python -m numbaconv layers [--device cuda]   # pooling, transposed conv, linear vs torch
    python -m numbaconv gpucheck        # GPU tests + kernel suite on the device + GPU bench
    python -m numbaconv bench --set networks [--batch 8]   # 16 torchvision models' layers
    python -m numbaconv bench --backward [--batch 8]       # their conv gradients vs torch
    python -m numbaconv bench --training                   # training steps vs torch
    python -m numbaconv models [--models resnet18 ...] [--batch 1 8]   # whole CNNs via ONNX
    python -m numbaconv dask [--side 4096] [--large-side 16384]     # Zarr images on Dask
    python -m numbaconv bench [--layers resnet_3x3_64_b8 ...] [--algorithm winograd_f4x4]
                              [--repeat 15] [--threads 2] [--dtype float64] [--no-torch]
                              [--no-numpy] [--device cuda]
"""

from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m numbaconv", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("selfcheck", help="check every algorithm against a NumPy oracle")
    compile_ = sub.add_parser("compile", help="compile the common kernels into Numba's disk "
                                              "cache now, one process per core")
    compile_.add_argument("--dtype", nargs="+", default=["float32"],
                          choices=["float32", "float64"])
    compile_.add_argument("--processes", type=int, default=None,
                          help="compiling at once (default: every core)")
    layers = sub.add_parser("layers", help="time pooling, transposed conv and linear against "
                                           "torch")
    layers.add_argument("--repeat", type=int, default=15)
    layers.add_argument("--threads", type=int, default=None)
    layers.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                        help="cuda: on device arrays, against torch CUDA (TF32 off)")
    gpucheck = sub.add_parser("gpucheck", help="the GPU hardware check: the GPU tests and "
                                               "kernel suite on the device, then the GPU "
                                               "bench against torch CUDA (TF32 off)")
    gpucheck.add_argument("--budget", type=float, default=480,
                          help="seconds for the whole check (default 480)")
    bench = sub.add_parser("bench", help="time numbaconv against torch on the public layers")
    bench.add_argument("--set", default="public", choices=["public", "networks"],
                       help="public: the 10-layer table (default); networks: every layer "
                            "call of 16 torchvision models, by kind and by model")
    bench.add_argument("--batch", type=int, default=None,
                       help="--set networks and --backward: times the recorded batch "
                            "(default 1, and 8 with --backward)")
    bench.add_argument("--layers", nargs="*", help="layer names (default: all)")
    bench.add_argument("--algorithm", default="auto",
                       help="auto (default), autotune, direct, gemm, winograd_f2x2, winograd_f4x4")
    bench.add_argument("--repeat", type=int, default=None,
                       help="timed calls per library and layer, interleaved (best is shown; "
                            "default 15, 7 with --set networks, 3 with --backward, 20 "
                            "with --training)")
    bench.add_argument("--threads", type=int, default=None,
                       help="threads for numbaconv and torch alike (default: all cores)")
    bench.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    bench.add_argument("--no-torch", action="store_true", help="leave torch out")
    bench.add_argument("--no-numpy", action="store_true", help="leave the NumPy peer out")
    bench.add_argument("--backward", action="store_true",
                       help="conv2d input + weight gradients of the networks.json layers "
                            "against torch's backward (batch x8 unless --batch is given)")
    bench.add_argument("--training", action="store_true",
                       help="training steps (LeNet-5 batch 64, ResNet-18 batch 8 on 64x64) "
                            "against torch")
    bench.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                       help="cuda: time the GPU kernels on device arrays (needs a GPU and "
                            "numbaconv[cuda]), against torch CUDA when available")
    models = sub.add_parser("models", help="whole CNNs through numbaconv.onnx against torch "
                                           "and onnxruntime (needs torch and onnx)")
    models.add_argument("--models", nargs="*", help="model names (default: all available)")
    models.add_argument("--batch", nargs="+", type=int, default=[1, 8])
    models.add_argument("--size", type=int, default=224, help="image side (default 224)")
    models.add_argument("--repeat", type=int, default=7)
    models.add_argument("--threads", type=int, default=None)
    dask_ = sub.add_parser("dask", help="a CNN over Zarr images on a Dask LocalCluster, "
                                        "against in-memory numbaconv and dask-image (needs "
                                        "numbaconv[dask])")
    dask_.add_argument("--side", type=int, default=4096,
                       help="side of the image both run on (default 4096)")
    dask_.add_argument("--large-side", type=int, default=16384,
                       help="side of the larger image Dask alone runs on (default 16384, "
                            "3 GiB; 0 to skip)")
    dask_.add_argument("--chunk", type=int, default=1024, help="chunk side (default 1024)")
    dask_.add_argument("--workers", type=int, default=2)
    dask_.add_argument("--threads-per-worker", type=int, default=1)
    dask_.add_argument("--repeat", type=int, default=3)
    dask_.add_argument("--store", default=None,
                       help="folder for the Zarr stores (default: a temporary one, removed)")
    args = parser.parse_args(argv)
    _plain_compile_messages()

    from . import bench as bench_module
    from . import selfcheck
    from .errors import CudaUnavailable

    if args.command == "compile":
        from .precompile import compile

        compile(tuple(args.dtype), processes=args.processes)
        return 0
    if args.command in (None, "selfcheck"):
        if not selfcheck.run():
            return 1
        if args.command == "selfcheck":
            return 0
        print()
    if args.command == "models":
        from .bench_models import run_models_bench

        run_models_bench(args.models, tuple(args.batch), args.size, args.repeat, args.threads)
        return 0
    if args.command == "dask":
        from .bench_dask import run_dask_bench

        run_dask_bench(args.side, args.large_side, args.chunk, args.workers,
                       args.threads_per_worker, args.repeat, args.store)
        return 0
    if args.command == "gpucheck":
        from .gpu_check import run_gpu_check

        return run_gpu_check(args.budget)
    if args.command == "layers":
        try:
            bench_module.run_layer_bench(repeat=args.repeat, threads=args.threads,
                                         device=args.device)
        except CudaUnavailable as error:
            print(f"numbaconv layers --device cuda: {error}", file=sys.stderr)
            return 2
    elif args.command is None:
        bench_module.run_bench()
    elif args.backward or args.training:
        from .bench_training import TRAINING_REPEAT, run_backward_bench, run_training_bench

        if args.backward:
            run_backward_bench(batch=args.batch or 8,
                               repeat=args.repeat or 3, threads=args.threads)
        if args.training:
            run_training_bench(repeat=args.repeat or TRAINING_REPEAT, threads=args.threads)
    elif args.set == "networks":
        from .bench_networks import run_network_bench

        run_network_bench(batch=args.batch or 1, repeat=args.repeat or 7, threads=args.threads,
                          use_torch=not args.no_torch)
    else:
        try:
            bench_module.run_bench(args.layers, algorithm=args.algorithm, dtype=args.dtype,
                                   repeat=args.repeat or 15, threads=args.threads,
                                   use_torch=not args.no_torch, numpy_peer=not args.no_numpy,
                                   device=args.device)
        except CudaUnavailable as error:
            print(f"numbaconv bench --device cuda: {error}", file=sys.stderr)
            return 2
    return 0


def _plain_compile_messages():
    """On the command line, a CompileWarning prints as its message alone."""
    import warnings

    from .errors import CompileWarning

    default = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, CompileWarning):
            print(message, file=file or sys.stderr, flush=True)
        else:
            default(message, category, filename, lineno, file, line)

    warnings.showwarning = show


if __name__ == "__main__":
    sys.exit(main())
