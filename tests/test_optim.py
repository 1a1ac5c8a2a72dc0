"""Optimizers and learning-rate schedules: hand-computed updates, PyTorch's sequences, state round trips."""

import math

import numpy as np
import pytest

import minidl.optim
from minidl import Sequential
from minidl.layers import Dense, Parameter, SoftmaxCE
from minidl.lr_scheduler import CosineAnnealingLR, StepLR
from minidl.optim import SGD, Adam, AdamW

LR, EPS = 0.1, 1e-8


def param(*values: float) -> Parameter:
    return Parameter(np.array(values, dtype=np.float64))


def run(opt, p: Parameter, grads) -> None:
    for g in grads:
        p.grad[...] = g
        opt.step()


def adam_reference(theta: float, grads, lr=LR, b1=0.9, b2=0.999, eps=EPS, wd=0.0, decoupled=False, amsgrad=False):
    """Adam on one scalar, written out from the paper / torch.optim docs with Python floats."""
    m = v = vmax = 0.0
    for t, g in enumerate(grads, start=1):
        if decoupled:
            theta *= 1 - lr * wd
        else:
            g += wd * theta
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        vmax = max(vmax, v)
        vhat = (vmax if amsgrad else v) / (1 - b2**t)
        theta -= lr * (m / (1 - b1**t)) / (math.sqrt(vhat) + eps * 1.0)
    return theta


def test_adam_first_step_moves_every_weight_by_lr():
    # After one step m̂ = g and v̂ = g², so the update is lr·g/(|g| + ε).
    p = param(1.0, -2.0, 3.0)
    run(Adam([p], lr=LR), p, [np.array([0.5, -4.0, 1e-3])])
    g = np.array([0.5, -4.0, 1e-3])
    np.testing.assert_allclose(p.data, [1.0, -2.0, 3.0] - LR * g / (np.abs(g) + EPS), rtol=1e-15)


def test_adam_two_steps_by_hand():
    # t=2 with g1=1, g2=-0.5: m = 0.9·0.1·1 + 0.1·(-0.5) = 0.04, v = 0.999·0.001·1 + 0.001·0.25 = 0.001249,
    # m̂ = 0.04/0.19, v̂ = 0.001249/0.001999.
    p = param(0.0)
    run(Adam([p], lr=LR), p, [1.0, -0.5])
    after_first = -LR * 1.0 / (1.0 + EPS)
    expected = after_first - LR * (0.04 / 0.19) / (math.sqrt(0.001249 / 0.001999) + EPS)
    assert p.data[0] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    "cls, kwargs, ref",
    [
        (Adam, {}, {}),
        (Adam, {"weight_decay": 0.3}, {"wd": 0.3}),
        (Adam, {"amsgrad": True}, {"amsgrad": True}),
        (AdamW, {}, {"wd": 1e-2, "decoupled": True}),
        (AdamW, {"weight_decay": 0.3, "amsgrad": True, "betas": (0.5, 0.9)},
         {"wd": 0.3, "decoupled": True, "amsgrad": True, "b1": 0.5, "b2": 0.9}),
    ],
)
def test_adam_variants_match_the_scalar_reference(cls, kwargs, ref):
    # A shrinking gradient makes v fall, so amsgrad's running max differs from v.
    grads = [2.0, -1.0, 0.1, 0.05, 0.0, -0.3]
    p = param(1.5)
    run(cls([p], lr=LR, **kwargs), p, grads)
    assert p.data[0] == pytest.approx(adam_reference(1.5, grads, **ref), rel=1e-12)


def test_amsgrad_and_weight_decay_change_the_result():
    grads = [2.0, -1.0, 0.1, 0.05, 0.0, -0.3]
    assert adam_reference(1.5, grads, amsgrad=True) != pytest.approx(adam_reference(1.5, grads), rel=1e-6)
    assert adam_reference(1.5, grads, wd=0.3) != pytest.approx(
        adam_reference(1.5, grads, wd=0.3, decoupled=True), rel=1e-6
    )


def test_adamw_decays_before_the_adam_step():
    # θ1 = θ0(1 - lr·λ) - lr·g/(|g| + ε)
    p = param(2.0)
    run(AdamW([p], lr=LR, weight_decay=0.5), p, [3.0])
    assert p.data[0] == pytest.approx(2.0 * (1 - LR * 0.5) - LR * 3.0 / (3.0 + EPS), rel=1e-15)


