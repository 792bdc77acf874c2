"""``fuse(model)``: an inference copy of a model with BatchNorm folded into the preceding
convolutions and activations computed by the convolution kernels as they write.

In every ``Sequential`` of the model (at any depth), a ``Conv2d`` followed by a
``BatchNorm2d`` (eval mode, running statistics) and/or an activation (``ReLU``,
``ReLU6``, ``Hardtanh``, ``Hardswish``, ``SiLU``) becomes one :class:`FusedConv2d`; the
modules it absorbed become ``Identity``, so indices and the model's structure stay as
they were. torchvision's ``Conv2dNormActivation`` blocks (MobileNet, EfficientNet, RegNet)
are such Sequentials; layers called one by one in a ``forward`` (ResNet's blocks) are not
fused.

Per fused layer this saves the batch norm's pass over the output (its scale and shift
are in the weights and bias) and the activation's (:func:`numbaconv.fused_conv2d`).
The copy is a snapshot: the original model is not changed, and later changes to its
weights do not reach the copy (fuse again).
"""

from __future__ import annotations

import copy

import numpy as np

from ..functional import fused_conv2d
from .activation import Hardswish, Hardtanh, ReLU, ReLU6, SiLU
from .container import Sequential
from .conv import Conv2d
from .linear import Identity
from .module import Module
from .normalization import BatchNorm2d


class FusedConv2d(Module):
    """A ``Conv2d`` with a BatchNorm folded into its weights and bias and an activation its
    kernels apply as they write (:func:`numbaconv.fused_conv2d`); made by :func:`fuse`.

    Attributes: the convolution's (``stride``, ``padding``, ...), ``weight`` and ``bias``
    (folded), ``activation`` (None, a name, or ("clamp", low, high)) and ``folded``, the
    names of the modules it absorbed.
    """

    def __init__(self, conv: Conv2d, batch_norm: BatchNorm2d | None = None,
                 activation=None, folded=()):
        super().__init__()
        for name in ("in_channels", "out_channels", "kernel_size", "stride", "padding",
                     "dilation", "groups", "padding_mode", "algorithm", "dtype"):
            setattr(self, name, getattr(conv, name))
        weight, bias = conv.weight, conv.bias
        if batch_norm is not None:
            weight, bias = fold_batch_norm(weight, bias, batch_norm)
        self.weight, self.bias = weight.copy(), None if bias is None else bias.copy()
        self.activation = activation
        self.folded = tuple(folded)

    def forward(self, input):
        return fused_conv2d(input, self.weight, self.bias, self.stride, self.padding,
                            self.dilation, self.groups, self.padding_mode,
                            activation=self.activation, algorithm=self.algorithm)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, groups={self.groups}, "
                f"activation={self.activation!r}, folded={list(self.folded)}")


def fold_batch_norm(weight, bias, batch_norm: BatchNorm2d):
    """(weight, bias) of a convolution followed by ``batch_norm`` in eval mode: each output
    channel scaled by gamma / sqrt(running_var + eps), the bias shifted (computed in
    float64, returned in the weight's dtype)."""
    var = batch_norm.running_var.astype(np.float64)
    factor = 1 / np.sqrt(var + batch_norm.eps)
    if batch_norm.weight is not None:
        factor = factor * batch_norm.weight.astype(np.float64)
    shift = 0.0 if batch_norm.bias is None else batch_norm.bias.astype(np.float64)
    b = np.zeros(weight.shape[0]) if bias is None else bias.astype(np.float64)
    folded_w = weight.astype(np.float64) * factor.reshape((-1,) + (1,) * (weight.ndim - 1))
    folded_b = (b - batch_norm.running_mean.astype(np.float64)) * factor + shift
    return folded_w.astype(weight.dtype), folded_b.astype(weight.dtype)


def _activation_of(module):
    """The fused_conv2d activation ``module`` computes, or None."""
    if type(module) is ReLU:
        return "relu"
    if type(module) is ReLU6:
        return "relu6"
    if type(module) is Hardswish:
        return "hardswish"
    if type(module) is SiLU:
        return "silu"
    if type(module) is Hardtanh:
        return ("clamp", float(module.min_val), float(module.max_val))
    return None


def _foldable(batch_norm, conv) -> bool:
    return (type(batch_norm) is BatchNorm2d and batch_norm.running_mean is not None
            and batch_norm.running_var is not None
            and batch_norm.num_features == conv.out_channels)


def fuse(model: Module) -> Module:
    """An eval-mode copy of ``model`` whose Conv2d -> BatchNorm2d -> activation runs in its
    Sequentials are :class:`FusedConv2d` layers (see the module docstring); ``model``
    itself is left as it is.

    >>> import numpy as np
    >>> from numbaconv import nn
    >>> block = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8),
    ...                       nn.ReLU6())
    >>> fused = nn.fuse(block)
    >>> [type(m).__name__ for m in fused]
    ['FusedConv2d', 'Identity', 'Identity']
    >>> x = np.ones((1, 3, 8, 8), np.float32)
    >>> bool(np.allclose(fused(x), block.eval()(x), atol=1e-6))
    True
    """
    fused = copy.deepcopy(model)
    fused.eval()
    for module in fused.modules():
        if isinstance(module, Sequential):
            _fuse_sequential(module)
    return fused


def _fuse_sequential(sequence: Sequential) -> None:
    names = list(sequence._modules)
    i = 0
    while i < len(names):
        conv = sequence._modules[names[i]]
        if type(conv) is not Conv2d:
            i += 1
            continue
        j = i + 1
        batch_norm = None
        if j < len(names) and _foldable(sequence._modules[names[j]], conv):
            batch_norm = sequence._modules[names[j]]
            j += 1
        activation = _activation_of(sequence._modules[names[j]]) if j < len(names) else None
        if activation is not None:
            j += 1
        if j > i + 1:
            sequence._modules[names[i]] = FusedConv2d(conv, batch_norm, activation,
                                                      names[i + 1:j])
            for name in names[i + 1:j]:
                sequence._modules[name] = Identity()
        i = j
