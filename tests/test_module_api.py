"""torch.nn.Module's everyday API on numbaconv.nn.Module, against torch: buffers, apply,
dtype casts, lookups by dotted path, and Sequential's list methods."""

import numpy as np

import numbaconv
import pytest

from numbaconv import nn


def stateful(lib, array):
    """The same module in torch and numbaconv: a parameterised child, persistent float and
    integer buffers, a non-persistent one, and a nested child with a buffer of its own."""

    class Counter(lib.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("seen", array(np.zeros(2, np.float32)))

    class Stateful(lib.Module):
        def __init__(self):
            super().__init__()
            self.fc = lib.Linear(3, 2)
            self.register_buffer("running_mean", array(np.zeros(3, np.float32)))
            self.register_buffer("num_batches_tracked", array(np.array(0, np.int64)))
            self.register_buffer("scratch", array(np.ones(4, np.float32)), persistent=False)
            self.register_buffer("absent", None)
            self.inner = lib.Sequential(Counter(), lib.ReLU())

    return Stateful()


def test_buffers_and_state_dict_keys_match_torch(torch):
    ours = stateful(nn, lambda a: a)
    theirs = stateful(torch.nn, torch.from_numpy)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert [n for n, _ in ours.named_buffers()] == [n for n, _ in theirs.named_buffers()]
    assert len(list(ours.buffers())) == len(list(theirs.buffers())) == 4
    assert ours.num_batches_tracked.dtype == np.int64
    assert ours.get_buffer("inner.0.seen") is ours.inner[0].seen


def test_state_dict_with_integer_buffers_loads_strictly(torch):
    ours = stateful(nn, lambda a: a)
    theirs = stateful(torch.nn, torch.from_numpy)
    theirs.running_mean += 1.5
    theirs.num_batches_tracked += 7
    result = ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    assert result == ([], [])
    np.testing.assert_array_equal(ours.running_mean, np.full(3, 1.5, np.float32))
    assert ours.num_batches_tracked == 7 and ours.num_batches_tracked.dtype == np.int64
    np.testing.assert_array_equal(ours.scratch, np.ones(4))  # non-persistent: untouched
    partial = {k: v.numpy() for k, v in theirs.state_dict().items() if k != "running_mean"}
    with pytest.raises(ValueError, match='Missing key.*"running_mean"'):
        ours.load_state_dict(partial)
    assert ours.load_state_dict(partial, strict=False).missing_keys == ["running_mean"]


def test_buffer_assignment_and_deletion():
    m = nn.Module()
    m.register_buffer("count", np.array(0, np.int64))
    m.count = np.array(5, np.int64)
    assert dict(m.state_dict())["count"] == 5
    m.count = None
    assert list(m.state_dict()) == []
    with pytest.raises(TypeError, match="buffer 'count'"):
        m.count = 3
    del m.count
    assert list(m.named_buffers()) == [] and not hasattr(m, "count")


@pytest.mark.parametrize("name, value, error, pattern", [
    ("a.b", np.zeros(1), KeyError, "t contain"),
    ("", np.zeros(1), KeyError, "empty string"),
    (3, np.zeros(1), TypeError, "should be a string"),
    ("weight", np.zeros(1), KeyError, "already exists"),
    ("data", [1.0], TypeError, "cannot assign 'list' object to buffer"),
])
def test_register_buffer_rejects_what_torch_rejects(torch, name, value, error, pattern):
    tvalue = torch.tensor(value) if isinstance(value, np.ndarray) else value
    with pytest.raises(error, match=pattern):
        torch.nn.Linear(2, 2).register_buffer(name, tvalue)
    with pytest.raises(error, match=pattern):
        nn.Linear(2, 2).register_buffer(name, value)


def test_apply_visits_modules_in_torchs_order(torch):
    def visits(lib):
        model = lib.Sequential(lib.Sequential(lib.Linear(2, 2), lib.ReLU()), lib.Linear(2, 1))
        seen = []
        assert model.apply(lambda m: seen.append(type(m).__name__)) is model
        return seen

    assert visits(nn) == visits(torch.nn)
    with pytest.raises(TypeError, match="callable"):
        nn.ReLU().apply(3)


def test_apply_for_custom_initialisation():
    def init_weights(m):
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu", generator=0)
            nn.init.zeros_(m.bias)

    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3)).apply(init_weights)
    for conv in (model[0], model[2]):
        assert not conv.bias.any()
        assert conv.weight.dtype == np.float32


