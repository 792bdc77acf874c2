"""Optimiser updates on the CPU: each parameter's whole update in one pass over memory.

torch's single-tensor rules, step by step in the parameter's dtype (each intermediate
rounded as torch rounds it); NumPy ran them as five to nine passes, with temporaries
(a ResNet-18's 11 M parameters: SGD with momentum 20-30 ms a step, torch's 4-8).
Arrays are flat and of one dtype; scalars arrive in that dtype, computed in Python's
floats first as torch computes them (1 - beta1 rounded once, not 1 - rounded beta1).
"""

import numpy as np

from .dispatch import parallel_kernel, share

#: Values per job: enough to amortise a job's start, few enough to share among threads.
CHUNK = 1 << 15


@parallel_kernel
def sgd_update(param, grad, buf, lr, momentum, keep, weight_decay, nesterov, maximize, first,
               worker, workers):
    """torch.optim.SGD's step for one parameter: g = +-grad + weight_decay * param; with
    momentum, buf = g (``first``) or momentum * buf + keep * g (keep = 1 - dampening),
    and g = buf (or g + momentum * buf, ``nesterov``); param -= lr * g. ``buf`` is unused
    without momentum (pass any array of the dtype). The options are selects in one
    branch-free loop, which LLVM vectorises (with branches it ran scalar)."""
    size = param.shape[0]
    sign = param.dtype.type(-1 if maximize else 1)  # (exact: a sign flip)
    decay = weight_decay != 0
    my_first, my_stop = share(worker, workers, -(-size // CHUNK))
    for chunk in range(my_first, my_stop):
        lo = chunk * CHUNK
        hi = min(size, lo + CHUNK)
        # views indexed from 0: LLVM sees no negative index to wrap around
        pv, gv, bv = param[lo:hi], grad[lo:hi], buf[lo:hi]
        if momentum == 0:
            for i in range(hi - lo):
                p = pv[i]
                g = sign * gv[i]
                g = g + weight_decay * p if decay else g
                pv[i] = p - lr * g
        else:
            for i in range(hi - lo):
                p = pv[i]
                g = sign * gv[i]
                g = g + weight_decay * p if decay else g
                b = g if first else bv[i] * momentum + keep * g
                bv[i] = b
                step = g + momentum * b if nesterov else b
                pv[i] = p - lr * step
    return 0


@parallel_kernel
def adam_update(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, towards, beta2, fresh, eps,
                weight_decay, shrink, amsgrad, maximize, step_size, bias_correction2_sqrt,
                worker, workers):
    """torch.optim.Adam's and AdamW's step for one parameter: the parameter times
    ``shrink`` (AdamW's decoupled decay, 1 - lr * weight_decay; 1 for Adam), the gradient
    plus ``weight_decay`` times the parameter (Adam's; 0 for AdamW), the moments (exp_avg
    by torch's lerp towards the gradient by ``towards`` = 1 - beta1; exp_avg_sq times
    beta2 plus ``fresh`` = 1 - beta2 times the squared gradient), amsgrad's running
    maximum, then param -= step_size * exp_avg / (sqrt(second moment) /
    bias_correction2_sqrt + eps), with step_size = lr / (1 - beta1^t) and
    bias_correction2_sqrt = sqrt(1 - beta2^t). ``max_exp_avg_sq`` is unused without
    amsgrad."""
    size = param.shape[0]
    sign = param.dtype.type(-1 if maximize else 1)
    decay = weight_decay != 0
    my_first, my_stop = share(worker, workers, -(-size // CHUNK))
    for chunk in range(my_first, my_stop):
        lo = chunk * CHUNK
        hi = min(size, lo + CHUNK)
        pv, gv, mv, vv = param[lo:hi], grad[lo:hi], exp_avg[lo:hi], exp_avg_sq[lo:hi]
        largest_v = max_exp_avg_sq[lo:hi] if amsgrad else vv
        for i in range(hi - lo):
            p = pv[i] * shrink
            g = sign * gv[i]
            g = g + weight_decay * p if decay else g
            m = mv[i]
            m = m + towards * (g - m)
            mv[i] = m
            v = vv[i] * beta2 + fresh * g * g
            vv[i] = v
            if amsgrad:
                largest = largest_v[i]
                # (NaN propagates, as in torch.maximum)
                largest = v if (v != v) | (v > largest) else largest
                largest_v[i] = largest
                v = largest
            denominator = np.sqrt(v) / bias_correction2_sqrt + eps
            pv[i] = p - step_size * (m / denominator)
    return 0
