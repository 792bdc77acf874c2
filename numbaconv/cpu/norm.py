"""Normalisation kernels on the CPU: per-channel statistics, one-pass affine maps and batch
normalisation's gradients.

Statistics accumulate in float64 whatever the data's dtype, two passes over the values
(the mean, then the squared deviations from it: exact where the one-pass sum of squares
cancels catastrophically for data far from zero). Every output is written in one pass.
"""

import numpy as np
from numba import njit

from .dispatch import parallel_kernel, share


@parallel_kernel
def channel_affine(x3, scale, shift, relu, out3, worker, workers):
    """out3[n, c, p] = x3[n, c, p] * scale[c] + shift[c]: eval-mode batch norm, one (n, c)
    plane per job; with ``relu``, max(that, 0) in the same pass (NaN kept, as torch's
    relu; DenseNet's BatchNorm, ReLU). x3, out3 (N, C, P); scale, shift (C,) in the
    data's dtype."""
    n_batch, channels, positions = x3.shape
    my_first, my_stop = share(worker, workers, n_batch * channels)
    for plane in range(my_first, my_stop):
        n, c = plane // channels, plane % channels
        src, dst = x3[n, c], out3[n, c]
        a, b = scale[c], shift[c]
        if relu:
            for p in range(positions):
                v = src[p] * a + b
                dst[p] = 0.0 if v < 0.0 else v
        else:
            for p in range(positions):
                dst[p] = src[p] * a + b
    return 0


@njit(inline="always")
def _channel_mean(x3, c):
    """The mean of x3[:, c, :] (float64)."""
    n_batch, _, positions = x3.shape
    total = 0.0
    for n in range(n_batch):
        src = x3[n, c]
        for p in range(positions):
            total += src[p]
    return total / (n_batch * positions)


@njit(inline="always")
def _channel_moments(x3, c):
    """(mean, biased variance) of x3[:, c, :] (float64): the mean, then the squared
    deviations from it."""
    n_batch, _, positions = x3.shape
    m = _channel_mean(x3, c)
    squares = 0.0
    for n in range(n_batch):
        src = x3[n, c]
        for p in range(positions):
            d = src[p] - m
            squares += d * d
    return m, squares / (n_batch * positions)


@parallel_kernel
def channel_moments(x3, mean, var, worker, workers):
    """mean[c], var[c] (float64): the mean and the biased variance of x3[:, c, :] over N
    and P, one channel per job."""
    my_first, my_stop = share(worker, workers, x3.shape[1])
    for c in range(my_first, my_stop):
        mean[c], var[c] = _channel_moments(x3, c)
    return 0


@parallel_kernel
def channel_normalize(x3, weight, bias, has_weight, has_bias, eps, out3, mean, var, worker,
                      workers):
    """Training-mode batch norm in one launch: for each channel c of this share, mean[c]
    and var[c] (float64, as :func:`channel_moments`), then out3[:, c] = x3[:, c] * a + s
    with a = 1 / sqrt(var + eps) (times weight[c] where ``has_weight``) and s = -mean * a
    (plus bias[c] where ``has_bias``), both cast to the data's dtype, as
    ``normalization.batch_norm_scale_and_shift`` computes them in NumPy for
    :func:`channel_affine`. A channel's values are read again
    while they are still in cache (for a ResNet's batch of 8: 32 KiB a channel at most),
    and a layer makes one launch instead of two with NumPy's work between them."""
    n_batch, channels, positions = x3.shape
    my_first, my_stop = share(worker, workers, channels)
    for c in range(my_first, my_stop):
        m, v = _channel_moments(x3, c)
        mean[c] = m
        var[c] = v
        scale = 1.0 / np.sqrt(v + eps)
        if has_weight:
            scale = scale * weight[c]
        shift = -m * scale
        if has_bias:
            shift = shift + bias[c]
        a = x3.dtype.type(scale)
        b = x3.dtype.type(shift)
        for n in range(n_batch):
            src, dst = x3[n, c], out3[n, c]
            for p in range(positions):
                dst[p] = src[p] * a + b
    return 0


