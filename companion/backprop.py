"""Forward and backward pass of a bias-free 2-2-1 linear network, by hand.

The network is the one of the chapter "How PyTorch updates weights"::

    hidden = W1 @ x          # W1: (2, 2), shaped like torch.nn.Linear(2, 2).weight
    output = W2 @ hidden     # W2: (1, 2), shaped like torch.nn.Linear(2, 1).weight

Everything is NumPy in float64, so the numbers can be compared with autograd's to the
last digit. Backpropagation is the chain rule applied from the loss backwards::

    dL/doutput = loss'(output - target)                      (1,)
    dL/dW2     = dL/doutput[:, None] * hidden[None, :]        (1, 2)
    dL/dhidden = W2.T @ dL/doutput                           (2,)
    dL/dW1     = dL/dhidden[:, None] * x[None, :]            (2, 2)

where ``loss'`` is the derivative of the loss with respect to the output:

    ========== ======================= ===========================
    ``loss``   L(e), e = output-target dL/de
    ========== ======================= ===========================
    "l1"       abs(e)                  sign(e)  (0 at e = 0, as torch)
    "mse"      e**2                    2 e
    "half_mse" e**2 / 2                e
    ========== ======================= ===========================
"""

from __future__ import annotations

import numpy as np

__all__ = ["LOSSES", "backward", "forward", "loss_value"]

#: The losses that :func:`forward`, :func:`loss_value` and :func:`backward` accept.
LOSSES = ("l1", "mse", "half_mse")


def _as_float64(name: str, value, shape: tuple[int, ...]) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if array.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {array.shape}")
    return array


def _check_loss(loss: str) -> None:
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")


def forward(W1, W2, x) -> tuple[np.ndarray, np.ndarray]:
    """Run the 2-2-1 network forward.

    Args:
        W1: first-layer weight, shape (2, 2) (out_features, in_features).
        W2: second-layer weight, shape (1, 2).
        x: one input vector, shape (2,).

    Returns:
        ``(hidden, output)``, of shapes (2,) and (1,), in float64.

    Raises:
        ValueError: if a shape differs from the ones above.

    Example:
        >>> hidden, output = forward([[0.11, 0.21], [0.12, 0.08]], [[0.14, 0.15]], [2, 3])
        >>> hidden.round(4).tolist(), output.round(4).tolist()
        ([0.85, 0.48], [0.191])
    """
    W1 = _as_float64("W1", W1, (2, 2))
    W2 = _as_float64("W2", W2, (1, 2))
    x = _as_float64("x", x, (2,))
    hidden = W1 @ x
    output = W2 @ hidden
    return hidden, output


def loss_value(output, target, loss: str = "l1") -> float:
    """The loss of one output against its target (see the module docstring's table).

    Example:
        >>> round(loss_value([0.191], 1.0, "half_mse"), 4)
        0.3272
    """
    _check_loss(loss)
    error = float(np.asarray(output, dtype=np.float64).reshape(-1)[0]) - float(target)
    if loss == "l1":
        return abs(error)
    if loss == "mse":
        return error**2
    return 0.5 * error**2


def backward(W1, W2, x, target, loss: str = "l1") -> tuple[np.ndarray, np.ndarray]:
    """Gradients of the loss with respect to ``W1`` and ``W2``, by the chain rule.

    Args:
        W1, W2, x: as in :func:`forward`.
        target: the scalar target.
        loss: ``"l1"`` (``nn.L1Loss``), ``"mse"`` (``nn.MSELoss``) or ``"half_mse"``
            (half the squared error).

    Returns:
        ``(dW1, dW2)``, shaped like ``W1`` and ``W2``: what ``loss.backward()`` leaves
        in ``.grad``.

    Raises:
        ValueError: on a wrong shape or an unknown ``loss``.

    Example:
        >>> dW1, dW2 = backward([[0.11, 0.21], [0.12, 0.08]], [[0.14, 0.15]], [2, 3], 1.0)
        >>> dW1.round(4).tolist(), dW2.round(4).tolist()
        ([[-0.28, -0.42], [-0.3, -0.45]], [[-0.85, -0.48]])
    """
    _check_loss(loss)
    W2 = _as_float64("W2", W2, (1, 2))
    x = _as_float64("x", x, (2,))
    hidden, output = forward(W1, W2, x)
    error = output - float(target)
    if loss == "l1":
        d_output = np.sign(error)
    elif loss == "mse":
        d_output = 2.0 * error
    else:
        d_output = error
    dW2 = d_output[:, None] * hidden[None, :]
    d_hidden = W2.T @ d_output
    dW1 = d_hidden[:, None] * x[None, :]
    return dW1, dW2
