"""numbaconv.onnx: models exported by torch (torch.onnx.export, dynamo=False) run with
numbaconv's kernels and agree with torch, and with onnxruntime where it is installed;
hand-built graphs cover ONNX semantics torch does not export (auto_pad, asymmetric pads);
untrusted files are refused with clear errors."""

import io

import numpy as np
import pytest

from conftest import REQUIRE_TORCH
from test_cnn_layers import mobilenet_v2_like, resnet18, trained_looking

try:
    import onnx
    from onnx import TensorProto, helper, numpy_helper
except ImportError:
    if REQUIRE_TORCH:  # CI installs the onnx extra: these tests must run there
        raise
    pytest.skip("onnx is not installed (pip install 'numbaconv[onnx]')", allow_module_level=True)

import numbaconv.onnx
from numbaconv.onnx import OnnxError

try:
    import onnxruntime
except ImportError:
    onnxruntime = None


def export(torch, model, x, opset=17, **kwargs) -> bytes:
    buffer = io.BytesIO()
    model.eval()
    torch.onnx.export(model, torch.from_numpy(x), buffer, dynamo=False, opset_version=opset,
                      **kwargs)
    return buffer.getvalue()


def check_against_torch_and_onnxruntime(torch, model, x, opset=17, rtol=1e-4):
    data = export(torch, model, x, opset)
    ours = numbaconv.onnx.load(data)
    got = ours(x)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    scale = np.abs(expected).max()
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol * scale)
    if onnxruntime is not None:
        session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
        runtime = session.run(None, {session.get_inputs()[0].name: x})[0]
        np.testing.assert_allclose(got, runtime, rtol=rtol, atol=rtol * scale)
    return ours


def small_models(nn, torch):
    """torchvision-like pieces: each model exports the operators of a family of nets."""

    class DenseLike(nn.Module):  # densenet: BN before conv (not folded), concat, avg pool
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU(),
                                      nn.MaxPool2d(3, 2, 1, ceil_mode=True))
            self.bn = nn.BatchNorm2d(8)
            self.conv = nn.Conv2d(8, 4, 3, padding=1, bias=False)
            self.pool = nn.AvgPool2d(2, 2)
            self.head = nn.Linear(12, 5)

        def forward(self, x):
            x = self.stem(x)
            x = torch.cat([x, self.conv(torch.relu(self.bn(x)))], 1)
            x = self.pool(x)
            return torch.softmax(self.head(x.mean((2, 3))), dim=1)

    class EfficientLike(nn.Module):  # SiLU, squeeze-and-excitation, Hardswish, dropout
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 16, 3, 2, 1)
            self.dw = nn.Conv2d(16, 16, 5, 1, 2, groups=16)
            self.se = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(16, 4, 1), nn.SiLU(),
                                    nn.Conv2d(4, 16, 1), nn.Hardsigmoid())
            self.act = nn.Hardswish()
            self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.2), nn.Linear(16, 3))

        def forward(self, x):
            x = nn.functional.silu(self.conv(x))
            x = self.act(self.dw(x))
            x = x * self.se(x)
            return self.head(nn.functional.adaptive_avg_pool2d(x, 1))

    class SegmentLike(nn.Module):  # fcn/deeplab: dilation, bilinear resize to input size
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(),
                                      nn.Conv2d(8, 8, 3, padding=2, dilation=2), nn.ReLU(),
                                      nn.Conv2d(8, 4, 1))
            self.up = nn.Upsample(scale_factor=2, mode="nearest")

        def forward(self, x):
            y = self.body(x)
            y = nn.functional.interpolate(y, size=x.shape[-2:], mode="bilinear",
                                          align_corners=False)
            return y + self.up(self.body(x))[:, :, :y.shape[2], :y.shape[3]]

    class ConvNextLike(nn.Module):  # depthwise 7x7, LayerNorm channels-last, GELU, MatMul
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 16, 4, 4)
            self.dw = nn.Conv2d(16, 16, 7, padding=3, groups=16)
            self.norm = nn.LayerNorm(16, eps=1e-6)
            self.fc1, self.fc2 = nn.Linear(16, 32), nn.Linear(32, 16)

        def forward(self, x):
            x = self.stem(x)
            y = self.norm(self.dw(x).permute(0, 2, 3, 1))
            y = self.fc2(nn.functional.gelu(self.fc1(y))).permute(0, 3, 1, 2)
            return x + y

    class DecoderLike(nn.Module):  # U-Net / DCGAN: transposed convolutions
        def __init__(self):
            super().__init__()
            self.up1 = nn.ConvTranspose2d(3, 8, 4, 2, 1)
            self.up2 = nn.ConvTranspose2d(8, 4, 3, 2, 1, output_padding=1)

        def forward(self, x):
            return torch.tanh(self.up2(nn.functional.leaky_relu(self.up1(x), 0.2)))

    return {"dense": DenseLike, "efficient": EfficientLike, "segment": SegmentLike,
            "convnext": ConvNextLike, "decoder": DecoderLike}


