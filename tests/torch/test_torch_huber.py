"""companion.torch Huber and pseudo-Huber losses against companion.reference and torch.nn."""

import inspect

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import reduce, residual_data

from companion import reference
from companion.torch import HuberLoss, PseudoHuberLoss, huber_loss, pseudo_huber_loss

LOSSES = {
    "huber": (huber_loss, HuberLoss, reference.huber, reference.huber_grad),
    "pseudo_huber": (
        pseudo_huber_loss,
        PseudoHuberLoss,
        reference.pseudo_huber,
        reference.pseudo_huber_grad,
    ),
}
REDUCTIONS = ("mean", "sum", "none")
SHAPE = (6, 7)  # of residual_data


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("delta", [0.1, 1.0, 3.5])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
def test_matches_reference(name, delta, reduction, weighted):
    loss_fn, _, reference_loss, reference_grad = LOSSES[name]
    input, target = residual_data(seed=int(10 * delta), delta=delta, shape=SHAPE)
    rng = np.random.default_rng(1)
    weight = rng.uniform(0.0, 2.0, size=input.shape) if weighted else np.ones(input.shape)
    residual = input - target
    np.testing.assert_array_equal(np.abs(residual.flat[:2]), delta)

    input_t = torch.tensor(input, requires_grad=True)
    weight_t = torch.tensor(weight) if weighted else None
    loss = loss_fn(input_t, torch.tensor(target), delta=delta, weight=weight_t, reduction=reduction)
    expected = reduce(weight * reference_loss(residual, delta), reduction)
    assert loss.dtype == torch.float64
    np.testing.assert_allclose(loss.detach().numpy(), expected, rtol=1e-12, atol=1e-15)

    loss.sum().backward()
    scale = 1.0 / input.size if reduction == "mean" else 1.0
    expected_grad = scale * weight * reference_grad(residual, delta)
    np.testing.assert_allclose(input_t.grad.numpy(), expected_grad, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("delta", [0.1, 1.0, 2.0])
def test_huber_is_torch_builtin(reduction, delta):
    generator = torch.Generator().manual_seed(0)
    input = torch.randn(4, 3, 5, generator=generator, requires_grad=True)
    target = torch.randn(4, 3, 5, generator=generator)
    ours = huber_loss(input, target, delta=delta, reduction=reduction)
    builtin = F.huber_loss(input, target, reduction=reduction, delta=delta)
    assert torch.equal(ours, builtin)
    module = HuberLoss(delta=delta, reduction=reduction)(input, target)
    assert torch.equal(module, torch.nn.HuberLoss(reduction=reduction, delta=delta)(input, target))
    (grad_ours,) = torch.autograd.grad(ours.sum(), input)
    (grad_builtin,) = torch.autograd.grad(builtin.sum(), input)
    assert torch.equal(grad_ours, grad_builtin)


@pytest.mark.skipif(
    "weight" not in inspect.signature(F.huber_loss).parameters,
    reason="this PyTorch's F.huber_loss takes no weight",
)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_weighted_huber_matches_torch_builtin(reduction):
    generator = torch.Generator().manual_seed(1)
    input, target, weight = (torch.randn(3, 8, generator=generator) for _ in range(3))
    ours = huber_loss(input, target, delta=0.7, weight=weight.abs(), reduction=reduction)
    builtin = F.huber_loss(input, target, reduction=reduction, delta=0.7, weight=weight.abs())
    torch.testing.assert_close(ours, builtin, rtol=1e-6, atol=0.0)


@pytest.mark.parametrize("beta", [0.25, 1.0, 4.0])
def test_smooth_l1_is_huber_over_beta(beta):
    generator = torch.Generator().manual_seed(2)
    input = torch.randn(50, dtype=torch.float64, generator=generator) * 3
    target = torch.zeros(50, dtype=torch.float64)
    torch.testing.assert_close(
        huber_loss(input, target, delta=beta, reduction="none") / beta,
        F.smooth_l1_loss(input, target, beta=beta, reduction="none"),
        rtol=1e-14,
        atol=0.0,
    )


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gradcheck(name, reduction):
    loss_fn = LOSSES[name][0]
    generator = torch.Generator().manual_seed(3)
    input = (2 * torch.randn(3, 4, dtype=torch.float64, generator=generator)).requires_grad_()
    target = torch.randn(3, 4, dtype=torch.float64, generator=generator)
    weight = torch.rand(3, 4, dtype=torch.float64, generator=generator).requires_grad_()

    def loss(input, weight):
        return loss_fn(input, target, delta=0.8, weight=weight, reduction=reduction)

    assert torch.autograd.gradcheck(loss, (input, weight))


@pytest.mark.parametrize("name", LOSSES)
def test_huge_delta_is_half_squared_error(name):
    loss_fn = LOSSES[name][0]
    residual = torch.linspace(-10, 10, 41, dtype=torch.float64)
    values = loss_fn(residual, torch.zeros_like(residual), delta=1e8, reduction="none")
    # The pseudo-Huber loss differs from r**2 / 2 by about r**4 / (8 delta**2), here < 1e-12.
    torch.testing.assert_close(values, 0.5 * residual**2, rtol=1e-12, atol=0.0)


@pytest.mark.parametrize("delta", [1e-3, 1e-6, 1e-9])
def test_huber_over_small_delta_tends_to_absolute_error(delta):
    residual = torch.tensor([-3.0, -0.5, 0.01, 2.0], dtype=torch.float64)
    zeros = torch.zeros_like(residual)
    huber = huber_loss(residual, zeros, delta=delta, reduction="none") / delta
    # Off the quadratic piece, huber / delta = |r| - delta / 2 exactly.
    torch.testing.assert_close(huber, residual.abs() - delta / 2, rtol=1e-15, atol=0.0)
    pseudo = pseudo_huber_loss(residual, zeros, delta=delta, reduction="none") / delta
    torch.testing.assert_close(pseudo, residual.abs(), rtol=2 * delta / 0.01, atol=0.0)


@pytest.mark.parametrize("name", LOSSES)
def test_unit_weight_changes_nothing_and_weights_scale(name):
    loss_fn = LOSSES[name][0]
    generator = torch.Generator().manual_seed(4)
    input, target = (
        torch.randn(2, 5, 5, generator=generator),
        torch.randn(2, 5, 5, generator=generator),
    )
    plain = loss_fn(input, target, delta=0.5)
    torch.testing.assert_close(
        loss_fn(input, target, delta=0.5, weight=torch.ones(2, 5, 5)), plain, rtol=1e-7, atol=0.0
    )
    torch.testing.assert_close(
        loss_fn(input, target, delta=0.5, weight=torch.full((2, 5, 5), 3.0)),
        3 * plain,
        rtol=1e-6,
        atol=0.0,
    )


def test_pseudo_huber_lies_below_huber():
    residual = torch.linspace(-20, 20, 2001, dtype=torch.float64)
    zeros = torch.zeros_like(residual)
    for delta in (0.1, 1.0, 5.0):
        huber = huber_loss(residual, zeros, delta=delta, reduction="none")
        pseudo = pseudo_huber_loss(residual, zeros, delta=delta, reduction="none")
        assert torch.all(pseudo <= huber)
        assert torch.all(huber - pseudo <= delta**2 / 2 + 1e-12)


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision(name, dtype):
    loss_fn, _, reference_loss, reference_grad = LOSSES[name]
    # |r| up to 1000: r**2 would overflow float16 (max 65504).
    residual = np.array([-1000.0, -30.0, -1.0, -0.25, 0.0, 0.5, 1.0, 7.0, 250.0, 1000.0])
    input = torch.tensor(residual, dtype=dtype, requires_grad=True)
    values = loss_fn(input, torch.zeros(10, dtype=dtype), delta=1.0, reduction="none")
    assert values.dtype == dtype
    values.sum().backward()
    assert input.grad.dtype == dtype
    rtol = 1e-2 if dtype == torch.bfloat16 else 2e-3
    np.testing.assert_allclose(
        values.detach().double().numpy(), reference_loss(residual), rtol=rtol
    )
    np.testing.assert_allclose(
        input.grad.double().numpy(), reference_grad(residual), rtol=rtol, atol=1e-3
    )


@pytest.mark.parametrize("name", LOSSES)
def test_mixed_float_dtypes_promote_and_differentiate(name):
    # F.huber_loss alone computes this in float32 and fails in the backward.
    loss_fn, _, reference_loss, reference_grad = LOSSES[name]
    input, target = residual_data(4, 1.0, SHAPE)
    input32 = torch.tensor(input, dtype=torch.float32, requires_grad=True)
    loss = loss_fn(input32, torch.tensor(target), reduction="sum")
    assert loss.dtype == torch.float64
    loss.backward()
    assert input32.grad.dtype == torch.float32
    residual = input32.detach().double().numpy() - target
    np.testing.assert_allclose(loss.item(), reference_loss(residual).sum(), rtol=1e-12)
    np.testing.assert_allclose(input32.grad.numpy(), reference_grad(residual), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", LOSSES)
def test_empty_input(name):
    loss_fn = LOSSES[name][0]
    empty = torch.zeros(0, 3)
    assert loss_fn(empty, empty, reduction="sum").item() == 0.0
    assert torch.isnan(loss_fn(empty, empty, reduction="mean"))
    assert loss_fn(empty, empty, reduction="none").shape == (0, 3)


@pytest.mark.parametrize("name", LOSSES)
def test_module_matches_function(name):
    loss_fn, loss_class, _, _ = LOSSES[name]
    generator = torch.Generator().manual_seed(5)
    input, target, weight = (torch.rand(3, 4, generator=generator) for _ in range(3))
    for reduction in REDUCTIONS:
        module = loss_class(delta=0.3, reduction=reduction)
        assert f"delta=0.3, reduction='{reduction}'" in repr(module)
        expected = loss_fn(input, target, delta=0.3, weight=weight, reduction=reduction)
        assert torch.equal(module(input, target, weight), expected)


@pytest.mark.parametrize("name", LOSSES)
def test_shape_mismatch_names_both_shapes(name):
    loss_fn, loss_class, _, _ = LOSSES[name]
    with pytest.raises(ValueError, match=r"input \(4, 1\) and target \(4,\)"):
        loss_fn(torch.zeros(4, 1), torch.zeros(4))
    with pytest.raises(ValueError, match=r"input \(4,\) and target \(1, 4\)"):
        loss_class()(torch.zeros(4), torch.zeros(1, 4))
    with pytest.raises(ValueError, match=r"weight \(4, 1\) and input \(4,\)"):
        loss_fn(torch.zeros(4), torch.zeros(4), weight=torch.ones(4, 1))
    with pytest.raises(ValueError, match=r"weight \(\) and input \(4,\)"):
        loss_fn(torch.zeros(4), torch.zeros(4), weight=torch.tensor(2.0))


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("delta", [0.0, -1.0, float("inf"), float("nan")])
def test_invalid_delta(name, delta):
    loss_fn, loss_class, _, _ = LOSSES[name]
    with pytest.raises(ValueError, match="delta must be a finite number > 0"):
        loss_fn(torch.zeros(2), torch.zeros(2), delta=delta)
    with pytest.raises(ValueError, match="delta must be a finite number > 0"):
        loss_class(delta=delta)


@pytest.mark.parametrize("name", LOSSES)
def test_invalid_reduction(name):
    loss_fn, loss_class, _, _ = LOSSES[name]
    with pytest.raises(ValueError, match=r"reduction must be one of .*got 'avg'"):
        loss_fn(torch.zeros(2), torch.zeros(2), reduction="avg")
    with pytest.raises(ValueError, match=r"reduction must be one of .*got 'batchmean'"):
        loss_class(reduction="batchmean")
