"""Optimiser updates on the CPU: each parameter's whole update in one pass over memory.

torch's single-tensor rules, step by step in the parameter's dtype (each intermediate
rounded as torch rounds it); NumPy ran them as five to nine passes, with temporaries
(a ResNet-18's 11 M parameters: SGD with momentum 20-30 ms a step, torch's 4-8).
Arrays are flat and of one dtype; scalars arrive in that dtype, computed in Python's
floats first as torch computes them (1 - beta1 rounded once, not 1 - rounded beta1).
"""

import numpy as np

from .dispatch import parallel_kernel

#: Values per job: enough to amortise a job's start, few enough to share among threads.
CHUNK = 1 << 15


@parallel_kernel
def sgd_update(param, grad, buf, lr, momentum, keep, weight_decay, nesterov, maximize, first,
               worker, workers):
    """torch.optim.SGD's step for one parameter: g = +-grad + weight_decay * param; with
    momentum, buf = g (``first``) or momentum * buf + keep * g (keep = 1 - dampening),
    and g = buf (or g + momentum * buf, ``nesterov``); param -= lr * g. ``buf`` is unused
    without momentum (pass any array of the dtype)."""
    size = param.shape[0]
    for chunk in range(worker, -(-size // CHUNK), workers):
        lo = chunk * CHUNK
        hi = min(size, lo + CHUNK)
        for i in range(lo, hi):
            g = -grad[i] if maximize else grad[i]
            if weight_decay != 0:
                g = g + weight_decay * param[i]
            if momentum != 0:
                b = g if first else buf[i] * momentum + keep * g
                buf[i] = b
                g = g + momentum * b if nesterov else b
            param[i] = param[i] - lr * g
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
    for chunk in range(worker, -(-size // CHUNK), workers):
        lo = chunk * CHUNK
        hi = min(size, lo + CHUNK)
        for i in range(lo, hi):
            g = -grad[i] if maximize else grad[i]
            p = param[i] * shrink
            if weight_decay != 0:
                g = g + weight_decay * p
            m = exp_avg[i]
            m = m + towards * (g - m)
            exp_avg[i] = m
            v = exp_avg_sq[i] * beta2 + fresh * g * g
            exp_avg_sq[i] = v
            if amsgrad:
                largest = max_exp_avg_sq[i]
                if v != v or v > largest:  # (NaN propagates, as in torch.maximum)
                    largest = v
                max_exp_avg_sq[i] = largest
                v = largest
            denominator = np.sqrt(v) / bias_correction2_sqrt + eps
            param[i] = p - step_size * (m / denominator)
    return 0
