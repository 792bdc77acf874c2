"""``python -m numbaconv dask``: a CNN over an image in a Zarr store, on a Dask cluster.

Three measurements, each printed as it finishes:

1. **The same work in memory and on Dask**: a 5-layer CNN (3x3 convolutions with stride
   and dilation, max pooling, ReLUs; :func:`bench_model`) on an image that fits in
   memory, read from a Zarr store and written to one. In memory: the store read into
   one array, ``model(x)`` on every core, the result written; on Dask: ``from_zarr``,
   ``model(x)`` (one graph, one task per output chunk), ``to_zarr``, on a
   ``LocalCluster`` of worker processes (2 x 1 thread by default, one Numba thread per
   task). Taken in turns; best and median of the repeats, and their ratio.
2. **An image larger than that**, Dask only: time, throughput, and each worker's peak
   resident memory (the process's high-water mark) beside the chunk size: memory per
   worker follows the chunks, not the image.
3. **A single-channel 2-D filter** against dask-image's ``ndfilters.convolve`` (SciPy per
   chunk, ``map_overlap``'s halos) on the same Dask array, the same chunks and the same
   cluster; the results are compared too.

Stores go in a temporary folder (or ``--store DIR``), uncompressed (the codec's time is
not the convolution's), and are removed at the end unless ``--store`` was given.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time

import numpy as np


def bench_model(rng=0):
    """The bench's CNN: conv 3 -> 16 stride 2, conv 16 -> 32 dilation 2, max pool 2,
    conv 32 -> 32, conv 32 -> 16 dilation 2, each convolution 3x3 and followed by a ReLU:
    a total stride of 4, eval mode."""
    from . import nn

    return nn.Sequential(
        nn.Conv2d(3, 16, 3, stride=2, padding=1, rng=rng), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=2, dilation=2, rng=rng + 1), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 3, padding=1, rng=rng + 2), nn.ReLU(),
        nn.Conv2d(32, 16, 3, padding=2, dilation=2, rng=rng + 3), nn.ReLU(),
    ).eval()


def _zarr_array(path, shape, chunks, dtype="float32"):
    import zarr

    return zarr.create_array(store=path, shape=shape, chunks=chunks, dtype=dtype,
                             compressors=None, overwrite=True)


def _random_image(client, path, shape, chunks, seed=0):
    """A random image written into a Zarr store by the cluster, chunk by chunk."""
    import dask.array as da

    x = da.random.default_rng(seed).standard_normal(shape, chunks=chunks, dtype=np.float32)
    target = _zarr_array(path, shape, chunks)
    client.compute(da.store(x, target, lock=False, compute=False)).result()


def _peak_memory(client) -> dict:
    """Each worker process's peak resident memory so far, MiB."""
    def peak():
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    return client.run(peak)


