"""Training benches against torch on the same threads, interleaved:

* ``python -m numbaconv bench --backward``: the input and weight gradients of every
  conv2d layer of ``networks.json`` (batch 8 by default): numbaconv's
  ``nn.grad.conv2d_input`` + ``conv2d_weight`` against torch's convolution backward
  (both gradients in one ``aten.convolution_backward`` call, as its autograd runs it);
  geomean ratio per kind, and the worst layers.
* ``python -m numbaconv bench --training``: whole training steps (forward, loss,
  gradients, SGD with momentum) of LeNet-5 at batch 64 on 28x28 images and of a
  ResNet-18 at batch 8 on 64x64 images (10 classes), ``nn.value_and_grad`` + ``optim.SGD``
  against torch's forward, backward and ``torch.optim.SGD`` step.
"""

from __future__ import annotations

import sys
from collections import defaultdict

import numpy as np

from .autotune import cpu_model
from .bench import import_torch, interleaved_best, interleaved_rounds, set_threads
from .bench_networks import _arrays, _describe, _geomean, _kwargs, conv_kind, load_network_layers
from .isa import vector_isa

#: Steps per library ``bench --training`` times, taking turns (the best is shown): on a
#: shared 2-core VM (Zen 4, 2026-12-03) the best of 5 put the same tree's LeNet-5 step
#: anywhere from 0.85 to 1.13x torch's, the best of 25-30 within 0.88-1.06x. It also
#: shows the median of the rounds' ratios (each step against torch's in the same round):
#: there, with the machine's speed drifting by a third from minute to minute, the ratio
#: of the bests of a ResNet-18 step moved 0.82-1.13 between runs of the same tree, the
#: median ratio 0.91-0.94.
TRAINING_REPEAT = 20


def run_backward_bench(batch: int = 8, repeat: int = 3, threads=None, worst: int = 10,
                       out=sys.stdout, progress=sys.stderr) -> list:
    from .nn import grad

    torch = import_torch(True, out)
    if torch is None:
        return []
    threads = set_threads(threads, torch)
    entries = [e for e in load_network_layers() if e["op"] == "conv2d"]
    rng = np.random.default_rng(0)
    print(f"numbaconv bench --backward: conv2d input + weight gradients of networks.json, "
          f"float32, batch x{batch}, {threads} threads, best of {repeat}, taking turns with "
          f"torch; CPU {cpu_model()!r}, vector ISA {vector_isa()}; ratio = numbaconv / torch "
          f"time", file=out)
    rows = []
    for i, entry in enumerate(entries, 1):
        x, w, _ = _arrays(entry, batch, rng)
        kwargs = {k: v for k, v in _kwargs(entry).items() if k != "padding_mode"}
        import numbaconv

        g = rng.standard_normal(numbaconv.conv2d(x, w, **kwargs).shape, dtype=np.float32)
        tx, tw, tg = (torch.from_numpy(a) for a in (x, w, g))

        stride, padding, dilation = (_pair(kwargs.get(k, d)) for k, d in
                                     (("stride", 1), ("padding", 0), ("dilation", 1)))
        groups = kwargs.get("groups", 1)

        def ours():
            grad.conv2d_input(x.shape, w, g, **kwargs)
            grad.conv2d_weight(x, w.shape, g, **kwargs)

        def theirs():
            torch.ops.aten.convolution_backward(tg, tx, tw, None, stride, padding, dilation,
                                                False, [0, 0], groups, (True, True, False))

        ours()
        theirs()
        t_ours, t_theirs = interleaved_best(ours, theirs, repeat)
        rows.append(dict(entry=entry, x_shape=x.shape, kind=conv_kind(entry),
                         ms=t_ours * 1e3, torch_ms=t_theirs * 1e3, ratio=t_ours / t_theirs))
        if i % 25 == 0 or i == len(entries):
            print(f"[{i}/{len(entries)}] layers timed", file=progress, flush=True)
    by_kind = defaultdict(list)
    for row in rows:
        by_kind[row["kind"]].append(row["ratio"])
    print(f"\n{'kind':26s} {'layers':>6s} {'geomean ratio':>13s}", file=out)
    for kind, ratios in sorted(by_kind.items(), key=lambda kv: -_geomean(kv[1])):
        print(f"{kind:26s} {len(ratios):6d} {_geomean(ratios):13.2f}", file=out)
    print(f"{'all conv2d':26s} {len(rows):6d} {_geomean(r['ratio'] for r in rows):13.2f}",
          file=out)
    print(f"\nworst {worst} layers: ratio numbaconv ms  torch ms", file=out)
    for row in sorted(rows, key=lambda r: -r["ratio"])[:worst]:
        print(f"  {row['ratio']:6.2f} {row['ms']:12.3f} {row['torch_ms']:9.3f} "
              f"{_describe(row['entry'], row['x_shape'])}", file=out)
    return rows


