"""``python -m numbaconv models``: whole CNNs through the ONNX path, against torch and
onnxruntime.

Each model is built in torch with random weights (nothing is downloaded), put in eval
mode, exported with ``torch.onnx.export(..., dynamo=False)`` and loaded with
:func:`numbaconv.onnx.load`; then numbaconv, torch (eval, ``no_grad``) and onnxruntime
(when installed) run it in this one process on the same threads, each library taking
its turn after a pause and an untimed call (as ``bench.interleaved_best``), best of
``repeat``. The report gives
milliseconds per forward pass, numbaconv's time over each peer's, and numbaconv's largest
difference from torch's output (relative to its largest value).

Models: torchvision's resnet18, resnet50, mobilenet_v2, efficientnet_b0, densenet121 and
googlenet when torchvision imports; otherwise (torchvision's wheels need the torch build
they were made for) ResNet-18 and MobileNetV2 as written out here, layer for layer
torchvision's architectures.
"""

from __future__ import annotations

import io
import sys

import numpy as np

from .autotune import cpu_model
from .bench import _settled_time, import_torch, set_threads

TORCHVISION_MODELS = ("resnet18", "resnet50", "mobilenet_v2", "efficientnet_b0",
                      "densenet121", "googlenet")


def builtin_models(nn) -> dict:
    """ResNet-18 and MobileNetV2 as torchvision writes them, layer for layer (the same
    state-dict keys), built from ``nn``: ``torch.nn`` here, ``numbaconv.nn`` in the tests
    (which load torchvision's state dicts into them). Constructors taking ``classes``."""

    def conv_bn(cin, cout, k, stride=1, groups=1):  # torchvision's Conv2dNormActivation
        return nn.Sequential(nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups,
                                       bias=False), nn.BatchNorm2d(cout), nn.ReLU6(inplace=True))

    class InvertedResidual(nn.Module):
        def __init__(self, cin, cout, stride, expand):
            super().__init__()
            hidden = cin * expand
            self.use_res_connect = stride == 1 and cin == cout
            layers = [conv_bn(cin, hidden, 1)] if expand != 1 else []
            layers += [conv_bn(hidden, hidden, 3, stride, hidden),
                       nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
            self.conv = nn.Sequential(*layers)

        def forward(self, x):
            return x + self.conv(x) if self.use_res_connect else self.conv(x)

    class MobileNetV2(nn.Module):
        def __init__(self, classes=1000):
            super().__init__()
            settings = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                        (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
            layers, cin = [conv_bn(3, 32, 3, 2)], 32
            for expand, cout, repeats, stride in settings:
                for i in range(repeats):
                    layers.append(InvertedResidual(cin, cout, stride if i == 0 else 1, expand))
                    cin = cout
            layers.append(conv_bn(cin, 1280, 1))
            self.features = nn.Sequential(*layers)
            self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, classes))

        def forward(self, x):
            x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
            return self.classifier(x.reshape(x.shape[0], -1))

    class BasicBlock(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.relu = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.downsample = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                             nn.BatchNorm2d(cout))
                               if stride != 1 or cin != cout else None)

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            return self.relu(self.bn2(self.conv2(out)) + identity)

    class ResNet18(nn.Module):
        def __init__(self, classes=1000):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            cin = 64
            for i, width in enumerate((64, 128, 256, 512)):
                stride = 1 if i == 0 else 2
                setattr(self, f"layer{i + 1}", nn.Sequential(BasicBlock(cin, width, stride),
                                                            BasicBlock(width, width, 1)))
                cin = width
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(512, classes)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(self.avgpool(x).reshape(x.shape[0], -1))

    return {"resnet18": ResNet18, "mobilenet_v2": MobileNetV2}


def available_models(torch) -> tuple:
    """(name -> constructor, where they come from)."""
    try:
        import torchvision
        import torchvision.models as zoo
    except Exception as error:  # noqa: BLE001 - ImportError, or RuntimeError beside a CPU torch
        return builtin_models(torch.nn), (
            f"written out here (torchvision does not import: {str(error).splitlines()[0]}; "
            f"beside the CPU torch its compiled operators are missing, see tests/conftest.py's "
            f"_import_torchvision for how the tests import it)")
    makers = {name: getattr(zoo, name) for name in TORCHVISION_MODELS}
    makers["googlenet"] = lambda: zoo.googlenet(aux_logits=False, init_weights=True)
    return makers, f"from torchvision {torchvision.__version__}"


