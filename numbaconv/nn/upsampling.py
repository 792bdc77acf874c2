"""``Upsample``: :func:`numbaconv.interpolate` as a module."""

from __future__ import annotations

from ..interpolation import MODES, interpolate
from .module import Module


class Upsample(Module):
    """Resizes (N, C, L) or (N, C, H, W) inputs to ``size`` or by ``scale_factor``, as
    ``torch.nn.Upsample``; see :func:`numbaconv.interpolate` for the modes.

    >>> import numpy as np
    >>> from numbaconv import nn
    >>> up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
    >>> up
    Upsample(scale_factor=2.0, mode='bilinear')
    >>> up(np.ones((1, 3, 4, 4))).shape
    (1, 3, 8, 8)
    """

    def __init__(self, size=None, scale_factor=None, mode="nearest", align_corners=None,
                 recompute_scale_factor=None):
        super().__init__()
        if mode not in MODES + ("bicubic", "trilinear", "area"):
            raise ValueError(f"Upsample: mode must be one of {MODES}, got {mode!r}")
        self.size = size
        if isinstance(scale_factor, (tuple, list)):
            self.scale_factor = tuple(float(f) for f in scale_factor)
        else:
            self.scale_factor = float(scale_factor) if scale_factor else None
        self.mode = mode
        self.align_corners = align_corners
        self.recompute_scale_factor = recompute_scale_factor

    def forward(self, input):
        return interpolate(input, self.size, self.scale_factor, self.mode, self.align_corners,
                           recompute_scale_factor=self.recompute_scale_factor)

    def extra_repr(self) -> str:
        info = (f"scale_factor={self.scale_factor!r}" if self.scale_factor is not None
                else f"size={self.size!r}")
        return f"{info}, mode={self.mode!r}"
