"""Run the same arguments through torch, the way a torch user would (test oracle only)."""

import numpy as np


def torch_conv(torch, op, x, w, b, stride, padding, dilation, groups, padding_mode):
    """torch's result for numbaconv's call, or the exception torch raised.

    Arrays are promoted to a common dtype first (numbaconv follows NumPy promotion where
    torch would refuse a mix). ``padding_mode='zeros'`` goes through the functional API;
    the other modes through ``torch.nn.Conv1d/Conv2d`` as their users meet them.
    """
    F = torch.nn.functional
    arrays = [np.asarray(a) for a in (x, w) + (() if b is None else (b,))]
    dtype = np.result_type(*arrays)
    tx, tw, *tb = [torch.from_numpy(np.array(a, dtype=dtype)) for a in arrays]
    tb = tb[0] if tb else None
    try:
        if padding_mode == "zeros":
            fn = F.conv1d if op == "conv1d" else F.conv2d
            out = fn(tx, tw, tb, stride, padding, dilation, groups)
        else:
            cls = torch.nn.Conv1d if op == "conv1d" else torch.nn.Conv2d
            # The module validates its arguments; its forward with our weight and bias
            # (F.pad in the mode, then the functional conv) checks their shapes as well.
            module = cls(tw.shape[1] * groups, tw.shape[0], tuple(tw.shape[2:]), stride=stride,
                         padding=padding, dilation=dilation, groups=groups,
                         bias=tb is not None, padding_mode=padding_mode, dtype=tx.dtype)
            with torch.no_grad():
                out = module._conv_forward(tx, tw, tb)
        return out.detach().numpy()
    except Exception as exc:  # torch reports bad arguments as RuntimeError, ValueError, ...
        return exc
