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
:mod:`numbaconv.nn.init` has torch.nn.init's functions (``nn.init.xavier_normal_(w)``).
"""

from . import functional, init
from .activation import LeakyReLU, PReLU, ReLU, RReLU, Sigmoid, Tanh
from .container import Sequential
from .conv import Conv1d, Conv2d, ConvTranspose1d, ConvTranspose2d
from .linear import Flatten, Linear
from .module import IncompatibleKeys, Module
from .pooling import AvgPool1d, AvgPool2d, MaxPool1d, MaxPool2d, MaxUnpool2d

__all__ = ["Module", "Sequential", "Conv1d", "Conv2d", "ConvTranspose1d", "ConvTranspose2d",
           "MaxPool1d", "MaxPool2d", "AvgPool1d", "AvgPool2d", "MaxUnpool2d", "Linear",
           "Flatten", "ReLU", "Sigmoid", "Tanh", "LeakyReLU", "PReLU", "RReLU",
           "IncompatibleKeys", "functional", "init"]