def small_model(trainable_first: bool = False) -> Sequential:
    return Sequential([Dense(5, trainable=trainable_first), Dense(3), SoftmaxCE()],
                      input_shape=(4,), seed=0, dtype="float64")


@pytest.mark.parametrize(
    "make", [lambda ps: SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.1), lambda ps: Adam(ps, weight_decay=0.1),
             lambda ps: AdamW(ps, amsgrad=True)],
    ids=["SGD", "Adam", "AdamW"],
)
def test_frozen_parameters_are_untouched(make):
    model = small_model(trainable_first=False)
    frozen = model.layers[0].parameters()
    before = {k: v.copy() for k, v in model.state_dict().items()}
    opt = make(model.parameters())
    rng = np.random.default_rng(0)
    for _ in range(3):
        model.forward_backward(rng.standard_normal((8, 4)), rng.integers(0, 3, 8))
        for p in frozen:  # even a stale non-zero grad must not move a frozen weight
            p.grad[...] = 1.0
        opt.step()
    after = model.state_dict()
    for name in ("0.weight", "0.bias"):
        np.testing.assert_array_equal(after[name], before[name])
    assert not np.array_equal(after["1.weight"], before["1.weight"])
    if isinstance(opt, Adam):
        assert opt.state[0] == {} and opt.state[2]["step"] == 3


@pytest.mark.parametrize("cls", [SGD, Adam, AdamW])
def test_updates_are_in_place_and_keep_float32(cls):
    p = Parameter(np.ones((3, 2), dtype=np.float32))
    data = p.data
    kwargs = {"momentum": 0.9} if cls is SGD else {"amsgrad": True, "weight_decay": 0.1}
    run(cls([p], **kwargs), p, [np.full((3, 2), 0.5, np.float32)] * 3)
    assert p.data is data and p.data.dtype == np.float32
    assert np.all(p.data < 1)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda p: Adam(p, lr=-0.1), ValueError, r"Adam: lr .* got -0\.1"),
        (lambda p: Adam(p, lr="big"), TypeError, r"Adam: lr must be a number, got 'big'"),
        (lambda p: Adam(p, betas=(1.0, 0.999)), ValueError, r"Adam: betas\[0\] .* got 1\.0"),
        (lambda p: Adam(p, betas=(0.9, -0.5)), ValueError, r"Adam: betas\[1\] .* got -0\.5"),
        (lambda p: Adam(p, betas=0.9), ValueError, r"Adam: betas must be a pair .* got 0\.9"),
        (lambda p: Adam(p, eps=-1e-8), ValueError, r"Adam: eps .* got -1e-08"),
        (lambda p: AdamW(p, weight_decay=float("nan")), ValueError, r"AdamW: weight_decay .* got nan"),
        (lambda p: AdamW(p, amsgrad="yes"), TypeError, r"AdamW: amsgrad must be a bool, got 'yes'"),
        (lambda p: Adam([]), ValueError, r"Adam: got an empty parameter list"),
        (lambda p: StepLR(SGD(p), step_size=0), ValueError, r"StepLR: step_size must be >= 1, got 0"),
        (lambda p: StepLR(SGD(p), step_size=2, gamma=0.0), ValueError, r"StepLR: gamma .* got 0\.0"),
        (lambda p: CosineAnnealingLR(SGD(p), T_max=2.5), TypeError, r"CosineAnnealingLR: T_max must be an int, got 2\.5"),
        (lambda p: CosineAnnealingLR(SGD(p), T_max=3, eta_min=-1), ValueError, r"eta_min .* got -1"),
        (lambda p: StepLR("sgd", step_size=1), TypeError, r"StepLR: optimizer must be a minidl Optimizer, got 'sgd'"),
    ],
)
def test_argument_validation_quotes_the_value(call, error, match):
    with pytest.raises(error, match=match):
        call([param(1.0)])


def lrs(scheduler, epochs: int) -> list[float]:
    out = []
    for _ in range(epochs):
        scheduler.step()
        out.append(scheduler.get_last_lr()[0])
    return out


def test_step_lr_sequence():
    opt = SGD([param(1.0)], lr=1.0)
    sched = StepLR(opt, step_size=3, gamma=0.5)
    assert sched.get_last_lr() == [1.0]
    assert lrs(sched, 7) == pytest.approx([1, 1, 0.5, 0.5, 0.5, 0.25, 0.25])
    assert opt.lr == pytest.approx(0.25)