@pytest.mark.parametrize("opset", [13, 17, 18])
@pytest.mark.parametrize("name", ["dense", "efficient", "segment", "convnext", "decoder"])
def test_exported_models_agree_with_torch(torch, rng, name, opset):
    if name == "convnext" and opset < 17:
        opset = 17  # LayerNormalization exists from opset 17 (earlier it is decomposed)
    torch.manual_seed(0)
    model = small_models(torch.nn, torch)[name]()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    x = rng.standard_normal((2, 3, 32, 32)).astype(np.float32)
    loaded = check_against_torch_and_onnxruntime(torch, model, x, opset)
    assert not loaded.training


@pytest.mark.parametrize("build", [resnet18, mobilenet_v2_like])
def test_whole_cnns_agree_with_torch(torch, rng, build):
    torch.manual_seed(0)
    model = build(torch.nn)
    x = rng.standard_normal((1, 3, 64, 64)).astype(np.float32)
    loaded = check_against_torch_and_onnxruntime(torch, model, x, rtol=2e-4)
    assert "Conv" in repr(loaded)


#: The torchvision models of numbaconv/networks.json (the bench's 16; the other entries
#: there are a DCGAN generator and a U-Net, not torchvision's).
TORCHVISION_MODELS = ["alexnet", "convnext_tiny", "deeplabv3_resnet50", "densenet121",
                      "efficientnet_b0", "fcn_resnet50", "googlenet", "mobilenet_v2",
                      "mobilenet_v3_small", "regnet_y_400mf", "resnet18", "resnet50",
                      "resnext50_32x4d", "shufflenet_v2_x1_0", "squeezenet1_0", "vgg11"]


def torchvision_model(torch, torchvision, name):
    """torchvision's ``name``, random weights (nothing downloaded), trained-looking batch
    norms, eval mode; segmentation models return their ``out`` map alone."""
    torch.manual_seed(0)
    if name in ("fcn_resnet50", "deeplabv3_resnet50"):
        net = getattr(torchvision.models.segmentation, name)(
            weights=None, weights_backbone=None, aux_loss=False)

        class Out(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.net = net

            def forward(self, x):
                return self.net(x)["out"]

        model = Out()
    elif name == "googlenet":
        model = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=True)
    else:
        model = getattr(torchvision.models, name)(weights=None)
    return trained_looking(torch, model)


def test_the_torchvision_list_is_the_benchs():
    from numbaconv.bench_networks import load_network_layers

    models = {m for entry in load_network_layers() for m in entry.get("models", {})}
    assert set(TORCHVISION_MODELS) <= models and len(models - set(TORCHVISION_MODELS)) <= 2


