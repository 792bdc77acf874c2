"""Opt-in autotuning: time every algorithm that supports a spec once, remember the fastest.

``algorithm="autotune"`` (or ``NUMBACONV_AUTOTUNE=1``, which makes ``"auto"`` behave
the same) looks the spec up in a per-machine JSON cache; on a miss it times each
supported algorithm on random data of the spec's shape (after one untimed call that
compiles it), keeps the fastest and writes the cache back. The key holds everything
that changes the answer: the spec (shapes, strides, padding, groups, dtype), the CPU
model, the thread count and the numbaconv version.

The cache lives in ``$NUMBACONV_CACHE_DIR`` or else ``$XDG_CACHE_HOME/numbaconv`` or
``~/.cache/numbaconv``. A corrupt, stale (other format) or unwritable cache is ignored
with a warning, never fatal: the decision is then kept in memory for this process.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np

from .planner import execute, fits, make_plan, needed_bytes
from .registry import REGISTRY

FORMAT = 1
REPEATS = 3

_lock = threading.Lock()
_memory: dict | None = None  # key -> {"algorithm": name, "ms": {name: ms}}
_warned: set = set()


def cache_path() -> Path:
    root = os.environ.get("NUMBACONV_CACHE_DIR")
    if root:
        return Path(root) / "autotune.json"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "numbaconv" / "autotune.json"


def _warn_once(kind: str, message: str) -> None:
    if kind not in _warned:
        _warned.add(kind)
        warnings.warn(message, RuntimeWarning, stacklevel=4)


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def machine_key() -> str:
    import numba

    from . import __version__

    return f"{cpu_model()}|threads={numba.get_num_threads()}|numbaconv={__version__}"


def spec_key(spec) -> str:
    return machine_key() + "|" + ",".join(map(str, spec.key()))


def _load() -> dict:
    global _memory
    if _memory is None:
        _memory = {}
        path = cache_path()
        if path.exists():
            try:
                data = json.loads(path.read_text())
                if not isinstance(data, dict) or data.get("format") != FORMAT:
                    raise ValueError(f"format {data.get('format') if isinstance(data, dict) else '?'}"
                                     f" is not {FORMAT}")
                entries = data["entries"]
                if not isinstance(entries, dict):
                    raise ValueError("entries is not a mapping")
                _memory.update(entries)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                _warn_once("read", f"numbaconv: ignoring the autotune cache {path} ({exc}); "
                                   f"it will be rewritten")
    return _memory


def _save(entries: dict) -> None:
    path = cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".autotune-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump({"format": FORMAT, "entries": entries}, f, indent=1, sort_keys=True)
        os.replace(tmp, path)  # atomic: readers see the old or the new file, never half
    except OSError as exc:
        _warn_once("write", f"numbaconv: cannot write the autotune cache {path} ({exc}); "
                            f"decisions are kept for this process only")


def measure(spec, name: str) -> float:
    """Best-of-REPEATS milliseconds of algorithm ``name`` on random data of ``spec``'s shape."""
    rng = np.random.default_rng(0)
    dtype = np.dtype(spec.dtype)
    x = rng.standard_normal((spec.batch, spec.in_channels, spec.in_height, spec.in_width)).astype(dtype)
    w = rng.standard_normal((spec.out_channels, spec.in_channels_per_group, spec.kernel_height,
                             spec.kernel_width)).astype(dtype)
    b = rng.standard_normal(spec.out_channels).astype(dtype) if spec.has_bias else None
    plan = make_plan(spec, name)
    execute(plan, x, w, b)  # compiles
    best = math.inf
    for _ in range(REPEATS):
        start = time.perf_counter()
        execute(plan, x, w, b)
        best = min(best, time.perf_counter() - start)
    return best * 1e3


def choose(spec) -> tuple[str, str]:
    """(algorithm, why) for ``spec``: the cached winner, or time the candidates now."""
    key = spec_key(spec)
    with _lock:
        entry = _load().get(key)
    if isinstance(entry, dict) and entry.get("algorithm") in REGISTRY \
            and REGISTRY[entry["algorithm"]].supports(spec) is None \
            and fits(spec, entry["algorithm"]):
        return entry["algorithm"], _reason(entry, cached=True)
    candidates = [name for name, algo in REGISTRY.items()
                  if algo.supports(spec) is None and fits(spec, name)]
    if not candidates:  # nothing to time: the plan says it does not fit
        supported = [name for name, algo in REGISTRY.items() if algo.supports(spec) is None]
        return min(supported, key=lambda name: needed_bytes(spec, name)), "nothing fits"
    timings = {name: round(measure(spec, name), 4) for name in candidates}
    winner = min(timings, key=timings.get)
    entry = {"algorithm": winner, "ms": timings}
    with _lock:
        entries = _load()
        entries[key] = entry
        _save(entries)
    return winner, _reason(entry, cached=False)


def _reason(entry: dict, cached: bool) -> str:
    times = ", ".join(f"{name} {ms:.3g} ms" for name, ms in sorted(entry["ms"].items(),
                                                                    key=lambda kv: kv[1]))
    where = f"cached in {cache_path()}" if cached else "timed now"
    return f"autotuned, fastest on this machine ({times}; {where})"


def clear(memory_only: bool = False) -> None:
    """Forget the decisions (and delete the cache file unless ``memory_only``)."""
    global _memory
    with _lock:
        _memory = None
        if not memory_only:
            try:
                cache_path().unlink()
            except OSError:
                pass
