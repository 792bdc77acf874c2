"""Loss modules with torch.nn's names and arguments: ``loss_fn(input, target)`` calls
the function of :mod:`numbaconv.losses` with the module's options."""

from __future__ import annotations

from .. import losses
from .module import Module


class _Loss(Module):
    def __init__(self, reduction="mean"):
        super().__init__()
        self.reduction = losses._reduction(type(self).__name__, reduction)

    def extra_repr(self) -> str:
        return "" if self.reduction == "mean" else f"reduction={self.reduction!r}"


class MSELoss(_Loss):
    """Mean squared error, as ``torch.nn.MSELoss`` (:func:`numbaconv.mse_loss`)."""

    def forward(self, input, target):
        return losses.mse_loss(input, target, self.reduction)


class L1Loss(_Loss):
    """Mean absolute error, as ``torch.nn.L1Loss`` (:func:`numbaconv.l1_loss`)."""

    def forward(self, input, target):
        return losses.l1_loss(input, target, self.reduction)


class SmoothL1Loss(_Loss):
    """Smooth L1 loss, as ``torch.nn.SmoothL1Loss`` (:func:`numbaconv.smooth_l1_loss`)."""

    def __init__(self, reduction="mean", beta=1.0):
        super().__init__(reduction)
        self.beta = losses._beta("SmoothL1Loss", beta)

    def forward(self, input, target):
        return losses.smooth_l1_loss(input, target, self.reduction, self.beta)


class BCELoss(_Loss):
    """Binary cross entropy of probabilities, as ``torch.nn.BCELoss``
    (:func:`numbaconv.binary_cross_entropy`)."""

    def __init__(self, weight=None, reduction="mean"):
        super().__init__(reduction)
        self.register_buffer("weight", None if weight is None else
                             losses.check_float_array("BCELoss", "weight", weight))

    def forward(self, input, target):
        return losses.binary_cross_entropy(input, target, self.weight, self.reduction)


class BCEWithLogitsLoss(_Loss):
    """Binary cross entropy of logits, as ``torch.nn.BCEWithLogitsLoss``
    (:func:`numbaconv.binary_cross_entropy_with_logits`)."""

    def __init__(self, weight=None, reduction="mean", pos_weight=None):
        super().__init__(reduction)
        for name, value in (("weight", weight), ("pos_weight", pos_weight)):
            self.register_buffer(name, None if value is None else
                                 losses.check_float_array("BCEWithLogitsLoss", name, value))

    def forward(self, input, target):
        return losses.binary_cross_entropy_with_logits(input, target, self.weight,
                                                       self.reduction, self.pos_weight)


class _WeightedLoss(_Loss):
    def __init__(self, weight=None, ignore_index=-100, reduction="mean"):
        super().__init__(reduction)
        self.register_buffer("weight", None if weight is None else
                             losses.check_float_array(type(self).__name__, "weight", weight))
        self.ignore_index = ignore_index


class NLLLoss(_WeightedLoss):
    """Negative log-likelihood of log-probabilities, as ``torch.nn.NLLLoss``
    (:func:`numbaconv.nll_loss`)."""

    def forward(self, input, target):
        return losses.nll_loss(input, target, self.weight, self.ignore_index, self.reduction)


class CrossEntropyLoss(_WeightedLoss):
    """Cross entropy of logits, as ``torch.nn.CrossEntropyLoss``
    (:func:`numbaconv.cross_entropy`): class indices or class probabilities as targets,
    class ``weight``, ``ignore_index``, ``label_smoothing``."""

    def __init__(self, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
        super().__init__(weight, ignore_index, reduction)
        self.label_smoothing = losses._smoothing("CrossEntropyLoss", label_smoothing)

    def forward(self, input, target):
        return losses.cross_entropy(input, target, self.weight, self.ignore_index,
                                    self.reduction, self.label_smoothing)
