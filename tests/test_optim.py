"""companion.optim against torch.optim in float64, over every option combination."""

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from companion import optim

N_STEPS = 100
SHAPES = [(3, 4), (5,), ()]


def gradient(params, step, maximize, feedback=True):
    """A non-linear gradient field with step-dependent noise.

    With ``feedback`` the gradient depends on the parameters, as in training. Without it,
    the gradients are a fixed sequence, so that rounding differences cannot be amplified
    by the dynamics (some option values, such as beta2 = 0 in Adam, make the fed-back
    trajectory chaotic, where any two correct implementations part after a few steps).
    """
    rng = np.random.default_rng(1000 + step)
    grads = []
    for index, param in enumerate(params):
        noise = rng.normal(scale=0.1, size=param.shape)
        if feedback:
            grads.append(np.asarray((1.0 + index) * param + np.sin(3.0 * param) + noise))
        else:
            grads.append(np.asarray(np.cos(0.3 * step + index) + noise))
    # Ascent on this field would diverge; flip it so maximize stays bounded.
    return [np.negative(g) for g in grads] if maximize else grads


def initial_params():
    rng = np.random.default_rng(7)
    return [rng.normal(size=shape) for shape in SHAPES]


def run_numpy(optimizer, schedule=None, feedback=True):
    params = initial_params()
    for step in range(N_STEPS):
        if schedule is not None:
            optimizer.lr = schedule(step)
        params = optimizer.step(params, gradient(params, step, optimizer.maximize, feedback))
    return params


def run_torch(cls, kwargs, schedule=None, feedback=True):
    params = [torch.tensor(p, dtype=torch.float64, requires_grad=True) for p in initial_params()]
    optimizer = cls(params, **kwargs)
    for step in range(N_STEPS):
        if schedule is not None:
            optimizer.param_groups[0]["lr"] = schedule(step)
        grads = gradient(
            [p.detach().numpy() for p in params], step, kwargs.get("maximize", False), feedback
        )
        for param, grad in zip(params, grads, strict=True):
            param.grad = torch.as_tensor(grad)
        optimizer.step()
    return [p.detach().numpy() for p in params]


def assert_same_trajectory(ours, theirs):
    for mine, ref in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(mine, ref, rtol=1e-10, atol=1e-14)


SGD_CASES = [
    dict(lr=0.05, momentum=m, dampening=d, nesterov=n, weight_decay=wd, maximize=mx)
    for m, d, n, wd, mx in itertools.product(
        [0.0, 0.9], [0.0, 0.3], [False, True], [0.0, 0.01], [False, True]
    )
    if not (n and (m <= 0 or d != 0))
]

ADAM_CASES = [
    dict(lr=0.01, betas=b, eps=e, weight_decay=wd, amsgrad=a, maximize=mx)
    for b, e, wd, a, mx in itertools.product(
        [(0.9, 0.999), (0.3, 0.6), (0.0, 0.0)],
        [1e-8, 1e-3],
        [0.0, 0.1],
        [False, True],
        [False, True],
    )
]


@pytest.mark.parametrize("kwargs", SGD_CASES, ids=str)
def test_sgd_matches_torch(kwargs):
    assert_same_trajectory(run_numpy(optim.SGD(**kwargs)), run_torch(torch.optim.SGD, kwargs))


@pytest.mark.parametrize("kwargs", ADAM_CASES, ids=str)
def test_adam_matches_torch(kwargs):
    assert_same_trajectory(run_numpy(optim.Adam(**kwargs)), run_torch(torch.optim.Adam, kwargs))


@pytest.mark.parametrize("kwargs", ADAM_CASES, ids=str)
def test_adamw_matches_torch(kwargs):
    assert_same_trajectory(run_numpy(optim.AdamW(**kwargs)), run_torch(torch.optim.AdamW, kwargs))


def test_defaults_match_torch():
    assert_same_trajectory(run_numpy(optim.Adam()), run_torch(torch.optim.Adam, {}))
    assert_same_trajectory(run_numpy(optim.AdamW()), run_torch(torch.optim.AdamW, {}))


