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