@pytest.mark.slow
@pytest.mark.parametrize("name", TORCHVISION_MODELS)
def test_torchvision_models_through_onnx_agree_with_torch(torch, torchvision, name):
    """Every torchvision model of the networks bench, exported at opset 17: logits (or the
    segmentation map) within 1e-4 relative of torch's float32, and of onnxruntime's.
    AlexNet and VGG at 224x224 (their adaptive pooling exports only when it divides the
    feature map), the others at 64x64, batch 2."""
    model = torchvision_model(torch, torchvision, name)
    shape = (1, 3, 224, 224) if name in ("alexnet", "vgg11") else (2, 3, 64, 64)
    x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    check_against_torch_and_onnxruntime(torch, model, x, opset=17, rtol=1e-4)


# --------------------------------------------------------------------------- hand-built graphs


def graph_model(nodes, inputs, outputs, initializers=(), opset=17):
    graph = helper.make_graph(nodes, "test", inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def tensor_info(name, shape, rank=None, dtype=TensorProto.FLOAT):
    """A value info; ``rank`` instead of ``shape`` gives symbolic dimensions."""
    if shape is None:
        shape = [f"{name}_{i}" for i in range(rank)]
    return helper.make_tensor_value_info(name, dtype, shape)


def run_both(model, feeds):
    ours = numbaconv.onnx.load(model.SerializeToString())
    got = ours(**feeds)
    if onnxruntime is not None:
        session = onnxruntime.InferenceSession(model.SerializeToString(),
                                               providers=["CPUExecutionProvider"])
        expected = session.run(None, feeds)
        expected = expected[0] if len(expected) == 1 else tuple(expected)
        for g, e in zip(got if isinstance(got, tuple) else (got,),
                        expected if isinstance(expected, tuple) else (expected,)):
            np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5)
    return got


@pytest.mark.parametrize("attrs", [
    dict(auto_pad="SAME_UPPER", strides=[2, 2]), dict(auto_pad="SAME_LOWER", strides=[2, 1]),
    dict(auto_pad="VALID"), dict(pads=[0, 1, 2, 1]), dict(pads=[1, 1, 1, 1], dilations=[2, 1]),
])
def test_conv_padding_semantics(rng, attrs):
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    model = graph_model([helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[3, 3],
                                          **attrs)],
                        [tensor_info("x", [1, 3, 9, 8])], [tensor_info("y", None, 4)],
                        [numpy_helper.from_array(w, "w")])
    x = rng.standard_normal((1, 3, 9, 8)).astype(np.float32)
    y = run_both(model, {"x": x})
    # Against a direct evaluation of the same padding (NumPy reference).
    strides = attrs.get("strides", [1, 1])
    dilations = attrs.get("dilations", [1, 1])
    from numbaconv.onnx import _window
    _, _, pads = _window(attrs, x.shape, [3, 3])
    xp = np.pad(x.astype(np.float64), [(0, 0), (0, 0)] + pads)
    out_h = (xp.shape[2] - dilations[0] * 2 - 1) // strides[0] + 1
    out_w = (xp.shape[3] - dilations[1] * 2 - 1) // strides[1] + 1
    ref = np.zeros((1, 4, out_h, out_w))
    for r in range(3):
        for s in range(3):
            patch = xp[:, :, r * dilations[0]::strides[0], s * dilations[1]::strides[1]]
            ref += np.einsum("nchw,kc->nkhw", patch[:, :, :out_h, :out_w], w[:, :, r, s])
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