@pytest.mark.parametrize(
    ("cls", "torch_cls", "kwargs"),
    [
        (optim.SGD, torch.optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True)),
        (optim.Adam, torch.optim.Adam, dict(lr=0.01, amsgrad=True)),
        (optim.AdamW, torch.optim.AdamW, dict(lr=0.01, weight_decay=0.1)),
    ],
)
def test_changing_learning_rate_matches_torch(cls, torch_cls, kwargs):
    def schedule(step):
        return kwargs["lr"] * 0.5 ** (step // 10)

    assert_same_trajectory(
        run_numpy(cls(**kwargs), schedule), run_torch(torch_cls, kwargs, schedule)
    )


BAD_OPTIONS = [
    (optim.SGD, torch.optim.SGD, dict(lr=-0.1)),
    (optim.SGD, torch.optim.SGD, dict(lr=0.1, momentum=-0.5)),
    (optim.SGD, torch.optim.SGD, dict(lr=0.1, weight_decay=-1e-4)),
    (optim.SGD, torch.optim.SGD, dict(lr=0.1, nesterov=True)),
    (optim.SGD, torch.optim.SGD, dict(lr=0.1, momentum=0.9, dampening=0.1, nesterov=True)),
    (optim.Adam, torch.optim.Adam, dict(lr=-1e-3)),
    (optim.Adam, torch.optim.Adam, dict(eps=-1e-8)),
    (optim.Adam, torch.optim.Adam, dict(betas=(1.0, 0.999))),
    (optim.Adam, torch.optim.Adam, dict(betas=(0.9, -0.1))),
    (optim.Adam, torch.optim.Adam, dict(weight_decay=-0.1)),
    (optim.AdamW, torch.optim.AdamW, dict(betas=(0.9, 1.0))),
    (optim.AdamW, torch.optim.AdamW, dict(weight_decay=-0.01)),
]


@pytest.mark.parametrize(("cls", "torch_cls", "kwargs"), BAD_OPTIONS)
def test_rejects_what_torch_rejects(cls, torch_cls, kwargs):
    with pytest.raises(ValueError) as torch_error:
        torch_cls([torch.zeros(1, requires_grad=True)], **kwargs)
    with pytest.raises(ValueError) as our_error:
        cls(**kwargs)
    assert str(our_error.value) == str(torch_error.value)


def test_inputs_are_not_modified():
    params, grads = [np.ones(3)], [np.full(3, 0.5)]
    optimizer = optim.SGD(lr=0.1, momentum=0.9)
    new = optimizer.step(params, grads)
    np.testing.assert_array_equal(params[0], np.ones(3))
    np.testing.assert_allclose(new[0], np.full(3, 0.95), rtol=1e-15)


def test_mismatched_lists_raise():
    optimizer = optim.Adam()
    with pytest.raises(ValueError, match="got 2 params but 1 grads"):
        optimizer.step([np.ones(2), np.ones(3)], [np.ones(2)])
    with pytest.raises(ValueError, match=r"param 0 has shape \(2,\) but its grad has shape \(3,\)"):
        optimizer.step([np.ones(2)], [np.ones(3)])
    optimizer.step([np.ones(2)], [np.ones(2)])
    with pytest.raises(
        ValueError, match=r"stepped with parameter shapes \[\(2,\)\], now \[\(4,\)\]"
    ):
        optimizer.step([np.ones(4)], [np.ones(4)])


@settings(max_examples=40, deadline=None)
@given(
    lr=st.floats(0.0, 0.2),
    momentum=st.floats(0.0, 0.99),
    dampening=st.floats(0.0, 1.0),
    nesterov=st.booleans(),
    weight_decay=st.floats(0.0, 0.1),
    maximize=st.booleans(),
)
def test_sgd_matches_torch_for_any_valid_options(
    lr, momentum, dampening, nesterov, weight_decay, maximize
):
    kwargs = dict(lr=lr, momentum=momentum, dampening=dampening, nesterov=nesterov)
    kwargs.update(weight_decay=weight_decay, maximize=maximize)
    if nesterov and (momentum <= 0 or dampening != 0):
        with pytest.raises(ValueError, match="Nesterov momentum requires"):
            optim.SGD(**kwargs)
        return
    assert_same_trajectory(
        run_numpy(optim.SGD(**kwargs), feedback=False),
        run_torch(torch.optim.SGD, kwargs, feedback=False),
    )


@settings(max_examples=40, deadline=None)
@given(
    lr=st.floats(1e-4, 0.1),
    beta1=st.floats(0.0, 0.999),
    beta2=st.floats(0.0, 0.9999),
    eps=st.floats(1e-10, 1e-2),
    weight_decay=st.floats(0.0, 0.2),
    amsgrad=st.booleans(),
    decoupled=st.booleans(),
)
def test_adam_matches_torch_for_any_valid_options(
    lr, beta1, beta2, eps, weight_decay, amsgrad, decoupled
):
    kwargs = dict(lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad)
    ours, theirs = (optim.AdamW, torch.optim.AdamW) if decoupled else (optim.Adam, torch.optim.Adam)
    assert_same_trajectory(
        run_numpy(ours(**kwargs), feedback=False), run_torch(theirs, kwargs, feedback=False)
    )