def test_cosine_sequence_including_past_t_max():
    opt = Adam([param(1.0)], lr=1.0)
    sched = CosineAnnealingLR(opt, T_max=4, eta_min=0.1)
    h = math.sqrt(2) / 2  # cos(π/4)
    # PyTorch's sequence: down to eta_min at T_max, then back up (period 2·T_max).
    expected = [0.1 + 0.45 * (1 + h), 0.55, 0.1 + 0.45 * (1 - h), 0.1, 0.1 + 0.45 * (1 - h), 0.55]
    assert lrs(sched, 6) == pytest.approx(expected, rel=1e-12)
    assert opt.lr == pytest.approx(0.55)


def test_schedules_in_fit_record_the_lr_of_each_epoch():
    model = small_model(trainable_first=True)
    rng = np.random.default_rng(1)
    X, y = rng.standard_normal((20, 4)), rng.integers(0, 3, 20)
    opt = SGD(model.parameters(), lr=0.1)
    history = model.fit(X, y, optimizer=opt, epochs=5, batch_size=8, verbose=0,
                        callbacks=[StepLR(opt, step_size=2, gamma=0.1)])
    assert history["lr"] == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001])
    assert opt.lr == pytest.approx(1e-3)  # stepped after the last epoch too


def test_schedule_for_another_optimizer_is_an_error_in_fit():
    model = small_model(trainable_first=True)
    other = SGD(small_model().parameters(), lr=0.1)
    with pytest.raises(ValueError, match="different optimizer"):
        model.fit(np.zeros((4, 4)), np.zeros(4, int), optimizer=SGD(model.parameters()), verbose=0,
                  callbacks=[CosineAnnealingLR(other, T_max=3)])


def test_schedules_are_also_importable_from_optim_as_the_readme_shows():
    import minidl.optim
    from minidl.optim import CosineAnnealingLR as Cosine

    assert Cosine is CosineAnnealingLR and minidl.optim.StepLR is StepLR
    with pytest.raises(AttributeError, match="has no attribute 'ExponentialLR'"):
        minidl.optim.ExponentialLR


def test_adam_state_dict_round_trip_through_npz(tmp_path):
    rng = np.random.default_rng(0)
    grads = [rng.standard_normal((2, 3)) for _ in range(6)]
    a = Parameter(np.ones((2, 3)))
    opt = Adam([a], lr=0.05, amsgrad=True)
    run(opt, a, grads[:3])
    np.savez(tmp_path / "opt.npz", **opt.state_dict())
    b = Parameter(a.data.copy())
    restored = Adam([b])  # different lr and amsgrad: the state brings both back
    with np.load(tmp_path / "opt.npz") as f:
        restored.load_state_dict(dict(f))
    assert restored.lr == 0.05 and restored.amsgrad is True and restored.state[0]["step"] == 3
    run(opt, a, grads[3:])
    run(restored, b, grads[3:])
    np.testing.assert_array_equal(a.data, b.data)


@pytest.mark.parametrize("make", [lambda ps: SGD(ps, lr=0.1, momentum=0.9, nesterov=True),
                                  lambda ps: AdamW(ps, lr=0.05, weight_decay=0.1)], ids=["SGD", "AdamW"])
def test_resuming_from_a_state_dict_continues_bit_for_bit(make):
    rng = np.random.default_rng(1)
    grads = [rng.standard_normal(4) for _ in range(5)]
    a = Parameter(np.ones(4))
    opt = make([a])
    run(opt, a, grads[:2])
    state = opt.state_dict()
    b = Parameter(a.data.copy())
    resumed = type(opt)([b], lr=1.0)
    resumed.load_state_dict(state)
    assert resumed.state_dict().keys() == state.keys()
    run(opt, a, grads[2:])
    run(resumed, b, grads[2:])
    np.testing.assert_array_equal(a.data, b.data)


