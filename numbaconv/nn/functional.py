"""The functional API under torch's module path: ``import numbaconv.nn.functional as F``
then ``F.conv2d``, ``F.relu``, ``F.batch_norm``, ... (the same functions as
``numbaconv.conv2d`` and friends)."""

from ..activations import (gelu, hardsigmoid, hardswish, hardtanh, leaky_relu, linear,
                           log_softmax, prelu, relu, relu6, rrelu, sigmoid, silu, softmax, tanh)
from ..dropout import dropout, dropout2d
from ..functional import conv1d, conv2d
from ..interpolation import interpolate
from ..losses import (binary_cross_entropy, binary_cross_entropy_with_logits, cross_entropy,
                      l1_loss, mse_loss, nll_loss, smooth_l1_loss)
from ..normalization import batch_norm, group_norm, layer_norm
from ..padding import pad
from ..pooling import (adaptive_avg_pool1d, adaptive_avg_pool2d, adaptive_max_pool2d,
                       avg_pool1d, avg_pool2d, max_pool1d, max_pool2d, max_unpool2d)
from ..transposed import conv_transpose1d, conv_transpose2d

__all__ = ["conv1d", "conv2d", "conv_transpose1d", "conv_transpose2d", "max_pool1d",
           "max_pool2d", "avg_pool1d", "avg_pool2d", "max_unpool2d", "adaptive_avg_pool1d",
           "adaptive_avg_pool2d", "adaptive_max_pool2d", "linear", "relu", "relu6", "sigmoid",
           "tanh", "leaky_relu", "prelu", "rrelu", "hardtanh", "hardswish", "hardsigmoid",
           "silu", "gelu", "softmax", "log_softmax", "batch_norm", "layer_norm", "group_norm",
           "dropout", "dropout2d", "interpolate", "pad", "cross_entropy", "nll_loss", "mse_loss",
           "l1_loss", "smooth_l1_loss", "binary_cross_entropy",
           "binary_cross_entropy_with_logits"]