def test_pooling_indices_and_shape_arithmetic(rng):
    nodes = [helper.make_node("MaxPool", ["x"], ["p", "i"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Shape", ["p"], ["s"], start=2),
             helper.make_node("ReduceMean", ["x", "axes"], ["m"], keepdims=0),
             helper.make_node("Split", ["m"], ["a", "b"], axis=1, num_outputs=2)]
    model = graph_model(nodes, [tensor_info("x", [2, 4, 6, 6])],
                        [tensor_info("p", None, 4), tensor_info("i", None, 4, TensorProto.INT64),
                         tensor_info("s", None, 1, TensorProto.INT64), tensor_info("a", None, 2),
                         tensor_info("b", None, 2)],
                        [numpy_helper.from_array(np.array([2, 3], np.int64), "axes")], opset=18)
    x = rng.standard_normal((2, 4, 6, 6)).astype(np.float32)
    p, i, s, a, b = run_both(model, {"x": x})
    np.testing.assert_array_equal(p.reshape(-1), x.reshape(-1)[i.reshape(-1)])  # whole-tensor
    assert s.tolist() == [3, 3]
    np.testing.assert_allclose(np.concatenate([a, b], 1), x.mean((2, 3)), rtol=1e-6)


# --------------------------------------------------------------------------- refusals


def test_unsupported_operator_is_named_with_its_node():
    model = graph_model([helper.make_node("Einsum", ["x", "x"], ["y"], name="mix",
                                          equation="ij,ij->i")],
                        [tensor_info("x", [2, 3])], [tensor_info("y", None, 1)], opset=13)
    with pytest.raises(OnnxError, match="node 'mix': operator 'Einsum' is not supported"):
        numbaconv.onnx.load(model.SerializeToString())


def test_invalid_files_are_refused(tmp_path):
    with pytest.raises(Exception):  # noqa: B017 - protobuf's own decode error
        numbaconv.onnx.load(b"not a model at all")
    with pytest.raises(FileNotFoundError):
        numbaconv.onnx.load(tmp_path / "missing.onnx")
    with pytest.raises(TypeError, match="path, bytes"):
        numbaconv.onnx.load(3)
    broken = graph_model([helper.make_node("Relu", ["nothing"], ["y"])],
                         [tensor_info("x", [2])], [tensor_info("y", None, 1)])
    with pytest.raises(OnnxError, match="not valid ONNX"):
        numbaconv.onnx.load(broken.SerializeToString())


def _external_model(tmp_path, rng):
    w = rng.standard_normal((2, 3)).astype(np.float32)
    model = graph_model([helper.make_node("MatMul", ["x", "w"], ["y"])],
                        [tensor_info("x", [1, 2])], [tensor_info("y", None, 2)],
                        [numpy_helper.from_array(w, "w")])
    path = tmp_path / "model" / "m.onnx"
    path.parent.mkdir()
    onnx.save_model(model, str(path), save_as_external_data=True, location="weights.bin",
                    size_threshold=0)
    return path, w


def test_external_data_inside_the_folder_loads(tmp_path, rng):
    path, w = _external_model(tmp_path, rng)
    x = rng.standard_normal((1, 2)).astype(np.float32)
    np.testing.assert_allclose(numbaconv.onnx.load(path)(x), x @ w, rtol=1e-6)
    with pytest.raises(OnnxError, match="load the model from its path"):
        numbaconv.onnx.load(path.read_bytes())


@pytest.mark.parametrize("location", ["../secret.bin", "/etc/hostname", "weights.bin"])
def test_external_data_never_leaves_the_folder_nor_its_file(tmp_path, rng, location):
    path, _ = _external_model(tmp_path, rng)
    (tmp_path / "secret.bin").write_bytes(b"\0" * 24)
    model = onnx.load_model(str(path), load_external_data=False)
    for entry in model.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = location
        if entry.key == "length" and location == "weights.bin":
            entry.value = "4096"  # more than the file holds
    tampered = path.parent / "tampered.onnx"
    onnx.save_model(model, str(tampered))
    # onnx's checker refuses paths leaving the folder, and so, behind it, do our own reads.
    with pytest.raises(OnnxError, match="outside the directory|absolute path|does not fit"):
        numbaconv.onnx.load(tampered)
    with pytest.raises(OnnxError, match="not a file inside the model's folder|does not fit"):
        numbaconv.onnx.OnnxModel(model, path.parent.resolve())


def test_inputs_by_position_or_name_and_errors(torch, rng):
    model = torch.nn.Sequential(torch.nn.Linear(4, 2))
    x = rng.standard_normal((3, 4)).astype(np.float32)
    loaded = numbaconv.onnx.load(export(torch, model, x, input_names=["features"]))
    np.testing.assert_allclose(loaded(features=x), loaded(x), rtol=0)
    with pytest.raises(TypeError, match="unknown input 'pixels'"):
        loaded(pixels=x)
    with pytest.raises(TypeError, match="missing model input"):
        loaded()


# --------------------------------------------------------------------------- load-time passes


def test_batch_norm_and_constant_nodes_are_folded_away(torch, rng):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8),
                                torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 1, bias=False),
                                torch.nn.BatchNorm2d(4))
    with torch.no_grad():
        for bn in (model[1], model[4]):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-1, 1)
    x = rng.standard_normal((2, 3, 12, 12)).astype(np.float32)
    data = export(torch, model, x, do_constant_folding=False)  # keeps BatchNormalization
    assert "BatchNormalization" in {n.op_type for n in onnx.load_from_string(data).graph.node}
    loaded = numbaconv.onnx.load(data)
    # (the ReLU too: computed by the first convolution as it writes its output)
    assert [(op, attributes.get("activation")) for _, op, _, _, attributes in loaded._nodes] \
        == [("Conv", "relu"), ("Conv", None)]
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(loaded(x), expected, rtol=1e-5, atol=1e-5)