def test_state_dict_is_a_copy_and_load_checks_shapes():
    p = param(1.0, 2.0)
    opt = Adam([p])
    run(opt, p, [np.array([1.0, 1.0])])
    state = opt.state_dict()
    state["0.exp_avg"][...] = 99.0
    assert opt.state[0]["exp_avg"][0] != 99.0
    state["0.exp_avg"] = np.zeros(3)
    with pytest.raises(ValueError, match=r"'0.exp_avg' has shape \(3,\), the parameter has \(2,\)"):
        opt.load_state_dict(state)
    with pytest.raises(ValueError, match=r"Adam.load_state_dict: unexpected key\(s\) \['5.exp_avg', 'junk'\]"):
        opt.load_state_dict({**opt.state_dict(), "5.exp_avg": np.zeros(2), "junk": 1})
    with pytest.raises(ValueError, match=r"Adam.load_state_dict: missing key\(s\) \['0.exp_avg_sq'\]"):
        opt.load_state_dict({k: v for k, v in opt.state_dict().items() if k != "0.exp_avg_sq"})
    with pytest.raises(ValueError, match=r"Adam.load_state_dict: missing key\(s\) \['eps'\]"):
        opt.load_state_dict({k: v for k, v in opt.state_dict().items() if k != "eps"})


def test_scheduler_state_dict_resumes_the_sequence():
    sched = CosineAnnealingLR(SGD([param(1.0)], lr=1.0), T_max=10)
    lrs(sched, 3)
    resumed = CosineAnnealingLR(SGD([param(1.0)], lr=0.5), T_max=2)
    resumed.load_state_dict(sched.state_dict())
    assert resumed.get_last_lr() == sched.get_last_lr()
    assert lrs(resumed, 4) == lrs(sched, 4)


def test_cross_check_against_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    configs = [
        (SGD, torch.optim.SGD, {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
        (Adam, torch.optim.Adam, {"lr": 0.01, "betas": (0.8, 0.99), "weight_decay": 0.1}),
        (Adam, torch.optim.Adam, {"lr": 0.01, "amsgrad": True}),
        (AdamW, torch.optim.AdamW, {"lr": 0.01, "weight_decay": 0.2, "amsgrad": True}),
    ]
    for ours, theirs, kwargs in configs:
        start = [rng.standard_normal((3, 4)), rng.standard_normal(4)]
        params = [Parameter(x.copy()) for x in start]
        tensors = [torch.tensor(x, requires_grad=True) for x in start]
        opt, topt = ours(params, **kwargs), theirs(tensors, **kwargs)
        sched, tsched = CosineAnnealingLR(opt, T_max=3), torch.optim.lr_scheduler.CosineAnnealingLR(topt, T_max=3)
        for _ in range(8):
            for p, t in zip(params, tensors):
                g = rng.standard_normal(p.shape)
                p.grad[...] = g
                t.grad = torch.tensor(g)
            opt.step()
            topt.step()
            sched.step()
            tsched.step()
        assert sched.get_last_lr() == pytest.approx(tsched.get_last_lr(), rel=1e-12, abs=1e-15)
        for p, t in zip(params, tensors):
            np.testing.assert_allclose(p.data, t.detach().numpy(), rtol=1e-10, atol=1e-12, err_msg=ours.__name__)
    topt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    tsched = torch.optim.lr_scheduler.StepLR(topt, step_size=2, gamma=0.3)
    sched = StepLR(SGD([param(0.0)], lr=1.0), step_size=2, gamma=0.3)
    their_lrs = []
    for _ in range(7):
        topt.step()
        tsched.step()
        their_lrs.append(tsched.get_last_lr()[0])
    assert lrs(sched, 7) == pytest.approx(their_lrs, rel=1e-12)


TORCH_CONFIGS = [
    ("SGD", {"lr": 0.05}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.01}),
    ("SGD", {"lr": 0.05, "momentum": 0.8, "nesterov": True}),
    ("Adam", {}),
    ("Adam", {"lr": 0.01, "betas": (0.8, 0.99), "weight_decay": 0.1, "amsgrad": True}),
    ("AdamW", {}),  # the class-level defaults: decoupled decay of 1e-2, as torch.optim.AdamW's
    ("AdamW", {"lr": 0.02, "weight_decay": 0.3, "amsgrad": True}),
]


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "unfused"])
@pytest.mark.parametrize(("name", "kwargs"), TORCH_CONFIGS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(TORCH_CONFIGS)])
def test_every_optimizer_equals_torch_in_float64_over_several_steps(name, kwargs, fused):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    start = [rng.standard_normal((3, 4)), rng.standard_normal(4), rng.standard_normal((2, 1, 3))]
    params = [Parameter(x.copy()) for x in start]
    tensors = [torch.tensor(x, requires_grad=True) for x in start]
    opt = getattr(minidl.optim, name)(params, fused=fused, **kwargs)
    topt = getattr(torch.optim, name)(tensors, **kwargs)
    for _ in range(6):
        for p, t in zip(params, tensors, strict=True):
            g = rng.standard_normal(p.shape)
            p.grad[...] = g
            t.grad = torch.tensor(g)
        opt.step()
        topt.step()
    for p, t in zip(params, tensors, strict=True):
        np.testing.assert_allclose(p.data, t.detach().numpy(), rtol=1e-12, atol=1e-12)


