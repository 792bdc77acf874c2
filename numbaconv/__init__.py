"""numbaconv: PyTorch-exact convolutions for NumPy arrays, compiled by Numba.

>>> import numpy as np, numbaconv
>>> x = np.random.default_rng(0).standard_normal((2, 3, 32, 32), dtype=np.float32)
>>> w = np.random.default_rng(1).standard_normal((8, 3, 3, 3), dtype=np.float32)
>>> numbaconv.conv2d(x, w, padding="same").shape
(2, 8, 32, 32)
"""

from ._blas_setup import prefer_avx512_openblas

prefer_avx512_openblas()  # before NumPy/SciPy load OpenBLAS; see _blas_setup

from .config import set_memory_limit  # noqa: E402
from .errors import CompileWarning, CudaUnavailable, UnsupportedAlgorithm  # noqa: E402
from .functional import conv1d, conv2d, fused_conv2d, plan  # noqa: E402
from .transposed import conv_transpose1d, conv_transpose2d  # noqa: E402
from .activations import (gelu, hardsigmoid, hardswish, hardtanh, leaky_relu,  # noqa: E402
                          linear, log_softmax, prelu, relu, relu6, rrelu, sigmoid, silu,
                          softmax, tanh)
from .dropout import dropout, dropout2d  # noqa: E402
from .interpolation import interpolate  # noqa: E402
from .normalization import batch_norm, group_norm, layer_norm  # noqa: E402
from .losses import (binary_cross_entropy, binary_cross_entropy_with_logits,  # noqa: E402
                     cross_entropy, l1_loss, mse_loss, nll_loss, smooth_l1_loss)
from .padding import pad  # noqa: E402
from .pooling import (adaptive_avg_pool1d, adaptive_avg_pool2d,  # noqa: E402
                      adaptive_max_pool2d, avg_pool1d, avg_pool2d, max_pool1d, max_pool2d,
                      max_unpool2d)
from . import nn  # noqa: E402  (modules: numbaconv.nn.Conv2d, ...)
from .precompile import compile  # noqa: E402
from . import random  # noqa: E402,F401  (numbaconv.random.default_generator)
from .random import manual_seed  # noqa: E402
from . import optim  # noqa: E402  (optimisers: numbaconv.optim.SGD, Adam, AdamW)

__version__ = "0.1.0"


def algorithms() -> tuple:
    """Names accepted by ``algorithm=``: 'auto', 'autotune' and each registered algorithm
    (``numbaconv.registry.REGISTRIES`` says which run on the CPU and which on the GPU)."""
    from .planner import algorithm_names

    return algorithm_names()


__all__ = ["conv1d", "conv2d", "fused_conv2d", "conv_transpose1d", "conv_transpose2d", "max_pool1d", "max_pool2d",
           "avg_pool1d", "avg_pool2d", "max_unpool2d", "adaptive_avg_pool1d",
           "adaptive_avg_pool2d", "adaptive_max_pool2d", "linear", "relu", "relu6", "sigmoid",
           "tanh", "leaky_relu", "prelu", "rrelu", "hardtanh", "hardswish", "hardsigmoid",
           "silu", "gelu", "softmax", "log_softmax", "batch_norm", "layer_norm", "group_norm",
           "dropout", "dropout2d", "interpolate", "pad", "nn", "plan", "algorithms",
           "manual_seed", "cross_entropy", "nll_loss", "mse_loss", "l1_loss", "smooth_l1_loss",
           "binary_cross_entropy", "binary_cross_entropy_with_logits", "optim",
           "set_memory_limit", "compile", "UnsupportedAlgorithm", "CudaUnavailable", "CompileWarning",
           "__version__"]
