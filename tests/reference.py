"""An independent, obviously correct NumPy convolution used as the oracle in tests.

It shares no code with numbaconv: its own argument handling (normalised arguments only),
np.pad for padding, strided slicing per kernel tap and float64 accumulation.
"""

import numpy as np

NUMPY_PAD_MODE = {"zeros": "constant", "reflect": "reflect", "replicate": "edge",
                  "circular": "wrap"}


def same_padding(kernel, dilation):
    """'same' padding per dimension: total d*(k-1), the odd extra at the end."""
    return tuple((d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2)
                 for k, d in zip(kernel, dilation))


def conv2d(x, w, b=None, stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1), groups=1,
           padding_mode="zeros"):
    """Batched NCHW cross-correlation in float64. ``padding`` is ((top, bottom), (left, right))."""
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    n, c, _, _ = x.shape
    k, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0)) + tuple(padding), mode=NUMPY_PAD_MODE[padding_mode])
    sh, sw = stride
    dh, dw = dilation
    oh = (xp.shape[2] - dh * (kh - 1) - 1) // sh + 1
    ow = (xp.shape[3] - dw * (kw - 1) - 1) // sw + 1
    kg = k // groups
    out = np.zeros((n, k, oh, ow))
    for r in range(kh):
        for s in range(kw):
            patch = xp[:, :, r * dh:r * dh + sh * (oh - 1) + 1:sh, s * dw:s * dw + sw * (ow - 1) + 1:sw]
            for g in range(groups):
                out[:, g * kg:(g + 1) * kg] += np.einsum(
                    "ncij,kc->nkij", patch[:, g * cg:(g + 1) * cg], w[g * kg:(g + 1) * kg, :, r, s]
                )
    if b is not None:
        out += np.asarray(b, dtype=np.float64)[None, :, None, None]
    if c == 0:  # torch returns no output channels for an input without channels
        out = out[:, :0]
    return out


def conv1d(x, w, b=None, stride=1, padding=(0, 0), dilation=1, groups=1, padding_mode="zeros"):
    """Batched NCL cross-correlation in float64, through :func:`conv2d` with H = 1."""
    out = conv2d(np.asarray(x)[:, :, None, :], np.asarray(w)[:, :, None, :], b, (1, stride),
                 ((0, 0), tuple(padding)), (1, dilation), groups, padding_mode)
    return out[:, :, 0, :]


def conv_transpose2d(x, w, b=None, stride=(1, 1), padding=(0, 0), output_padding=(0, 0),
                     dilation=(1, 1), groups=1):
    """Batched transposed convolution in float64 by its definition: every input pixel
    scatters weight * value into the output (no convolution involved)."""
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    n, c, h, wd = x.shape
    _, kg, kh, kw = w.shape
    cg = c // groups
    (sh, sw), (ph, pw), (oph, opw), (dh, dw) = stride, padding, output_padding, dilation
    oh = (h - 1) * sh - 2 * ph + dh * (kh - 1) + oph + 1
    ow = (wd - 1) * sw - 2 * pw + dw * (kw - 1) + opw + 1
    # scatter into an output with room for the cropped padding on both sides
    full = np.zeros((n, kg * groups, (h - 1) * sh + dh * (kh - 1) + 1 + oph,
                     (wd - 1) * sw + dw * (kw - 1) + 1 + opw))
    for g in range(groups):
        xs = x[:, g * cg:(g + 1) * cg]
        for r in range(kh):
            for s in range(kw):
                contribution = np.einsum("nchw,ck->nkhw", xs, w[g * cg:(g + 1) * cg, :, r, s])
                full[:, g * kg:(g + 1) * kg, r * dh:r * dh + (h - 1) * sh + 1:sh,
                     s * dw:s * dw + (wd - 1) * sw + 1:sw] += contribution
    out = full[:, :, ph:ph + oh, pw:pw + ow]
    if out.shape[2:] != (oh, ow):  # output_padding beyond the scattered area is zeros
        padded = np.zeros((n, kg * groups, oh, ow))
        padded[:, :, :out.shape[2], :out.shape[3]] = out
        out = padded
    if b is not None:
        out = out + np.asarray(b, dtype=np.float64)[None, :, None, None]
    return out


def _pool_size(size, k, s, p, d, ceil_mode):
    eff = d * (k - 1) + 1
    if ceil_mode:
        out = -(-(size + 2 * p - eff) // s) + 1
        if (out - 1) * s >= size + p:  # the last window must start inside input or left pad
            out -= 1
    else:
        out = (size + 2 * p - eff) // s + 1
    return out


def max_pool2d(x, kernel, stride, padding, dilation, ceil_mode):
    """(values, flat indices) of batched NCHW max pooling, window by window; NaN wins."""
    x = np.asarray(x)
    n, c, h, w = x.shape
    oh = _pool_size(h, kernel[0], stride[0], padding[0], dilation[0], ceil_mode)
    ow = _pool_size(w, kernel[1], stride[1], padding[1], dilation[1], ceil_mode)
    values = np.empty((n, c, oh, ow), x.dtype)
    indices = np.empty((n, c, oh, ow), np.int64)
    for oy in range(oh):
        for ox in range(ow):
            rows = [oy * stride[0] - padding[0] + r * dilation[0] for r in range(kernel[0])]
            cols = [ox * stride[1] - padding[1] + q * dilation[1] for q in range(kernel[1])]
            flat = [y * w + z for y in rows if 0 <= y < h for z in cols if 0 <= z < w]
            window = x.reshape(n, c, h * w)[:, :, flat]  # inside the input only
            for i in range(n):
                for j in range(c):
                    v = window[i, j]
                    nan = np.flatnonzero(np.isnan(v))
                    # the last NaN, else the first maximum (the first position if all -inf)
                    pick = nan[-1] if nan.size else int(np.argmax(v))
                    values[i, j, oy, ox] = v[pick]
                    indices[i, j, oy, ox] = flat[pick]
    return values, indices


def avg_pool2d(x, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override=None):
    """Batched NCHW average pooling in float64, window by window."""
    x = np.asarray(x, dtype=np.float64)
    n, c, h, w = x.shape
    oh = _pool_size(h, kernel[0], stride[0], padding[0], 1, ceil_mode)
    ow = _pool_size(w, kernel[1], stride[1], padding[1], 1, ceil_mode)
    out = np.zeros((n, c, oh, ow))
    for oy in range(oh):
        for ox in range(ow):
            y0, x0 = oy * stride[0] - padding[0], ox * stride[1] - padding[1]
            # the window, clipped to the padded input (windows of ceil_mode may hang over)
            y1, x1 = min(y0 + kernel[0], h + padding[0]), min(x0 + kernel[1], w + padding[1])
            inside = x[:, :, max(y0, 0):min(y1, h), max(x0, 0):min(x1, w)]
            if inside.size == 0:
                continue
            if divisor_override:
                count = divisor_override
            elif count_include_pad:
                count = (y1 - y0) * (x1 - x0)
            else:
                count = inside.shape[2] * inside.shape[3]
            out[:, :, oy, ox] = inside.sum(axis=(2, 3)) / count
    return out