def test_x_times_sigmoid_x_runs_as_one_silu_step(torch, rng):
    """torch exports SiLU as Sigmoid then Mul: one fused step, unless the Sigmoid's result
    is read elsewhere too (a gate that is also an output here), or Mul multiplies it by
    another tensor (squeeze-and-excitation's scale)."""

    class Gates(torch.nn.Module):
        def forward(self, x):
            fused = torch.nn.functional.silu(x)  # Sigmoid, Mul(x, .)
            gate = torch.sigmoid(fused)
            return fused * gate, gate, x * torch.sigmoid(fused)

    x = rng.standard_normal((2, 3, 5, 5)).astype(np.float32) * 4
    x.flat[:3] = [np.inf, -np.inf, np.nan]
    loaded = numbaconv.onnx.load(export(torch, Gates(), x))
    ops = [op for _, op, _, _, _ in loaded._nodes]
    # (the exporter computes sigmoid(fused) once: read by two Muls and an output)
    assert ops.count(numbaconv.onnx.SILU) == 1 and ops.count("Sigmoid") == 1
    assert ops.count("Mul") == 2
    with torch.no_grad():
        expected = [e.numpy() for e in Gates()(torch.from_numpy(x))]
    for got, want in zip(loaded(x), expected):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    with pytest.raises(OnnxError, match="SiLU"):  # not an ONNX operator: refused
        graph = graph_model([helper.make_node(numbaconv.onnx.SILU, ["x"], ["y"])],
                            [tensor_info("x", [1])], [tensor_info("y", [1])])
        numbaconv.onnx.load(graph.SerializeToString())


