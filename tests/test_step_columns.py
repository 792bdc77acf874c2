"""The im2col matrices a training step's forward pass keeps for its weight gradients
(``numbaconv.cpu.step_columns``): taken, not recomputed; the same gradients as without
them and as torch's; nothing kept past the step; never matched to other memory."""

import numpy as np
import pytest

import numbaconv
from numbaconv import config, nn

pytest.importorskip("numba")
pytest.importorskip("autograd")
from numbaconv.cpu import step_columns  # noqa: E402


def _model():
    """Two 3x3 layers that GEMM runs over their whole im2col matrix (small planes), whose
    weight gradients are matrix products (64 output channels) and dot products (48)."""
    rng = np.random.default_rng(0)
    model = nn.Sequential(nn.Conv2d(16, 64, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(64, 48, 3, padding=1), nn.Flatten(), nn.Linear(48 * 16, 3))
    for p in model.parameters():
        p[...] = rng.standard_normal(p.shape).astype(p.dtype) * 0.1
    return model


def test_the_layers_run_im2col_whole_in_a_training_step():
    for c, k, weight_kernel in ((16, 64, "weight_products"), (64, 48, "weight_dots")):
        with config.fresh_weights():
            plan = numbaconv.plan(np.empty((4, c, 4, 4), np.float32),
                                  np.empty((k, c, 3, 3), np.float32), padding=1)
        assert plan.kernel == "im2col_whole"
        assert nn.grad.plan_weight((4, c, 4, 4), (k, c, 3, 3), padding=1)["kernel"] \
            == weight_kernel


def test_weight_gradients_take_the_forward_matrices(monkeypatch, rng):
    x = rng.standard_normal((4, 16, 4, 4)).astype(np.float32)
    y = np.array([0, 2, 1, 2])
    step = nn.value_and_grad(_model().train(), nn.CrossEntropyLoss())
    taken = []
    take = step_columns.take

    def counting(x, spec, kind="im2col"):
        found = take(x, spec, kind)
        if kind == "im2col":
            taken.append(found is not None)
        return found

    kept = []
    columns_for = step_columns.columns_for

    def keeping(x, spec, shape, kind="im2col"):
        found = columns_for(x, spec, shape, kind)
        kept.append(found is not None)
        return found

    monkeypatch.setattr(step_columns, "take", counting)
    monkeypatch.setattr(step_columns, "columns_for", keeping)
    loss, grads = step(x, y)
    # the first layer's matrix, taken by its weight gradient; the second's dot products
    # read the padded input in place: no matrix kept for them
    assert kept == [True] and taken == [True]
    assert step_columns._state.entries is None  # nothing kept past the step
    monkeypatch.setattr(step_columns, "MAX_BYTES", 0)  # nothing kept: unfolded again
    taken.clear()
    loss_again, grads_again = step(x, y)
    assert taken == [False]
    assert loss == loss_again
    for name in grads:  # the same algorithm either way: the same bits
        np.testing.assert_array_equal(grads[name], grads_again[name], err_msg=name)


def test_kept_gradients_match_torch(rng):
    torch = pytest.importorskip("torch")
    ours = _model().train()
    theirs = torch.nn.Sequential(torch.nn.Conv2d(16, 64, 3, padding=1), torch.nn.ReLU(),
                                 torch.nn.Conv2d(64, 48, 3, padding=1), torch.nn.Flatten(),
                                 torch.nn.Linear(48 * 16, 3))
    theirs.load_state_dict({k: torch.from_numpy(np.array(v))
                            for k, v in ours.state_dict().items()})
    x = rng.standard_normal((4, 16, 4, 4)).astype(np.float32)
    y = np.array([1, 0, 2, 2])
    _, grads = nn.value_and_grad(ours, nn.CrossEntropyLoss())(x, y)
    torch.nn.CrossEntropyLoss()(theirs(torch.from_numpy(x)), torch.from_numpy(y)).backward()
    for name, p in theirs.named_parameters():
        scale = float(np.abs(p.grad.numpy()).max())
        np.testing.assert_allclose(grads[name], p.grad.numpy(), atol=1e-5 * max(scale, 1e-3))


def test_a_matrix_is_found_only_for_its_own_input_and_layer(rng):
    x = rng.standard_normal((4, 16, 4, 4)).astype(np.float32)
    spec = numbaconv.plan(x, np.empty((24, 16, 3, 3), np.float32), padding=1).spec
    other = numbaconv.plan(x, np.empty((24, 16, 3, 3), np.float32), padding=2).spec
    assert step_columns.columns_for(x, spec, (1, 144, 64)) is None  # outside a block
    with step_columns.kept():
        columns = step_columns.columns_for(x, spec, (1, 144, 64))
        assert columns.shape == (1, 144, 64)
        assert step_columns.take(x.copy(), spec) is None  # equal values, other memory
        assert step_columns.take(x[:, :, :, ::-1], spec) is None  # same memory, other view
        assert step_columns.take(x, other) is None  # another padding
        assert step_columns.take(x, spec) is columns
        assert step_columns.take(x, spec) is None  # taken once
        with step_columns.kept():  # an inner block leaves the outer's entries alone
            step_columns.columns_for(x, spec, (1, 144, 64))
        assert step_columns.take(x, spec) is not None
    assert step_columns._state.entries is None


def test_the_budget_bounds_what_is_kept(monkeypatch, rng):
    x = rng.standard_normal((4, 16, 4, 4)).astype(np.float32)
    spec = numbaconv.plan(x, np.empty((24, 16, 3, 3), np.float32), padding=1).spec
    monkeypatch.setattr(step_columns, "BUDGET_BYTES", 144 * 64 * 4 + 1)
    with step_columns.kept():
        assert step_columns.columns_for(x, spec, (1, 144, 64)) is not None
        y = x + 1  # another input: over the budget
        assert step_columns.columns_for(y, spec, (1, 144, 64)) is None
        assert step_columns.take(x, spec) is not None  # taken: its bytes come back
        assert step_columns.columns_for(y, spec, (1, 144, 64)) is not None


def test_winograd_weight_gradients_take_the_forward_tiles(monkeypatch, rng):
    """A 3x3 layer that runs Winograd F(4x4) forward and weight_winograd backward: the
    forward pass writes its transformed input tiles out for the weight gradient, which
    takes them instead of transforming again; the same gradients as without; the
    backward pass's convolutions (input gradients) keep nothing."""
    from numbaconv import registry

    model = nn.Sequential(nn.Conv2d(48, 48, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(48, 48, 3, padding=1), nn.Flatten(),
                          nn.Linear(48 * 64, 3))
    for p in model.parameters():
        p[...] = rng.standard_normal(p.shape).astype(p.dtype) * 0.1
    x = rng.standard_normal((8, 48, 8, 8)).astype(np.float32)
    with config.fresh_weights():
        for c, k in ((48, 48), (48, 48)):
            plan = numbaconv.plan(np.empty((8, c, 8, 8), np.float32),
                                  np.empty((k, c, 3, 3), np.float32), padding=1)
            assert plan.algorithm == "winograd_f4x4"
            assert registry.winograd_weight_grad_takes_tiles(plan.spec)
    kinds, taken = [], []
    columns_for, take = step_columns.columns_for, step_columns.take

    def keeping(x, spec, shape, kind="im2col"):
        found = columns_for(x, spec, shape, kind)
        kinds.append((kind, found is not None))
        return found

    def counting(x, spec, kind="im2col"):
        found = take(x, spec, kind)
        taken.append((kind, found is not None))
        return found

    monkeypatch.setattr(step_columns, "columns_for", keeping)
    monkeypatch.setattr(step_columns, "take", counting)
    step = nn.value_and_grad(model.train(), nn.CrossEntropyLoss())
    y = np.arange(8) % 3
    loss, grads = step(x, y)
    # the first layer's tiles (its input gradient is never needed) and the second's;
    # the second's input gradient runs Winograd in the backward pass, which keeps nothing
    # and so does not even ask (step_columns.keeping)
    assert kinds == [("winograd", True), ("winograd", True)]
    assert taken == [("winograd", True), ("winograd", True)]
    monkeypatch.setattr(step_columns, "MAX_BYTES", 0)
    loss_again, grads_again = step(x, y)
    assert loss == loss_again
    for name in grads:
        np.testing.assert_allclose(grads[name], grads_again[name], rtol=1e-5,
                                   atol=1e-6 * float(np.abs(grads[name]).max()), err_msg=name)


@pytest.mark.parametrize("channels, stride", [(1, 1), (3, 2)])
def test_weight_gradients_take_the_forward_padded_input(channels, stride, monkeypatch, rng):
    """A padded layer that runs direct's register tiles forward (on a padded, phase-split
    copy of its input) and reads the same copy for its weight gradient (LeNet's first
    layer; a ResNet stem at stride 2): kept and taken, the same gradients as without."""
    from numbaconv import registry

    model = nn.Sequential(nn.Conv2d(channels, 8, 5, stride=stride, padding=2), nn.ReLU(),
                          nn.Flatten(), nn.Linear(8 * (16 // stride) ** 2, 3))
    for p in model.parameters():
        p[...] = rng.standard_normal(p.shape).astype(p.dtype) * 0.1
    x = rng.standard_normal((16, channels, 16, 16)).astype(np.float32)
    with config.fresh_weights():
        plan = numbaconv.plan(x, np.empty((8, channels, 5, 5), np.float32), stride=stride,
                              padding=2)
    assert plan.kernel == "tiled" and registry.weight_grad_reads_phase_split(plan.spec)
    taken = []
    take = step_columns.take

    def counting(x, spec, kind="im2col"):
        found = take(x, spec, kind)
        taken.append((kind, found is not None))
        return found

    monkeypatch.setattr(step_columns, "take", counting)
    step = nn.value_and_grad(model.train(), nn.CrossEntropyLoss())
    y = np.arange(16) % 3
    loss, grads = step(x, y)
    assert taken == [("phase_split", True)]
    monkeypatch.setattr(step_columns, "MAX_BYTES", 0)
    loss_again, grads_again = step(x, y)
    assert loss == loss_again
    for name in grads:
        np.testing.assert_array_equal(grads[name], grads_again[name], err_msg=name)


def test_dilated_winograd_layers_keep_no_tiles(monkeypatch, rng):
    """A dilated 3x3 layer runs Winograd on its dilation phases (another spec, another
    array): its weight gradient transforms nothing again, so nothing is kept for it."""
    model = nn.Sequential(nn.Conv2d(48, 48, 3, padding=2, dilation=2), nn.Flatten(),
                          nn.Linear(48 * 256, 3))
    for p in model.parameters():
        p[...] = rng.standard_normal(p.shape).astype(p.dtype) * 0.1
    x = rng.standard_normal((8, 48, 16, 16)).astype(np.float32)
    with config.fresh_weights():
        assert numbaconv.plan(x, np.empty((48, 48, 3, 3), np.float32), padding=2,
                              dilation=2).algorithm == "winograd_f4x4"
    kept = []
    columns_for = step_columns.columns_for

    def keeping(x, spec, shape, kind="im2col"):
        found = columns_for(x, spec, shape, kind)
        kept.append(kind)
        return found

    monkeypatch.setattr(step_columns, "columns_for", keeping)
    nn.value_and_grad(model.train(), nn.CrossEntropyLoss())(x, np.arange(8) % 3)
    assert "winograd" not in kept