def test_adamw_is_adam_with_two_class_level_defaults():
    assert AdamW.__init__ is Adam.__init__ and AdamW.step is Adam.step
    assert AdamW([param(1.0)]).weight_decay == 1e-2 and Adam([param(1.0)]).weight_decay == 0.0
    rng = np.random.default_rng(3)
    grads = [rng.standard_normal(3) for _ in range(4)]
    a, b = param(1.0, -2.0, 0.5), param(1.0, -2.0, 0.5)
    run(AdamW([a], lr=0.1, weight_decay=0.2), a, grads)
    run(Adam([b], lr=0.1, weight_decay=0.2, decoupled_weight_decay=True), b, grads)
    np.testing.assert_array_equal(a.data, b.data)
    with pytest.raises(TypeError, match="Adam: decoupled_weight_decay must be a bool, got 'yes'"):
        Adam([param(1.0)], decoupled_weight_decay="yes")


def test_a_fused_optimizer_owns_one_flat_gradient_buffer_per_dtype():
    rng = np.random.default_rng(4)
    w32, b32 = Parameter(rng.standard_normal((3, 2)).astype(np.float32)), Parameter(np.ones(2, np.float32))
    w64, frozen = Parameter(rng.standard_normal(5)), Parameter(np.ones(4), trainable=False)
    params = [w32, w64, frozen, b32]
    for p in params:
        p.grad[...] = rng.standard_normal(p.shape)
    grads = [p.grad.copy() for p in params]
    own_frozen_grad = frozen.grad
    opt = SGD(params, lr=0.1, fused=True)
    flat32, flat64 = opt.flat_grads()
    assert (flat32.dtype, flat32.size, flat64.dtype, flat64.size) == (np.float32, 8, np.float64, 5)
    assert w32.grad.base is flat32 and b32.grad.base is flat32 and w64.grad.base is flat64
    assert frozen.grad is own_frozen_grad  # frozen when the optimizer was made: not gathered
    for p, g in zip(params, grads, strict=True):
        np.testing.assert_array_equal(p.grad, g)  # the values move into the buffer
    by_hand = sum(float(np.vdot(p.grad, p.grad)) for p in (w32, w64, b32))
    assert opt.grad_norm_squared() == pytest.approx(by_hand, rel=1e-6)
    frozen.trainable = True  # unfrozen since: read one by one, the new one included
    assert opt.flat_grads() is None
    assert opt.grad_norm_squared() == pytest.approx(by_hand + float(np.vdot(frozen.grad, frozen.grad)), rel=1e-6)
    frozen.trainable = False
    w64.grad = np.full(5, np.nan)  # a layer that binds a new array instead of writing into .grad
    assert opt.flat_grads() is None and math.isnan(opt.grad_norm_squared())
    unfused = SGD([Parameter(np.ones(2))], fused=False)
    assert unfused.flat_grads() is None and unfused.params[0].grad.base is None
    with pytest.raises(TypeError, match="SGD: fused must be a bool, got 1"):
        SGD([Parameter(np.ones(2))], fused=1)


def test_fit_trains_the_same_weights_fused_or_not():
    rng = np.random.default_rng(5)
    X, y = rng.random((24, 4)), np.arange(24) % 3

    def trained(fused):
        model = small_model(trainable_first=True)
        model.fit(X, y, optimizer=Adam(model.parameters(), lr=0.01, fused=fused), epochs=2, batch_size=5, verbose=0)
        return model.state_dict()

    reference = trained(False)
    for name, value in trained(True).items():
        np.testing.assert_array_equal(value, reference[name])


