"""Robust regression losses for PyTorch: Huber and pseudo-Huber.

Both follow ``torch.nn``'s habits: ``(input, target)`` order, ``reduction`` in
``{"mean", "sum", "none"}``, a function (``huber_loss``) and an ``nn.Module``
(``HuberLoss``). Unlike ``torch.nn.functional``, a shape mismatch is an error, never a
broadcast, and an optional element-wise ``weight`` is accepted.

The float64 twins of these losses, and their closed-form gradients, are in
:mod:`companion.reference`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from companion._common import check_delta as _check_delta
from companion.torch._checks import check_reduction as _check_reduction
from companion.torch._checks import check_shapes as _check_shapes
from companion.torch._checks import reduce as _reduce

__all__ = ["HuberLoss", "PseudoHuberLoss", "huber_loss", "pseudo_huber_loss"]


def _weight_and_reduce(elementwise: Tensor, weight: Tensor | None, reduction: str) -> Tensor:
    if weight is not None:
        elementwise = elementwise * weight
    # "mean": the weighted sum over the number of elements, as F.binary_cross_entropy(weight=...).
    return _reduce(elementwise, reduction)


def huber_loss(
    input: Tensor,
    target: Tensor,
    delta: float = 1.0,
    weight: Tensor | None = None,
    reduction: str = "mean",
) -> Tensor:
    """The Huber loss of ``input - target`` (Huber, 1964), optionally weighted.

    Formula, for each element with residual ``r = input - target``::

        loss = weight * 0.5 * r**2                    if |r| <= delta
               weight * delta * (|r| - 0.5 * delta)   otherwise

    then ``"mean"``: ``sum(loss) / loss.numel()`` (also when weighted, as
    ``F.binary_cross_entropy(weight=...)``); ``"sum"``: ``sum(loss)``; ``"none"``: ``loss``.
    The gradient with respect to ``input`` is ``weight * clip(r, -delta, delta)`` per element,
    divided by ``numel`` for ``"mean"``.

    Without ``weight`` this is ``torch.nn.functional.huber_loss(input, target,
    reduction=reduction, delta=delta)``, which it calls. ``SmoothL1Loss(beta)`` is this loss
    divided by ``beta``, with ``delta = beta``. The mean of an empty input is NaN, as in
    ``torch``.

    Args:
        input: predictions, any shape, floating point (float16 and bfloat16 included).
        target: targets, the shape of ``input``.
        delta: the threshold between the quadratic and the linear piece, finite and > 0.
        weight: optional element-wise weights, the shape of ``input``; no broadcasting.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.

    Returns:
        A scalar for ``"mean"`` and ``"sum"``, else a tensor of ``input``'s shape; in the
        dtype of ``input`` and ``target`` promoted together, as ``input - target`` would be.

    Raises:
        ValueError: if ``target`` or ``weight`` differs in shape from ``input`` (the message
            names both shapes), if ``delta`` is not a finite number > 0 or ``reduction`` is
            unknown.

    Example:
        >>> input, target = torch.tensor([0.5, -3.0]), torch.zeros(2)
        >>> huber_loss(input, target, reduction="none")
        tensor([0.1250, 2.5000])
        >>> huber_loss(input, target, weight=torch.tensor([1.0, 0.0]))
        tensor(0.0625)
    """
    delta = _check_delta(delta)
    _check_reduction(reduction)
    _check_shapes(input, target, weight)
    # F.huber_loss computes a float32 input against a float64 target in float32, then fails
    # in the backward ("Found dtype Double but expected Float"): promote both first.
    dtype = torch.promote_types(input.dtype, target.dtype)
    input, target = input.to(dtype), target.to(dtype)
    if weight is None:
        return F.huber_loss(input, target, reduction=reduction, delta=delta)
    elementwise = F.huber_loss(input, target, reduction="none", delta=delta)
    return _weight_and_reduce(elementwise, weight, reduction)


def pseudo_huber_loss(
    input: Tensor,
    target: Tensor,
    delta: float = 1.0,
    weight: Tensor | None = None,
    reduction: str = "mean",
) -> Tensor:
    """The pseudo-Huber loss of ``input - target``, optionally weighted.

    Formula, for each element with residual ``r = input - target``::

        loss = weight * delta**2 * (sqrt(1 + (r / delta)**2) - 1)

    computed as ``|r| * delta * a / (1 + hypot(1, a))`` with ``a = |r| / delta``, which is
    equal but has no cancellation near ``r = 0`` and no overflow of ``r**2`` (float16 overflows
    at ``|r| = 256``). The reductions are those of :func:`huber_loss`. A smooth version of the
    Huber loss (Hartley and Zisserman, 2004, appendix A6): ``0.5 r**2`` near zero,
    ``delta * |r| - delta**2`` far out; the gradient is ``weight * r / sqrt(1 + (r/delta)**2)``.

    Args:
        input: predictions, any shape, floating point (float16 and bfloat16 included).
        target: targets, the shape of ``input``.
        delta: the scale of the transition, finite and > 0.
        weight: optional element-wise weights, the shape of ``input``; no broadcasting.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.

    Returns:
        A scalar for ``"mean"`` and ``"sum"``, else a tensor of ``input``'s shape.

    Raises:
        ValueError: if ``target`` or ``weight`` differs in shape from ``input`` (the message
            names both shapes), if ``delta`` is not a finite number > 0 or ``reduction`` is
            unknown.

    Example:
        >>> input, target = torch.tensor([0.0, 1.0, -3.0]), torch.zeros(3)
        >>> pseudo_huber_loss(input, target, reduction="none")
        tensor([0.0000, 0.4142, 2.1623])
    """
    delta = _check_delta(delta)
    _check_reduction(reduction)
    _check_shapes(input, target, weight)
    abs_residual = (input - target).abs()
    scaled = abs_residual / delta
    elementwise = abs_residual * delta * (scaled / (1 + torch.hypot(scaled, scaled.new_ones(()))))
    return _weight_and_reduce(elementwise, weight, reduction)


class HuberLoss(nn.Module):
    """The Huber loss as a module; see :func:`huber_loss` for the formula.

    Like ``torch.nn.HuberLoss(reduction, delta)``, to which it is equal without ``weight``,
    but shapes must match exactly and ``forward`` takes an optional element-wise ``weight``
    (a weight map that may change from batch to batch).

    Shape:
        - input: any shape ``(*)``, e.g. ``(N, C, H, W)``.
        - target, weight: ``(*)``, the same shape as ``input``.
        - output: a scalar for ``"mean"`` and ``"sum"``, ``(*)`` for ``"none"``.

    Args:
        delta: the threshold between the quadratic and the linear piece, finite and > 0.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.

    Raises:
        ValueError: for a ``delta`` or ``reduction`` that :func:`huber_loss` rejects, at
            construction; for mismatched shapes, in ``forward``.

    Example:
        >>> criterion = HuberLoss(delta=2.0, reduction="sum")
        >>> criterion(torch.tensor([1.0, 5.0]), torch.zeros(2))
        tensor(8.5000)
    """

    def __init__(self, delta: float = 1.0, reduction: str = "mean") -> None:
        super().__init__()
        self.delta = _check_delta(delta)
        self.reduction = _check_reduction(reduction)

    def forward(self, input: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        return huber_loss(input, target, self.delta, weight, self.reduction)

    def extra_repr(self) -> str:
        return f"delta={self.delta}, reduction={self.reduction!r}"


class PseudoHuberLoss(nn.Module):
    """The pseudo-Huber loss as a module; see :func:`pseudo_huber_loss` for the formula.

    Shape:
        - input: any shape ``(*)``, e.g. ``(N, C, H, W)``.
        - target, weight: ``(*)``, the same shape as ``input``.
        - output: a scalar for ``"mean"`` and ``"sum"``, ``(*)`` for ``"none"``.

    Args:
        delta: the scale of the transition, finite and > 0.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.

    Raises:
        ValueError: for a ``delta`` or ``reduction`` that :func:`pseudo_huber_loss` rejects,
            at construction; for mismatched shapes, in ``forward``.

    Example:
        >>> criterion = PseudoHuberLoss(delta=1.0)
        >>> criterion(torch.tensor([0.0, 1.0]), torch.zeros(2))
        tensor(0.2071)
    """

    def __init__(self, delta: float = 1.0, reduction: str = "mean") -> None:
        super().__init__()
        self.delta = _check_delta(delta)
        self.reduction = _check_reduction(reduction)

    def forward(self, input: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        return pseudo_huber_loss(input, target, self.delta, weight, self.reduction)

    def extra_repr(self) -> str:
        return f"delta={self.delta}, reduction={self.reduction!r}"
