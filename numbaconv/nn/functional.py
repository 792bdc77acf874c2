"""The functional API under torch's module path: ``import numbaconv.nn.functional as F``
then ``F.conv2d``, ``F.relu``, ``F.max_pool2d``, ... (the same functions as
``numbaconv.conv2d`` and friends)."""

from ..activations import leaky_relu, linear, prelu, relu, rrelu, sigmoid, tanh
from ..functional import conv1d, conv2d
from ..pooling import avg_pool1d, avg_pool2d, max_pool1d, max_pool2d, max_unpool2d
from ..transposed import conv_transpose1d, conv_transpose2d

__all__ = ["conv1d", "conv2d", "conv_transpose1d", "conv_transpose2d", "max_pool1d",
           "max_pool2d", "avg_pool1d", "avg_pool2d", "max_unpool2d", "linear", "relu",
           "sigmoid", "tanh", "leaky_relu", "prelu", "rrelu"]