def test_batch_norms_after_a_concatenation_run_as_one_pass_with_their_relu(torch, rng):
    """DenseNet's BatchNorm, ReLU on a concatenation (nothing to fold it into): scale and
    shift computed at load, the ReLU in the same pass; a BatchNorm read by two nodes keeps
    its ReLU apart; a BatchNorm after a Conv is still folded into it."""

    class Dense(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
            self.bn_folded = torch.nn.BatchNorm2d(4)
            self.bn_relu = torch.nn.BatchNorm2d(7)
            self.bn_shared = torch.nn.BatchNorm2d(7)
            self.bn_alone = torch.nn.BatchNorm2d(7)

        def forward(self, x):
            y = torch.cat([x, self.bn_folded(self.conv(x))], 1)
            shared = self.bn_shared(y)
            return torch.relu(self.bn_relu(y)), torch.relu(shared), shared, self.bn_alone(y)

    torch.manual_seed(0)
    model = Dense()
    with torch.no_grad():
        for bn in (model.bn_folded, model.bn_relu, model.bn_shared, model.bn_alone):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
            bn.weight.uniform_(-2, 2)
            bn.bias.uniform_(-1, 1)
    x = rng.standard_normal((2, 3, 6, 5)).astype(np.float32) * 2
    x[0, 0, 0, :3] = [np.nan, np.inf, -np.inf]
    loaded = numbaconv.onnx.load(export(torch, model, x))
    steps = [(op, attributes.get("relu")) for _, op, _, _, attributes in loaded._nodes]
    affine = numbaconv.onnx.CHANNEL_AFFINE
    assert sorted(relu for op, relu in steps if op == affine) == [False, False, True]
    assert [op for op, _ in steps].count("Relu") == 1
    assert "BatchNormalization" not in [op for op, _ in steps]
    with torch.no_grad():
        expected = [e.numpy() for e in model(torch.from_numpy(x))]
    for got, want in zip(loaded(x), expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    (_, _, inputs, _, attributes), *_ = [n for n in loaded._nodes if n[1] == affine]
    scale, shift = (loaded.initializers[i] for i in inputs[1:])
    with pytest.raises(ValueError, match="BatchNormalization: expected .* C = 7"):
        numbaconv.onnx._STEPS[affine](loaded, [x, scale, shift], attributes, 1)


@pytest.mark.parametrize("scale_first", [True, False])
def test_squeeze_and_excitation_scale_and_global_pool_match_torch(torch, rng, scale_first):
    """A squeeze-and-excitation block's Mul of each (n, c) plane by its own factor and its
    GlobalAveragePool run as numbaconv kernels (either operand order, odd plane sizes,
    NaN and inf carried as torch carries them)."""

    class SE(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Conv2d(6, 6, 1)

        def forward(self, x):
            scale = torch.sigmoid(self.fc(torch.nn.functional.adaptive_avg_pool2d(x, 1)))
            y = scale * x if scale_first else x * scale
            return y, x.mean((2, 3), keepdim=True)

    torch.manual_seed(0)
    x = rng.standard_normal((3, 6, 7, 5)).astype(np.float32) * 3
    x[0, 1, 2, 3], x[1, 2, 0, 0] = np.inf, np.nan
    model = SE()
    loaded = numbaconv.onnx.load(export(torch, model, x))
    assert [op for _, op, _, _, _ in loaded._nodes].count("GlobalAveragePool") >= 1
    with torch.no_grad():
        expected = [e.numpy() for e in model(torch.from_numpy(x))]
    for got, want in zip(loaded(x), expected):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    # a product whose second operand is not one factor per plane stays NumPy's broadcast
    a = rng.standard_normal((2, 6, 4, 4)).astype(np.float32)
    for b in (rng.standard_normal((1, 6, 1, 1)).astype(np.float32),
              rng.standard_normal((2, 6, 1, 4)).astype(np.float32), np.float32(2.0)):
        got = numbaconv.onnx._STEPS["Mul"](loaded, [a, b], {}, 1)[0]
        np.testing.assert_array_equal(got, a * b)


@pytest.mark.parametrize("activation, module", [
    ("relu", "ReLU"), (("clamp", 0.0, 6.0), "ReLU6"), ("hardswish", "Hardswish"),
    (("clamp", -0.5, 0.25), "Hardtanh"), ("silu", "SiLU")])
def test_conv_activations_are_fused_into_the_convolution(torch, rng, activation, module):
    """A Conv whose result only an activation reads computes it as it writes (one pass
    over the output less); a Conv whose result is read twice keeps its activation apart."""
    torch.manual_seed(0)
    act = getattr(torch.nn, module)(*((-0.5, 0.25) if module == "Hardtanh" else ()))

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.depthwise = torch.nn.Conv2d(4, 4, 3, padding=1, groups=4)
            self.pointwise = torch.nn.Conv2d(4, 6, 1)
            self.act = act

        def forward(self, x):
            y = self.act(self.depthwise(x))
            z = self.pointwise(y)
            return self.act(z), z

    x = rng.standard_normal((2, 4, 9, 9)).astype(np.float32) * 3
    x[0, 0, :2, :2] = [[np.nan, np.inf], [-np.inf, 0]]
    net = Net()
    loaded = numbaconv.onnx.load(export(torch, net, x))
    convs = [attributes.get("activation") for _, op, _, _, attributes in loaded._nodes
             if op == "Conv"]
    assert convs == [activation, None]  # the second Conv's result is also an output
    with torch.no_grad():
        expected = [e.numpy() for e in net(torch.from_numpy(x))]
    for got, want in zip(loaded(x), expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_results_read_twice_or_through_views_are_not_overwritten(torch, rng):
    class Branches(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(2, 4, 3, padding=1)

        def forward(self, x):
            y = self.conv(x)
            flat = torch.relu(y.reshape(y.shape[0], -1))  # a view of y, then ReLU
            a = torch.relu(y)                             # y read twice more
            return flat.sum(1) + (a + y).sum((1, 2, 3)) + torch.clamp(y + 1, 0, 6).sum((1, 2, 3))

    x = rng.standard_normal((2, 2, 6, 6)).astype(np.float32)
    check_against_torch_and_onnxruntime(torch, Branches(), x)


def test_results_kept_by_the_caller_survive_later_calls_in_pooled_memory(torch, rng):
    """Activations above the array pool's threshold: a first call's outputs (logits and
    an intermediate feature map), kept by the caller, are unchanged by later calls that
    reuse the pooled blocks freed in between, and every call matches torch."""
    from numbaconv import array_pool

    class Features(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = small_models(torch.nn, torch)["efficient"]()

        def forward(self, x):
            return self.net(x), torch.nn.functional.silu(self.net.conv(x))

    torch.manual_seed(0)
    model = Features().eval()
    inputs = [rng.standard_normal((2, 3, 96, 96)).astype(np.float32) for _ in range(3)]
    loaded = numbaconv.onnx.load(export(torch, model, inputs[0]))
    kept, expected = [], []
    for x in inputs:
        kept.append(loaded(x))
        with torch.no_grad():
            expected.append([e.numpy() for e in model(torch.from_numpy(x))])
    assert kept[0][1].nbytes >= array_pool.MIN_BYTES  # (the feature map is pooled)
    assert array_pool.pooled_bytes() > 0  # blocks freed by the calls, reused by the next
    for got, want in zip(kept, expected):
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("op, inputs, initial", [
    ("ConstantOfShape", ["shape"], {"shape": np.array([10**6, 10**6], np.int64)}),
    ("Expand", ["x", "shape"], {"shape": np.array([10**7, 10**6, 2], np.int64)}),
    ("Range", ["start", "limit", "delta"], {"start": np.array(0.0, np.float32),
                                             "limit": np.array(1e15, np.float32),
                                             "delta": np.array(1.0, np.float32)}),
])
def test_huge_allocations_from_a_model_are_refused_before_allocating(op, inputs, initial):
    initializers = [numpy_helper.from_array(v, k) for k, v in initial.items()]
    graph_inputs = [tensor_info("x", [1, 2])] if "x" in inputs else []
    model = graph_model([helper.make_node(op, inputs, ["y"])], graph_inputs,
                        [tensor_info("y", None, 1)], initializers)
    with pytest.raises(MemoryError, match=f"{op} to shape"):
        loaded = numbaconv.onnx.load(model.SerializeToString())
        loaded(np.ones((1, 2), np.float32)) if graph_inputs else loaded()