def _turns(calls: dict, repeat: int) -> dict:
    """Best seconds of each call over ``repeat`` rounds in which each takes its turn, settled
    (``bench.interleaved_best``, for any number of libraries)."""
    best = {name: float("inf") for name in calls}
    for _ in range(repeat):
        for name, call in calls.items():
            best[name] = min(best[name], _settled_time(call))
    return best


def _trained_looking(torch, model):
    """Running statistics away from 0 and 1, so that BatchNorm does some work."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2, generator=generator)
                module.running_var.uniform_(0.5, 1.5, generator=generator)


def run_models_bench(models=None, batches=(1, 8), size=224, repeat=7, threads=None,
                     out=sys.stdout, progress=sys.stderr) -> list:
    """Time the models (see the module docstring); returns one dict per (model, batch)."""
    import numbaconv.onnx

    torch = import_torch(True, out)
    if torch is None:
        raise RuntimeError("python -m numbaconv models needs torch (pip install "
                           "torch==2.13.0) to build and export the models")
    threads = set_threads(threads, torch)
    try:
        import onnxruntime
    except ImportError:
        onnxruntime = None
    makers, source = available_models(torch)
    names = list(makers) if not models else list(models)
    unknown = [n for n in names if n not in makers]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; available here: {sorted(makers)}")
    print(f"numbaconv models: float32, {size}x{size} images, {threads} threads, best of "
          f"{repeat}, each library settled before its turn; CPU {cpu_model()!r}; models "
          f"{source}; onnxruntime {'installed' if onnxruntime else 'not installed'}",
          file=out)
    print(f"\n{'model':16s} {'batch':>5s} {'numbaconv ms':>12s} {'torch ms':>9s} "
          f"{'ort ms':>8s} {'/torch':>7s} {'/ort':>6s} {'max rel err':>11s}", file=out)
    rows = []
    for name in names:
        torch.manual_seed(0)
        model = makers[name]().eval()
        _trained_looking(torch, model)
        buffer = io.BytesIO()
        example = torch.zeros(1, 3, size, size)
        torch.onnx.export(model, example, buffer, dynamo=False, opset_version=17,
                          input_names=["image"], dynamic_axes={"image": {0: "batch"}})
        ours = numbaconv.onnx.load(buffer.getvalue())
        session = None
        if onnxruntime is not None:
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = threads
            session = onnxruntime.InferenceSession(buffer.getvalue(), options,
                                                   providers=["CPUExecutionProvider"])
        for batch in batches:
            x = np.random.default_rng(0).standard_normal((batch, 3, size, size),
                                                         dtype=np.float32)
            tx = torch.from_numpy(x)
            calls = {"numbaconv": lambda: ours(x), "torch": lambda: model(tx)}
            if session is not None:
                calls["onnxruntime"] = lambda: session.run(None, {"image": x})
            with torch.no_grad():
                expected = model(tx).numpy()
                got = ours(x)
                best = _turns(calls, repeat)
            t_ours, t_torch, t_ort = best["numbaconv"], best["torch"], best.get("onnxruntime")
            error = float(np.abs(got - expected).max() / np.abs(expected).max())
            row = dict(model=name, batch=batch, ms=t_ours * 1e3, torch_ms=t_torch * 1e3,
                       ort_ms=None if t_ort is None else t_ort * 1e3, error=error)
            rows.append(row)
            ort = "-" if t_ort is None else f"{row['ort_ms']:8.2f}"
            versus_ort = "-" if t_ort is None else f"{t_ours / t_ort:6.2f}"
            print(f"{name:16s} {batch:5d} {row['ms']:12.2f} {row['torch_ms']:9.2f} {ort:>8s} "
                  f"{t_ours / t_torch:7.2f} {versus_ort:>6s} {error:11.1e}", file=out,
                  flush=True)
        print(f"[{name}] done", file=progress, flush=True)
    return rows
