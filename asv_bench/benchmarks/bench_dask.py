"""asv benchmarks: the bench CNN (``numbaconv.bench_dask.bench_model``) on a chunked Dask
array, against the same model in memory, both on Dask's threaded scheduler's machine
threads (one Numba thread per task on Dask; every thread for the in-memory call)."""

import numpy as np


def _dask():
    try:
        import dask
        import dask.array as da
    except ImportError:
        raise NotImplementedError("dask is not installed (pip install 'numbaconv[dask]')")
    return dask, da


class DaskStack:
    params = ([512, 256], ["dask", "in_memory"])
    param_names = ["chunk", "where"]
    timeout = 300

    def setup(self, chunk, where):
        dask, da = _dask()
        from numbaconv.bench_dask import bench_model

        self.dask = dask
        self.model = bench_model()
        self.image = np.random.default_rng(0).standard_normal(
            (1, 3, 1024, 1024)).astype(np.float32)
        self.lazy = self.model(da.from_array(self.image, chunks=(1, 3, chunk, chunk)))
        self.time_forward(chunk, where)  # compile and warm up

    def time_forward(self, chunk, where):
        if where == "dask":
            with self.dask.config.set(scheduler="threads"):
                self.lazy.compute()
        else:
            self.model(self.image)
