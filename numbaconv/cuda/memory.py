"""The GPU memory guard: a call whose result and scratch would not fit in the device's
free memory raises MemoryError with the figures before anything is allocated or
launched, as the CPU calls do against ``numbaconv.set_memory_limit``."""

from __future__ import annotations

from .runtime import numba_cuda


def free_and_total() -> tuple:
    """(free, total) bytes of the current device (the simulator: infinite)."""
    info = numba_cuda().current_context().get_memory_info()
    return info[0], info[1]


def check(what: str, needed: int) -> None:
    """MemoryError when ``needed`` bytes exceed the device's free memory."""
    free, total = free_and_total()
    if needed > free:
        raise MemoryError(
            f"{what} needs {needed / 2**20:.1f} MiB of GPU memory (its result and scratch), "
            f"but the device has {free / 2**20:.1f} MiB free of {total / 2**20:.0f} MiB; "
            f"use a smaller batch, free device arrays that are no longer needed, or run "
            f"this call on the CPU")
