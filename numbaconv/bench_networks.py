"""``python -m numbaconv bench --set networks``: every layer call of 16 torchvision models.

``networks.json`` (shipped with the package) lists each distinct layer call of the forward
pass of 16 torchvision models at batch 1 (224x224 inputs), plus the transposed
convolutions of a DCGAN generator (batch 8) and a U-Net decoder, with how often each
model makes it. Each call runs in numbaconv and in torch on the same threads, in this one
process, taking turns call by call (``bench.interleaved_best``); the best of ``repeat``
is kept. The report:

* convolutions by kind (pointwise, squeeze-and-excitation 1x1 on a 1x1 image, depthwise,
  grouped, dilated, strided, large kernel, 3x3 stride 1): geometric-mean time ratio
  numbaconv/torch and how many layers numbaconv wins;
* per model, the count-weighted time of its convolutions, numbaconv over torch;
* the worst layers, with the algorithm and kernel numbaconv chose;
* pooling, linear and transposed convolution apart.
"""

from __future__ import annotations

import json
import math
import sys
from collections import defaultdict
from importlib import resources

import numpy as np

from .autotune import cpu_model
from .bench import import_torch, interleaved_best, set_threads
from .isa import vector_isa


def load_network_layers() -> list:
    """The entries of ``networks.json``: dicts with op, x, w and torch's arguments."""
    text = resources.files("numbaconv").joinpath("networks.json").read_text()
    return json.loads(text)["layers"]


def conv_kind(entry: dict) -> str:
    """The family a conv2d call belongs to (the first that applies)."""
    x, w = entry["x"], entry["w"]
    kernel = tuple(w[2:])
    groups = entry["groups"]
    if kernel == (1, 1) and tuple(x[2:]) == (1, 1):
        return "1x1 on 1x1 image (SE)"
    if groups > 1 and groups == x[1] and w[1] == 1:
        return "depthwise"
    if groups > 1:
        return "grouped"
    if max(entry["dilation"]) > 1:
        return "dilated"
    if kernel == (1, 1):
        return "pointwise 1x1" if max(entry["stride"]) == 1 else "strided"
    if max(entry["stride"]) > 1:
        return "strided"
    if max(kernel) > 3:
        return "large kernel"
    return "3x3 stride 1" if kernel == (3, 3) else "other"


def _arrays(entry: dict, batch: int, rng):
    """Random float32 operands of the entry at ``batch`` times its recorded batch."""
    x_shape = [entry["x"][0] * batch] + list(entry["x"][1:])
    x = rng.standard_normal(x_shape, dtype=np.float32)
    if "w" not in entry:
        return x, None, None
    w = rng.standard_normal(entry["w"], dtype=np.float32)
    w /= math.sqrt(max(1, w[0].size))  # outputs of order one, as trained weights give
    out_channels = entry["w"][1] * entry["groups"] if entry["op"] == "conv_transpose2d" \
        else entry["w"][0]
    b = rng.standard_normal(out_channels, dtype=np.float32) if entry.get("bias") else None
    return x, w, b


def _kwargs(entry: dict) -> dict:
    skip = {"op", "x", "w", "bias", "models"}
    return {k: (tuple(v) if isinstance(v, list) else v) for k, v in entry.items() if k not in skip}


def _calls(entry, x, w, b, torch):
    """(numbaconv call, torch call or None, algorithm/kernel numbaconv chose or '-')."""
    import numbaconv

    op, kwargs = entry["op"], _kwargs(entry)
    if op in ("conv2d", "conv_transpose2d", "linear"):
        args = (x, w, b)
    else:
        args = (x,)
    ours = lambda: getattr(numbaconv, op)(*args, **kwargs)
    if op == "conv2d":
        plan = numbaconv.plan(x, w, b, **kwargs)
        algorithm = f"{plan.algorithm}/{plan.kernel}" if plan.kernel != plan.algorithm \
            else plan.algorithm
    else:
        algorithm = "-"
    peer = None
    if torch is not None:
        targs = [None if a is None else torch.from_numpy(a) for a in args]
        tkwargs = {k: v for k, v in kwargs.items() if k != "padding_mode"}  # all 'zeros'
        peer = lambda: getattr(torch.nn.functional, op)(*targs, **tkwargs)
    return ours, peer, algorithm


def _geomean(values) -> float:
    values = list(values)
    return math.exp(sum(map(math.log, values)) / len(values)) if values else float("nan")


