"""Which calls go to :mod:`numbaconv.dask_arrays`: those whose input is a Dask array.

Kept apart from ``dask_arrays`` (which imports the functional modules) so that those
modules can mark their public functions without a circular import, and so that
importing numbaconv never imports Dask.
"""


def is_dask_array(value) -> bool:
    """Whether ``value`` is a ``dask.array.Array`` (told without importing Dask: an
    object of Dask's own classes with the ``chunks`` and ``dask`` graph of an array)."""
    return (type(value).__module__.startswith("dask.") and hasattr(value, "chunks")
            and hasattr(value, "dask"))


def on_dask_arrays(function):
    """Mark a public function whose calls with a Dask array as input go to the function
    of the same name in :mod:`numbaconv.dask_arrays` (same arguments). The routing is
    done by :func:`numbaconv.tracing.differentiable`'s wrapper, which every such function
    has already (one front door per call: a wrapper of its own cost 0.3-0.5 us a call, a
    sixth of a small ``relu``), so this decorator goes below ``@differentiable``."""
    function.on_dask_arrays = True
    return function