@parallel_kernel
def group_normalize(x3, groups, weight, bias, eps, out3, worker, workers):
    """Group (and layer) normalisation, one (n, group) per job: over each group's
    channels and positions, out = (x - mean) / sqrt(var + eps) * weight[c] + bias[c]
    (biased variance). x3, out3 (N, C, P); weight, bias (C,) in the data's dtype (ones
    and zeros for none). A layer norm over K values is N*rows groups of one "channel".
    """
    n_batch, channels, positions = x3.shape
    per_group = channels // groups
    count = per_group * positions
    my_first, my_stop = share(worker, workers, n_batch * groups)
    for job in range(my_first, my_stop):
        n, g = job // groups, job % groups
        total = 0.0
        for c in range(g * per_group, (g + 1) * per_group):
            src = x3[n, c]
            for p in range(positions):
                total += src[p]
        m = total / count
        squares = 0.0
        for c in range(g * per_group, (g + 1) * per_group):
            src = x3[n, c]
            for p in range(positions):
                d = src[p] - m
                squares += d * d
        rstd = 1.0 / np.sqrt(squares / count + eps)
        m_t = out3.dtype.type(m)
        for c in range(g * per_group, (g + 1) * per_group):
            src, dst = x3[n, c], out3[n, c]
            # (x - mean) first: x * a - mean * a would cancel when the variance is small.
            a_t, b_t = dst.dtype.type(rstd * weight[c]), dst.dtype.type(bias[c])
            for p in range(positions):
                dst[p] = (src[p] - m_t) * a_t + b_t
    return 0


@parallel_kernel
def row_normalize(x2, weight, bias, eps, out2, worker, workers):
    """Layer normalisation of each row of x2 (M, K): out = (x - mean) / sqrt(var + eps) *
    weight + bias, weight and bias (K,) element-wise (ones and zeros for none); rows
    worker, worker + workers, ..."""
    rows, size = x2.shape
    my_first, my_stop = share(worker, workers, rows)
    for r in range(my_first, my_stop):
        src, dst = x2[r], out2[r]
        total = 0.0
        for k in range(size):
            total += src[k]
        m = total / size
        squares = 0.0
        for k in range(size):
            d = src[k] - m
            squares += d * d
        rstd = 1.0 / np.sqrt(squares / size + eps)
        m_t, rstd_t = dst.dtype.type(m), dst.dtype.type(rstd)
        for k in range(size):
            dst[k] = (src[k] - m_t) * rstd_t * weight[k] + bias[k]
    return 0


@parallel_kernel
def channel_backward(x3, g3, mean_in, var_in, batch_stats, weight, eps, dx3, dweight, dbias,
                     worker, workers):
    """Batch normalisation's gradients, one channel per job: dbias[c] = sum g,
    dweight[c] = sum g * x_hat, and dx3 (the input's), for out = x_hat * weight + bias,
    x_hat = (x - mean) / sqrt(var + eps).

    ``batch_stats``: mean and (biased) var are x3's own over N and P, recomputed here
    (two passes, as :func:`channel_moments`), and dx carries their gradients too:
    dx = weight * rstd * (g - mean(g) - x_hat * mean(g * x_hat)). Otherwise they are
    ``mean_in[c]``, ``var_in[c]`` (the running statistics) and dx = weight * rstd * g.
    A channel's values are read three times in a row, from cache after the first: one
    pass over memory, where the NumPy form made eight. Sums in float64; x3, g3, dx3
    (N, C, P); weight (C,) float64; dweight, dbias (C,) float64.
    """
    n_batch, channels, positions = x3.shape
    count = n_batch * positions
    my_first, my_stop = share(worker, workers, channels)
    for c in range(my_first, my_stop):
        m = _channel_mean(x3, c) if batch_stats else mean_in[c]
        squares = 0.0
        g_total = 0.0
        gx_total = 0.0  # sum of g * (x - mean)
        for n in range(n_batch):
            src, grad = x3[n, c], g3[n, c]
            for p in range(positions):
                d = src[p] - m
                squares += d * d
                g_total += grad[p]
                gx_total += grad[p] * d
        var = squares / count if batch_stats else var_in[c]
        rstd = 1.0 / np.sqrt(var + eps)
        dbias[c] = g_total
        dweight[c] = gx_total * rstd
        # dx = a * g + b * (x - mean) + shift, coefficients in float64, applied in the
        # data's dtype ((x - mean) first, as in group_normalize)
        a = weight[c] * rstd
        b = -a * rstd * rstd * gx_total / count if batch_stats else 0.0
        shift = -a * g_total / count if batch_stats else 0.0
        a_t, b_t, shift_t = dx3.dtype.type(a), dx3.dtype.type(b), dx3.dtype.type(shift)
        m_t = dx3.dtype.type(m)
        for n in range(n_batch):
            src, grad, dst = x3[n, c], g3[n, c], dx3[n, c]
            for p in range(positions):
                dst[p] = grad[p] * a_t + (src[p] - m_t) * b_t + shift_t
    return 0
