"""companion.backprop against autograd in float64."""

import numpy as np
import pytest
import torch

from companion import backprop

TORCH_LOSSES = {
    "l1": lambda output, target: torch.nn.functional.l1_loss(output, target),
    "mse": lambda output, target: torch.nn.functional.mse_loss(output, target),
    "half_mse": lambda output, target: 0.5 * torch.nn.functional.mse_loss(output, target),
}


def autograd_gradients(W1, W2, x, target, loss):
    layer1 = torch.nn.Linear(2, 2, bias=False).double()
    layer2 = torch.nn.Linear(2, 1, bias=False).double()
    with torch.no_grad():
        layer1.weight.copy_(torch.as_tensor(W1))
        layer2.weight.copy_(torch.as_tensor(W2))
    hidden = layer1(torch.as_tensor(x, dtype=torch.float64))
    output = layer2(hidden)
    TORCH_LOSSES[loss](output, torch.tensor([target], dtype=torch.float64)).backward()
    return (
        hidden.detach().numpy(),
        output.detach().numpy(),
        layer1.weight.grad.numpy(),
        layer2.weight.grad.numpy(),
    )


@pytest.mark.parametrize("loss", backprop.LOSSES)
@pytest.mark.parametrize("seed", range(20))
def test_matches_autograd(loss, seed):
    rng = np.random.default_rng(seed)
    W1, W2, x = rng.normal(size=(2, 2)), rng.normal(size=(1, 2)), rng.normal(size=2)
    target = float(rng.normal())
    hidden, output, dW1_ref, dW2_ref = autograd_gradients(W1, W2, x, target, loss)
    np.testing.assert_allclose(backprop.forward(W1, W2, x)[0], hidden, rtol=1e-14)
    np.testing.assert_allclose(backprop.forward(W1, W2, x)[1], output, rtol=1e-14)
    dW1, dW2 = backprop.backward(W1, W2, x, target, loss=loss)
    np.testing.assert_allclose(dW1, dW1_ref, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(dW2, dW2_ref, rtol=1e-13, atol=1e-15)


def test_question_numbers():
    W1, W2, x = [[0.11, 0.21], [0.12, 0.08]], [[0.14, 0.15]], [2.0, 3.0]
    hidden, output = backprop.forward(W1, W2, x)
    np.testing.assert_allclose(hidden, [0.85, 0.48], rtol=1e-14)
    np.testing.assert_allclose(output, [0.191], rtol=1e-14)
    dW1, dW2 = backprop.backward(W1, W2, x, 1.0, loss="l1")
    np.testing.assert_allclose(dW1, [[-0.28, -0.42], [-0.30, -0.45]], rtol=1e-14)
    np.testing.assert_allclose(dW2, [[-0.85, -0.48]], rtol=1e-14)


def test_mse_is_twice_half_mse():
    rng = np.random.default_rng(0)
    W1, W2, x = rng.normal(size=(2, 2)), rng.normal(size=(1, 2)), rng.normal(size=2)
    half = backprop.backward(W1, W2, x, 0.3, loss="half_mse")
    full = backprop.backward(W1, W2, x, 0.3, loss="mse")
    for h, f in zip(half, full, strict=True):
        np.testing.assert_allclose(f, 2 * h, rtol=1e-15)


def test_l1_gradient_is_zero_at_the_target():
    W1, W2, x = np.eye(2), np.array([[1.0, 1.0]]), np.array([0.25, 0.75])
    dW1, dW2 = backprop.backward(W1, W2, x, 1.0, loss="l1")
    assert not dW1.any() and not dW2.any()


def test_loss_value():
    assert backprop.loss_value([0.191], 1.0, "l1") == pytest.approx(0.809, rel=1e-14)
    assert backprop.loss_value([0.191], 1.0, "mse") == pytest.approx(0.809**2, rel=1e-14)
    assert backprop.loss_value([0.191], 1.0, "half_mse") == pytest.approx(0.809**2 / 2, rel=1e-14)


@pytest.mark.parametrize(
    ("W1", "W2", "x", "match"),
    [
        (
            np.ones((2, 3)),
            np.ones((1, 2)),
            np.ones(2),
            r"W1 must have shape \(2, 2\), got \(2, 3\)",
        ),
        (np.ones((2, 2)), np.ones(2), np.ones(2), r"W2 must have shape \(1, 2\), got \(2,\)"),
        (
            np.ones((2, 2)),
            np.ones((1, 2)),
            np.ones((2, 1)),
            r"x must have shape \(2,\), got \(2, 1\)",
        ),
    ],
)
def test_bad_shapes(W1, W2, x, match):
    with pytest.raises(ValueError, match=match):
        backprop.backward(W1, W2, x, 1.0)


def test_unknown_loss():
    with pytest.raises(
        ValueError, match=r"loss must be one of \('l1', 'mse', 'half_mse'\), got 'l2'"
    ):
        backprop.backward(np.eye(2), np.ones((1, 2)), np.ones(2), 1.0, loss="l2")