def _pair(value) -> tuple:
    return tuple(value) if isinstance(value, tuple) else (value, value)


def _lenet(nn):
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, 10))


def training_models(torch) -> dict:
    """name -> (torch model, numbaconv model with the same weights, input shape)."""
    from . import nn
    from .bench_models import builtin_models

    torch.manual_seed(0)
    pairs = {}
    for name, make, shape in (("lenet5", _lenet, (64, 1, 28, 28)),
                              ("resnet18", lambda lib: builtin_models(lib)["resnet18"](10),
                               (8, 3, 64, 64))):
        theirs = make(torch.nn)
        ours = make(nn)
        ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
        pairs[name] = (theirs, ours, shape)
    return pairs


def run_training_bench(repeat: int = TRAINING_REPEAT, threads=None, out=sys.stdout) -> list:
    from . import nn, optim

    torch = import_torch(True, out)
    if torch is None:
        return []
    threads = set_threads(threads, torch)
    print(f"numbaconv bench --training: one SGD step (forward, loss, gradients, update), "
          f"float32, {threads} threads, best of {repeat}, taking turns with torch; CPU "
          f"{cpu_model()!r}, vector ISA {vector_isa()}; ratio = numbaconv / torch time "
          f"(of the bests, and the median of each round's)", file=out)
    print(f"\n{'model':10s} {'batch':>9s} {'numbaconv ms':>12s} {'torch ms':>9s} {'ratio':>6s} "
          f"{'median ratio':>12s}", file=out)
    rng = np.random.default_rng(0)
    rows = []
    for name, (theirs, ours, shape) in training_models(torch).items():
        x = rng.standard_normal(shape, dtype=np.float32)
        y = rng.integers(0, 10, shape[0])
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)
        opt = optim.SGD(ours.parameters(), lr=0.01, momentum=0.9)
        torch_opt = torch.optim.SGD(theirs.parameters(), lr=0.01, momentum=0.9)
        step = nn.value_and_grad(ours.train(), nn.CrossEntropyLoss())
        loss_fn = torch.nn.CrossEntropyLoss()
        theirs.train()

        def ours_step():
            _, grads = step(x, y)
            opt.step(grads)

        def torch_step():
            torch_opt.zero_grad()
            loss_fn(theirs(tx), ty).backward()
            torch_opt.step()

        ours_step()
        torch_step()
        rounds_ours, rounds_theirs = interleaved_rounds(ours_step, torch_step, repeat)
        t_ours, t_theirs = min(rounds_ours), min(rounds_theirs)
        median_ratio = float(np.median(np.divide(rounds_ours, rounds_theirs)))
        rows.append(dict(model=name, ms=t_ours * 1e3, torch_ms=t_theirs * 1e3,
                         median_ratio=median_ratio))
        print(f"{name:10s} {'x'.join(map(str, shape)):>9s} {t_ours * 1e3:12.2f} "
              f"{t_theirs * 1e3:9.2f} {t_ours / t_theirs:6.2f} {median_ratio:12.2f}",
              file=out, flush=True)
    return rows
