"""torch's default parameter initialisation, drawn from a NumPy Generator.

``torch.nn.Conv2d`` and ``Linear`` initialise their weight with
``kaiming_uniform_(w, a=sqrt(5))`` and their bias uniformly in ±1/sqrt(fan_in). With
a = sqrt(5) the Kaiming gain is sqrt(2 / (1 + a^2)) = sqrt(1/3), so the weight bound
gain * sqrt(3 / fan_in) is also 1/sqrt(fan_in): both are U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
The distributions are torch's; the values differ because the random streams do.
"""

from __future__ import annotations

import math

import numpy as np


def generator(rng) -> np.random.Generator:
    """A ``numpy.random.Generator`` from None (fresh entropy), a seed or a Generator."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or isinstance(rng, (int, np.integer, np.random.SeedSequence)):
        return np.random.default_rng(rng)
    raise TypeError(f"rng must be None, an int seed or a numpy.random.Generator, got {rng!r}")


def fan_in(weight_shape: tuple) -> int:
    """torch's fan-in of a weight: shape[1] times the kernel's size (shape[2:])."""
    return weight_shape[1] * math.prod(weight_shape[2:]) if len(weight_shape) > 1 else 0


def kaiming_uniform(shape: tuple, fan: int, a: float, rng: np.random.Generator,
                    dtype) -> np.ndarray:
    """U(-b, b) with b = sqrt(2 / (1 + a^2)) * sqrt(3 / fan) (``kaiming_uniform_``, fan_in
    mode, leaky_relu gain); an empty array when ``fan`` is 0, as torch leaves it."""
    bound = math.sqrt(2.0 / (1.0 + a * a)) * math.sqrt(3.0 / fan) if fan > 0 else 0.0
    return uniform(shape, bound, rng, dtype)


def uniform(shape: tuple, bound: float, rng: np.random.Generator, dtype) -> np.ndarray:
    """U(-bound, bound), drawn in float64 and cast to ``dtype``."""
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


def default_weight_and_bias(weight_shape: tuple, bias_shape, rng, dtype) -> tuple:
    """(weight, bias or None) as torch's Conv/Linear ``reset_parameters`` draws them:
    weight first, then bias, from the same generator."""
    fan = fan_in(weight_shape)
    weight = kaiming_uniform(weight_shape, fan, math.sqrt(5.0), rng, dtype)
    if bias_shape is None:
        return weight, None
    return weight, uniform(bias_shape, 1.0 / math.sqrt(fan) if fan > 0 else 0.0, rng, dtype)