def _timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def run_dask_bench(side=4096, large_side=16384, chunk=1024, workers=2, threads_per_worker=1,
                   repeat=3, store=None, filter_size=5) -> dict:
    """Run the three measurements (see the module docstring); returns their figures."""
    import dask
    import dask.array as da
    import numba
    from dask.distributed import Client, LocalCluster

    import numbaconv
    from .dask_arrays import task_threads
    from .isa import vector_isa

    folder = store or tempfile.mkdtemp(prefix="numbaconv-dask-bench-")
    os.makedirs(folder, exist_ok=True)
    model = bench_model()
    figures = {}
    cores = os.cpu_count()
    print(f"numbaconv dask bench: {workers} worker processes x {threads_per_worker} thread "
          f"x {task_threads()} Numba thread per task, on {cores} cores ({vector_isa()}); "
          f"in-memory numbaconv on {numba.get_num_threads()} threads; chunks {chunk}x{chunk}; "
          f"stores in {folder}", flush=True)
    cluster = LocalCluster(n_workers=workers, threads_per_worker=threads_per_worker,
                           processes=True, dashboard_address=None)
    client = Client(cluster)
    try:
        # ---------------------------------------------------------- 1. same work
        shape = (1, 3, side, side)
        chunks = (1, 3, chunk, chunk)
        source = os.path.join(folder, f"image-{side}.zarr")
        _random_image(client, source, shape, chunks)
        out_shape = (1, 16, side // 4, side // 4)
        out_chunks = (1, 16, chunk // 4, chunk // 4)

        def in_memory():
            import zarr

            x = zarr.open_array(source, mode="r")[...]
            y = model(x)
            _zarr_array(os.path.join(folder, "out-memory.zarr"), y.shape, out_chunks)[...] = y

        def on_dask():
            y = model(da.from_zarr(source))
            target = _zarr_array(os.path.join(folder, "out-dask.zarr"), y.shape, y.chunksize)
            client.compute(da.store(y, target, lock=False, compute=False)).result()

        in_memory(), on_dask()  # compile / warm up both
        import zarr

        difference = np.abs(zarr.open_array(os.path.join(folder, "out-dask.zarr"))[...]
                            - zarr.open_array(os.path.join(folder, "out-memory.zarr"))[...])
        scale = float(np.abs(zarr.open_array(os.path.join(folder, "out-memory.zarr"))[...]).max())
        image = zarr.open_array(source, mode="r")[...]
        times = {"memory": [], "dask": [], "model": []}
        for _ in range(repeat):  # each after a second's rest: workers free memory after a run
            for key, run in (("memory", in_memory), ("dask", on_dask),
                             ("model", lambda: model(image))):
                time.sleep(1.0)
                times[key].append(_timed(run))
        del image
        best = {k: min(v) for k, v in times.items()}
        median = {k: statistics.median(v) for k, v in times.items()}
        figures["same_work"] = dict(best=best, median=median,
                                    max_relative_difference=float(difference.max()) / scale)
        print(f"\n1. {side}x{side}x3 image -> {out_shape[1]}x{out_shape[2]}x{out_shape[3]}, "
              f"Zarr to Zarr ({repeat} runs in turns):\n"
              f"   in memory    best {best['memory']:7.3f} s  median {median['memory']:7.3f} s\n"
              f"   Dask         best {best['dask']:7.3f} s  median {median['dask']:7.3f} s\n"
              f"   (in memory, the model alone on the image already read: best "
              f"{best['model']:.3f} s, median {median['model']:.3f} s)\n"
              f"   Dask / in memory: {best['dask'] / best['memory']:.2f} (best), "
              f"{median['dask'] / median['memory']:.2f} (median); results differ by at most "
              f"{figures['same_work']['max_relative_difference']:.1e} of the largest value",
              flush=True)

        # ---------------------------------------------------------- 2. larger image
        if large_side:
            big_shape = (1, 3, large_side, large_side)
            big_source = os.path.join(folder, f"image-{large_side}.zarr")
            _random_image(client, big_source, big_shape, chunks)
            before = _peak_memory(client)

            def big():
                y = model(da.from_zarr(big_source))
                target = _zarr_array(os.path.join(folder, "out-big.zarr"), y.shape, y.chunksize)
                client.compute(da.store(y, target, lock=False, compute=False)).result()

            seconds = _timed(big)
            after = _peak_memory(client)
            gib = np.prod(big_shape) * 4 / 2**30
            out_gib = 16 * (large_side // 4) ** 2 * 4 / 2**30
            chunk_mib = 3 * chunk * chunk * 4 / 2**20
            figures["large"] = dict(seconds=seconds, peak_mib=after, before_mib=before)
            print(f"\n2. {large_side}x{large_side}x3 image ({gib:.1f} GiB in, {out_gib:.1f} GiB "
                  f"out), Zarr to Zarr on Dask: {seconds:.2f} s, "
                  f"{large_side * large_side / seconds / 1e6:.1f} Mpixel/s\n"
                  f"   peak resident memory per worker (MiB, before -> after this run; input "
                  f"chunk {chunk_mib:.0f} MiB): "
                  + ", ".join(f"{before[w]:.0f} -> {after[w]:.0f}" for w in sorted(after)),
                  flush=True)

        # ---------------------------------------------------------- 3. one channel
        from dask_image import ndfilters

        # the plane read into the workers' memory first: both filters time their work alone
        plane = client.persist(da.from_zarr(source)[0, 0].rechunk((chunk, chunk)))
        weights = np.random.default_rng(1).standard_normal(
            (filter_size, filter_size)).astype(np.float32)
        flipped = np.ascontiguousarray(weights[::-1, ::-1])  # convolve flips; conv2d does not

        def with_dask_image():
            return ndfilters.convolve(plane, weights, mode="constant", cval=0.0)

        def with_numbaconv():
            return numbaconv.conv2d(plane[None, None], flipped[None, None],
                                    padding=filter_size // 2)[0, 0]

        ours, theirs = client.compute([with_numbaconv(), with_dask_image()], sync=True)
        agree = float(np.abs(ours - theirs).max() / np.abs(theirs).max())
        filter_times = {"numbaconv": [], "dask-image": []}
        for _ in range(repeat):
            filter_times["numbaconv"].append(_timed(
                lambda: client.compute(with_numbaconv().sum(), sync=True)))
            filter_times["dask-image"].append(_timed(
                lambda: client.compute(with_dask_image().sum(), sync=True)))
        fbest = {k: min(v) for k, v in filter_times.items()}
        figures["filter"] = dict(best=fbest, max_relative_difference=agree)
        print(f"\n3. {filter_size}x{filter_size} filter on one {side}x{side} channel, chunks "
              f"{chunk}x{chunk}, same cluster (best of {repeat}, summed on the workers):\n"
              f"   numbaconv.conv2d            {fbest['numbaconv']:7.3f} s\n"
              f"   dask_image.ndfilters.convolve {fbest['dask-image']:5.3f} s\n"
              f"   dask-image / numbaconv: {fbest['dask-image'] / fbest['numbaconv']:.2f}x; "
              f"results differ by at most {agree:.1e} of the largest value", flush=True)
    finally:
        client.close()
        cluster.close()
        if store is None:
            shutil.rmtree(folder, ignore_errors=True)
        dask.config.refresh()
    return figures