def test_plain_sgd_steps_from_the_flat_buffer_with_the_bits_of_one_parameter_at_a_time():
    # fused plain SGD scales the flat gradients once (FlatGrads.scaled); it must equal the per-parameter update
    rng = np.random.default_rng(6)
    shapes = [((3, 2), np.float32), ((5,), np.float64), ((2, 2), np.float32)]
    start = [rng.standard_normal(s).astype(d) for s, d in shapes]
    grads = [[rng.standard_normal(s).astype(d) for s, d in shapes] for _ in range(3)]

    def trained(fused, rebind_at=None):
        params = [Parameter(a.copy()) for a in start]
        arrays = [p.data for p in params]
        opt = SGD(params, lr=0.3, fused=fused)
        for step, gs in enumerate(grads):
            for i, (p, g) in enumerate(zip(params, gs, strict=True)):
                if step == rebind_at and i == 1:
                    p.grad = g.copy()  # a rebound .grad: the step falls back to one parameter at a time
                else:
                    p.grad[...] = g
            opt.step()
        assert all(p.data is a for p, a in zip(params, arrays, strict=True))  # in place
        return [p.data for p in params]

    reference = trained(False)
    for result in (trained(True), trained(True, rebind_at=1)):
        for value, expected in zip(result, reference, strict=True):
            np.testing.assert_array_equal(value, expected)


def test_guard_step_marks_the_update_and_an_exception_inside_leaves_the_mark():
    from minidl.guard import TrainingGuard

    guard = TrainingGuard(SGD([param(1.0)]))
    with guard.step():
        assert guard.updating
    assert not guard.updating
    with pytest.raises(KeyboardInterrupt), guard.step():
        raise KeyboardInterrupt
    assert guard.updating  # fit's interrupt handler reads this: the update was cut short


def test_lr_scheduler_does_not_import_optim():
    import subprocess
    import sys

    code = "import sys, minidl.lr_scheduler; print('minidl.optim' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


# -- SGD against updates worked out by hand from torch.optim.SGD's documented rule ----------------


def two_steps(**kwargs):
    """θ = [1, -2] with a constant gradient [0.5, 1]; returns θ after each of two steps."""
    p = Parameter(np.array([1.0, -2.0]))
    opt = SGD([p], lr=0.1, **kwargs)
    seen = []
    for _ in range(2):
        p.grad[...] = [0.5, 1.0]
        opt.step()
        seen.append(p.data.copy())
    return seen


@pytest.mark.parametrize(
    "kwargs, after_one, after_two",
    [
        # θ ← θ - lr·g
        ({}, [0.95, -2.1], [0.9, -2.2]),
        # g' = g + 0.1θ = [0.6, 0.8] = b;  then g' = [0.594, 0.792], b = 0.9b + g' = [1.134, 1.512]
        ({"momentum": 0.9, "weight_decay": 0.1}, [0.94, -2.08], [0.8266, -2.2312]),
        # Nesterov steps by g' + 0.9b: [1.14, 1.52]; then [0.5886 + 0.9·1.1286, 0.7848 + 0.9·1.5048]
        ({"momentum": 0.9, "weight_decay": 0.1, "nesterov": True}, [0.886, -2.152], [0.725566, -2.365912]),
    ],
    ids=["plain", "momentum+decay", "nesterov"],
)
def test_sgd_follows_the_update_rule(kwargs, after_one, after_two):
    one, two = two_steps(**kwargs)
    np.testing.assert_allclose(one, after_one, rtol=0, atol=1e-12)
    np.testing.assert_allclose(two, after_two, rtol=0, atol=1e-12)


def test_sgd_skips_frozen_parameters_and_zero_grad_clears():
    frozen, free = Parameter(np.ones(3), trainable=False), Parameter(np.ones(3))
    opt = SGD([frozen, free], lr=0.5, momentum=0.5)
    frozen.grad[...] = free.grad[...] = 1.0
    opt.step()
    np.testing.assert_array_equal(frozen.data, 1.0)
    np.testing.assert_array_equal(free.data, 0.5)
    opt.zero_grad()
    assert not free.grad.any() and not frozen.grad.any()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"lr": 0.0}, "lr must be finite and in \\(0.0, inf\\), got 0.0"),
        ({"lr": float("nan")}, "lr"),
        ({"lr": 0.1, "momentum": 1.0}, "momentum must be finite and in \\[0.0, 1.0\\), got 1.0"),
        ({"lr": 0.1, "weight_decay": -1}, "weight_decay"),
        ({"lr": 0.1, "nesterov": True}, "nesterov=True needs momentum > 0"),
    ],
)
def test_sgd_rejects_bad_hyper_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SGD([Parameter(np.zeros(2))], **kwargs)
