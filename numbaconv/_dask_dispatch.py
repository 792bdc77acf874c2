"""Which calls go to :mod:`numbaconv.dask_arrays`: those whose input is a Dask array.

Kept apart from ``dask_arrays`` (which imports the functional modules) so that those
modules can mark their public functions without a circular import, and so that
importing numbaconv never imports Dask.
"""

import functools


def is_dask_array(value) -> bool:
    """Whether ``value`` is a ``dask.array.Array`` (told without importing Dask: an
    object of Dask's own classes with the ``chunks`` and ``dask`` graph of an array)."""
    return (type(value).__module__.startswith("dask.") and hasattr(value, "chunks")
            and hasattr(value, "dask"))


def on_dask_arrays(function):
    """Send calls whose first argument is a Dask array to the function of the same name
    in :mod:`numbaconv.dask_arrays` (same arguments); others run ``function``."""
    name = function.__name__

    @functools.wraps(function)
    def wrapper(input, *args, **kwargs):
        if type(input).__module__.startswith("dask.") and is_dask_array(input):
            from . import dask_arrays

            return getattr(dask_arrays, name)(input, *args, **kwargs)
        return function(input, *args, **kwargs)

    return wrapper
