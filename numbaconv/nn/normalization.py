"""Normalisation modules: ``BatchNorm1d``, ``BatchNorm2d``, ``LayerNorm``, ``GroupNorm``.

Parameters, buffers, state-dict keys, reprs and train/eval behaviour are torch's, so a
torchvision model's state dict (``num_batches_tracked`` included) loads strictly.
"""

from __future__ import annotations

import numpy as np

from ..normalization import _normalized_shape, batch_norm, group_norm, layer_norm
from .module import Module
from .options import check_bool, check_int, check_number, module_dtype
from ..tracing import as_array


def _eps(name: str, eps) -> float:
    return check_number(name, "eps", eps)


class _BatchNorm(Module):
    _input_dims = (4,)
    _expected = "4D"

    def __init__(self, num_features, eps=1e-05, momentum=0.1, affine=True,
                 track_running_stats=True, *, bias=True, dtype=None):
        super().__init__()
        name = type(self).__name__
        self.num_features = check_int(name, "num_features", num_features, 1)
        self.eps = _eps(name, eps)
        if momentum is not None:
            check_number(name, "momentum", momentum)
        self.momentum = momentum
        self.affine = check_bool(name, "affine", affine)
        self.track_running_stats = check_bool(name, "track_running_stats", track_running_stats)
        self.dtype = module_dtype(name, dtype)
        with_bias = affine and check_bool(name, "bias", bias)
        self.register_parameter("weight", np.ones(num_features, self.dtype) if affine else None)
        self.register_parameter("bias", np.zeros(num_features, self.dtype) if with_bias
                                else None)
        if track_running_stats:
            self.register_buffer("running_mean", np.zeros(num_features, self.dtype))
            self.register_buffer("running_var", np.ones(num_features, self.dtype))
            self.register_buffer("num_batches_tracked", np.array(0, np.int64))
        else:
            for buffer in ("running_mean", "running_var", "num_batches_tracked"):
                self.register_buffer(buffer, None)

    def reset_running_stats(self) -> None:
        """Running mean 0, variance 1, no batches tracked (torch's starting state)."""
        if self.track_running_stats:
            self.running_mean[...] = 0
            self.running_var[...] = 1
            self.num_batches_tracked[...] = 0

    def reset_parameters(self) -> None:
        """Running statistics reset; weight 1 and bias 0."""
        self.reset_running_stats()
        if self.weight is not None:
            self.weight[...] = 1
        if self.bias is not None:
            self.bias[...] = 0

    def forward(self, input):
        x = as_array(input)  # (a traced input stays traced)
        if x.ndim not in self._input_dims:
            raise ValueError(f"expected {self._expected} input (got {x.ndim}D input)")
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked += 1
            if self.momentum is None:  # a cumulative moving average
                factor = 1.0 / float(self.num_batches_tracked)
        use_batch = self.training or (self.running_mean is None and self.running_var is None)
        keep_stats = not self.training or self.track_running_stats
        return batch_norm(input, self.running_mean if keep_stats else None,
                          self.running_var if keep_stats else None, self.weight, self.bias,
                          use_batch, factor, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, bias={self.bias is not None}, "
                f"track_running_stats={self.track_running_stats}")


class BatchNorm2d(_BatchNorm):
    """Batch normalisation of (N, C, H, W) inputs, as ``torch.nn.BatchNorm2d`` (``weight``
    ones and ``bias`` zeros when ``affine``, no bias with ``bias=False``): in training
    mode (after construction or :meth:`train`) each channel is normalised with the batch's
    statistics, which update the running ones; after :meth:`eval` with the running ones.
    See :func:`numbaconv.batch_norm`.

    >>> import numpy as np
    >>> from numbaconv import nn
    >>> bn = nn.BatchNorm2d(3)
    >>> bn
    BatchNorm2d(3, eps=1e-05, momentum=0.1, affine=True, bias=True, track_running_stats=True)
    >>> list(bn.state_dict())
    ['weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked']
    >>> _ = bn(np.random.default_rng(0).normal(5.0, 1.0, (8, 3, 4, 4)))
    >>> int(bn.num_batches_tracked), bn.running_mean.round(1)
    (1, array([0.5, 0.5, 0.5], dtype=float32))
    """


class BatchNorm1d(_BatchNorm):
    """Batch normalisation of (N, C) or (N, C, L) inputs, as ``torch.nn.BatchNorm1d``;
    see :class:`BatchNorm2d`."""

    _input_dims = (2, 3)
    _expected = "2D or 3D"


class LayerNorm(Module):
    """Layer normalisation over the last axes, as ``torch.nn.LayerNorm``: ``weight`` (ones)
    and ``bias`` (zeros) of shape ``normalized_shape`` when ``elementwise_affine`` (the
    bias only with ``bias=True``). See :func:`numbaconv.layer_norm`.

    >>> from numbaconv import nn
    >>> nn.LayerNorm(96)
    LayerNorm((96,), eps=1e-05, elementwise_affine=True, bias=True)
    """

    def __init__(self, normalized_shape, eps=1e-05, elementwise_affine=True, bias=True, *,
                 dtype=None):
        super().__init__()
        name = type(self).__name__
        self.normalized_shape = _normalized_shape(name, normalized_shape)
        self.eps = _eps(name, eps)
        self.elementwise_affine = check_bool(name, "elementwise_affine", elementwise_affine)
        check_bool(name, "bias", bias)
        self.dtype = module_dtype(name, dtype)
        shape = self.normalized_shape
        self.register_parameter("weight", np.ones(shape, self.dtype) if elementwise_affine
                                else None)
        self.register_parameter("bias", np.zeros(shape, self.dtype)
                                if elementwise_affine and bias else None)

    def forward(self, input):
        return layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}, bias={self.bias is not None}")


class GroupNorm(Module):
    """Group normalisation, as ``torch.nn.GroupNorm``: ``num_channels`` split into
    ``num_groups`` groups; per-channel ``weight`` (ones) and ``bias`` (zeros, unless
    ``bias=False``) when ``affine``. See :func:`numbaconv.group_norm`.

    >>> from numbaconv import nn
    >>> nn.GroupNorm(2, 4)
    GroupNorm(2, 4, eps=1e-05, affine=True, bias=True)
    """

    def __init__(self, num_groups, num_channels, eps=1e-05, affine=True, *, bias=True,
                 dtype=None):
        super().__init__()
        name = type(self).__name__
        self.num_groups = check_int(name, "num_groups", num_groups, 1)
        self.num_channels = check_int(name, "num_channels", num_channels, 1)
        if num_channels % num_groups:
            raise ValueError(f"num_channels ({num_channels}) must be divisible by num_groups "
                             f"({num_groups})")
        self.eps = _eps(name, eps)
        self.affine = check_bool(name, "affine", affine)
        self.dtype = module_dtype(name, dtype)
        with_bias = affine and check_bool(name, "bias", bias)
        self.register_parameter("weight", np.ones(num_channels, self.dtype) if affine else None)
        self.register_parameter("bias", np.zeros(num_channels, self.dtype) if with_bias
                                else None)

    def forward(self, input):
        return group_norm(input, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}, "
                f"bias={self.bias is not None}")