def run_network_bench(batch: int = 1, repeat: int = 7, threads=None, use_torch=True,
                      worst: int = 15, entries=None, out=sys.stdout, progress=sys.stderr) -> list:
    """Time every entry of ``networks.json`` (or ``entries``) at ``batch`` x its recorded
    batch and print the report (see the module docstring); returns one dict per entry."""
    torch = import_torch(use_torch, out)
    threads = set_threads(threads, torch)
    entries = load_network_layers() if entries is None else entries
    rng = np.random.default_rng(0)
    print(f"numbaconv bench --set networks: float32, batch x{batch}, {threads} threads, best "
          f"of {repeat}, taking turns with torch; CPU {cpu_model()!r}, vector ISA "
          f"{vector_isa()}; ratio = numbaconv / torch time (< 1: numbaconv faster)", file=out)
    rows = []
    for i, entry in enumerate(entries, 1):
        x, w, b = _arrays(entry, batch, rng)
        ours, peer, algorithm = _calls(entry, x, w, b, torch)
        ours()  # compiles on first use
        if peer is not None:
            peer()
        t_ours, t_peer = interleaved_best(ours, peer, repeat)
        row = dict(entry=entry, x_shape=x.shape, algorithm=algorithm, ms=t_ours * 1e3,
                   torch_ms=t_peer * 1e3 if peer is not None else None,
                   kind=conv_kind(entry) if entry["op"] == "conv2d" else entry["op"])
        row["ratio"] = row["ms"] / row["torch_ms"] if peer is not None else None
        rows.append(row)
        if i % 25 == 0 or i == len(entries):
            print(f"[{i}/{len(entries)}] layers timed", file=progress, flush=True)
    if torch is None:
        print("(torch not installed: numbaconv times only)", file=out)
        _print_numbaconv_only(rows, out)
        return rows
    _print_by_kind(rows, out)
    _print_by_model(rows, out)
    _print_worst(rows, worst, out)
    return rows


def _print_by_kind(rows, out):
    groups = defaultdict(list)
    for row in rows:
        groups[row["kind"]].append(row)
    conv = [r for r in rows if r["entry"]["op"] == "conv2d"]
    print(f"\n{'kind':26s} {'layers':>6s} {'geomean ratio':>13s} {'faster':>7s}", file=out)
    order = sorted((k for k in groups if groups[k][0]["entry"]["op"] == "conv2d"),
                   key=lambda k: -_geomean(r["ratio"] for r in groups[k]))
    order += [k for k in ("max_pool2d", "avg_pool2d", "linear", "conv_transpose2d") if k in groups]
    for kind in order:
        members = groups[kind]
        wins = sum(r["ratio"] < 1 for r in members)
        print(f"{kind:26s} {len(members):6d} {_geomean(r['ratio'] for r in members):13.2f} "
              f"{wins:7d}", file=out)
    print(f"{'all conv2d':26s} {len(conv):6d} {_geomean(r['ratio'] for r in conv):13.2f} "
          f"{sum(r['ratio'] < 1 for r in conv):7d}", file=out)


def _print_by_model(rows, out):
    """Count-weighted conv2d time per model, numbaconv over torch."""
    ours, theirs = defaultdict(float), defaultdict(float)
    for row in rows:
        if row["entry"]["op"] != "conv2d":
            continue
        for model, count in row["entry"]["models"].items():
            ours[model] += count * row["ms"]
            theirs[model] += count * row["torch_ms"]
    print(f"\n{'model (conv2d time)':26s} {'numbaconv ms':>12s} {'torch ms':>9s} {'ratio':>6s}",
          file=out)
    for model in sorted(ours, key=lambda m: -ours[m] / theirs[m]):
        print(f"{model:26s} {ours[model]:12.2f} {theirs[model]:9.2f} "
              f"{ours[model] / theirs[model]:6.2f}", file=out)


#: torch's defaults, left out when a layer is described.
_DEFAULTS = {"padding": 0, "dilation": 1, "groups": 1, "padding_mode": "zeros",
             "output_padding": 0, "ceil_mode": False, "count_include_pad": True,
             "divisor_override": None}


def _describe(entry, x_shape) -> str:
    def default(key, value):
        if key not in _DEFAULTS:
            return False
        expected = _DEFAULTS[key]
        return value == expected or (isinstance(value, tuple) and set(value) == {expected})

    kwargs = {k: v for k, v in _kwargs(entry).items() if not default(k, v)}
    shapes = f"x{tuple(x_shape)}" + (f" w{tuple(entry['w'])}" if "w" in entry else "")
    return f"{entry['op']} {shapes} {kwargs}" if kwargs else f"{entry['op']} {shapes}"


def _print_worst(rows, count, out):
    print(f"\nworst {count} layers: {'ratio':>6s} {'numbaconv ms':>12s} {'torch ms':>9s} "
          f"algorithm", file=out)
    for row in sorted(rows, key=lambda r: -r["ratio"])[:count]:
        print(f"  {row['ratio']:6.2f} {row['ms']:12.3f} {row['torch_ms']:9.3f} "
              f"{row['algorithm']:28s} {_describe(row['entry'], row['x_shape'])}", file=out)


def _print_numbaconv_only(rows, out):
    groups = defaultdict(list)
    for row in rows:
        groups[row["kind"]].append(row["ms"])
    for kind, times in groups.items():
        print(f"{kind:26s} {len(times):4d} layers, {sum(times):9.2f} ms in all", file=out)
