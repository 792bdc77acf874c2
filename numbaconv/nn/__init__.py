"""Layers as modules, like ``torch.nn``: parameters are NumPy arrays, initialised as torch
initialises them, and state dicts load a torch model's weights.

>>> import numpy as np
>>> from numbaconv import nn
>>> lenet = nn.Sequential(
...     nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
...     nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
...     nn.Linear(16 * 5 * 5, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
...     nn.Linear(84, 10))
>>> lenet(np.zeros((8, 1, 28, 28), np.float32)).shape
(8, 10)

To run a model trained in torch: build the same architecture here, then
``model.load_state_dict({k: v.numpy() for k, v in torch_model.state_dict().items()})``.
:mod:`numbaconv.nn.init` has torch.nn.init's functions (``nn.init.xavier_normal_(w)``),
:mod:`numbaconv.nn.grad` torch.nn.grad's (``nn.grad.conv2d_weight(x, w.shape, grad_out)``).
For inference, ``nn.fuse(model)`` returns a copy with BatchNorm folded into the
convolutions and their activations applied as the kernels write (:mod:`numbaconv.nn.fusion`).
"""

from . import functional, grad, init
from .activation import (GELU, Hardsigmoid, Hardswish, Hardtanh, LeakyReLU, LogSoftmax, PReLU,
                         ReLU, ReLU6, RReLU, Sigmoid, SiLU, Softmax, Tanh)
from .container import ModuleDict, ModuleList, Sequential
from .conv import Conv1d, Conv2d, ConvTranspose1d, ConvTranspose2d
from .dropout import Dropout, Dropout2d
from .fusion import FusedConv2d, fuse
from .linear import Flatten, Identity, Linear
from .loss import (BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, L1Loss, MSELoss, NLLLoss,
                   SmoothL1Loss)
from .module import IncompatibleKeys, Module
from .normalization import BatchNorm1d, BatchNorm2d, GroupNorm, LayerNorm
from .pooling import (AdaptiveAvgPool1d, AdaptiveAvgPool2d, AdaptiveMaxPool2d, AvgPool1d,
                      AvgPool2d, MaxPool1d, MaxPool2d, MaxUnpool2d)
from .training import Gradients, value_and_grad
from .upsampling import Upsample

__all__ = ["Module", "Sequential", "ModuleList", "ModuleDict", "Conv1d", "Conv2d",
           "ConvTranspose1d", "ConvTranspose2d", "MaxPool1d", "MaxPool2d", "AvgPool1d",
           "AvgPool2d", "MaxUnpool2d", "AdaptiveAvgPool1d", "AdaptiveAvgPool2d",
           "AdaptiveMaxPool2d", "Linear", "Identity", "Flatten", "ReLU", "ReLU6", "Sigmoid",
           "Tanh", "LeakyReLU", "PReLU", "RReLU", "Hardtanh", "Hardswish", "Hardsigmoid",
           "SiLU", "GELU", "Softmax", "LogSoftmax", "BatchNorm1d", "BatchNorm2d", "LayerNorm",
           "GroupNorm", "Dropout", "Dropout2d", "Upsample", "IncompatibleKeys", "functional",
           "grad", "init", "fuse", "FusedConv2d", "CrossEntropyLoss", "NLLLoss", "MSELoss",
           "L1Loss", "SmoothL1Loss", "BCELoss", "BCEWithLogitsLoss", "value_and_grad",
           "Gradients"]