@pytest.mark.parametrize("cast, dtype", [
    (lambda m, lib: m.double(), np.float64),
    (lambda m, lib: m.to(lib.float64), np.float64),
    (lambda m, lib: m.to(dtype=lib.float64), np.float64),
    (lambda m, lib: m.double().float(), np.float32),
    (lambda m, lib: m.to("cpu", lib.float64), np.float64),
])
def test_dtype_casts_follow_torch(torch, cast, dtype):
    ours = stateful(nn, lambda a: a)
    assert cast(ours, np) is ours
    for name, value in list(ours.named_parameters()) + list(ours.named_buffers()):
        expected = np.int64 if name == "num_batches_tracked" else dtype
        assert value.dtype == expected, name
    assert ours.fc.dtype == dtype  # what reset_parameters draws next
    ours.fc.reset_parameters(0)
    assert ours.fc.weight.dtype == dtype
    out = ours.fc(np.ones((2, 3), dtype))
    assert out.dtype == dtype
    theirs = cast(stateful(torch.nn, torch.from_numpy), torch)
    for name, value in list(theirs.named_parameters()) + list(theirs.named_buffers()):
        assert str(value.dtype) == "torch." + np.dtype(dict(ours.named_parameters(),
                                                           **dict(ours.named_buffers()))[name]
                                                      .dtype).name, name
    assert ours.to(dtype="float64").fc.weight.dtype == np.float64  # NumPy's names too


def test_to_rejects_what_it_cannot_do():
    model = nn.Linear(2, 2)
    assert model.to("cpu") is model and model.weight.dtype == np.float32
    with pytest.raises(TypeError, match="floating point"):
        model.to(np.int32)
    with pytest.raises(ValueError, match="device must be"):
        model.to("cuda:1")
    try:
        import numba.cuda as cuda
        gpu = cuda.is_available()
    except ImportError:
        gpu = False
    if not gpu:  # (moving to a GPU: tests_cuda/test_cuda_layers.py)
        with pytest.raises(numbaconv.CudaUnavailable):
            model.to("cuda")
        assert isinstance(model.weight, np.ndarray)
    with pytest.raises(TypeError, match="dtype"):
        model.to("float32", "float64")


def test_get_submodule_parameter_buffer_match_torch(torch):
    def build(lib):
        return lib.Sequential(lib.Sequential(lib.Linear(2, 3), lib.ReLU()), lib.Linear(3, 1))

    ours, theirs = build(nn), build(torch.nn)
    assert ours.get_submodule("") is ours
    assert ours.get_submodule("0.0") is ours[0][0]
    assert ours.get_parameter("0.0.weight") is ours[0][0].weight
    assert ours.get_parameter("1.bias") is ours[1].bias
    for target, getter, pattern in [("0.5", "get_submodule", "has no attribute `5`"),
                                    ("0.0.weight", "get_submodule", "is not an nn.Module"),
                                    ("1.nothing", "get_parameter", "has no attribute `nothing`"),
                                    ("1.in_features", "get_parameter", "is not an nn.Parameter"),
                                    ("1.weight", "get_buffer", "is not a buffer")]:
        with pytest.raises(AttributeError, match=pattern.split("`")[0]):
            getattr(theirs, getter)(target)
        with pytest.raises(AttributeError, match=pattern):
            getattr(ours, getter)(target)


def _names(model):
    return [(name, type(m).__name__) for name, m in model.named_children()]


@pytest.mark.parametrize("edit", [
    lambda lib, s: s.insert(1, lib.Tanh()),
    lambda lib, s: s.insert(-1, lib.Tanh()),
    lambda lib, s: s.insert(3, lib.Tanh()),
    lambda lib, s: s.extend([lib.Tanh(), lib.Sigmoid()]),
    lambda lib, s: s.append(lib.Tanh()),
    lambda lib, s: s.pop(0),
    lambda lib, s: s.pop(-1),
    lambda lib, s: s.__delitem__(1),
    lambda lib, s: s.__delitem__(slice(0, 2)),
    lambda lib, s: s.__setitem__(-1, lib.Tanh()),
])
def test_sequential_list_methods_match_torch(torch, edit):
    def build(lib):
        return lib.Sequential(lib.Linear(2, 2), lib.ReLU(), lib.Sigmoid())

    ours, theirs = build(nn), build(torch.nn)
    result_ours, result_theirs = edit(nn, ours), edit(torch.nn, theirs)
    assert _names(ours) == _names(theirs)
    assert type(result_ours).__name__ == type(result_theirs).__name__
    assert len(ours) == len(theirs)
    assert type(ours[-1]).__name__ == type(theirs[-1]).__name__


def test_sequential_index_errors_match_torch(torch):
    for lib in (nn, torch.nn):
        s = lib.Sequential(lib.ReLU(), lib.Tanh())
        with pytest.raises(IndexError, match="out of range"):
            s[2]
        with pytest.raises(IndexError, match="out of range"):
            s.insert(5, lib.ReLU())
    with pytest.raises(TypeError, match="not a Module"):
        nn.Sequential(nn.ReLU()).insert(0, "relu")
