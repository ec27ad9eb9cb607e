"""Argument checks and reductions shared by the PyTorch loss modules (private).

``companion.torch.regression``, ``companion.torch.segmentation`` and
``companion.torch.precision`` import their checks from here (and the framework-free ones from
``companion._common``), never from one another. Each check raises ``ValueError`` with a message
that names the argument and, for shapes, both shapes; the tests match these messages.
"""

from __future__ import annotations

import torch
from torch import Tensor

from companion._common import REDUCTIONS

_HALF = (torch.float16, torch.bfloat16)


def check_reduction(reduction: str) -> str:
    """``reduction`` if it is one of ``REDUCTIONS``; else ValueError naming them."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction


def reduce(values: Tensor, reduction: str) -> Tensor:
    """``values.mean()`` for ``"mean"``, ``values.sum()`` for ``"sum"``, else ``values``."""
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    return values


def working_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for float16 and bfloat16, else ``dtype``: sums of many half values overflow."""
    return torch.float32 if dtype in _HALF else dtype


def check_weight_map(name: str, weight: Tensor | None, shape: torch.Size, of: str) -> None:
    """``weight`` is None or has exactly ``shape``, the shape of the tensor called ``of``."""
    if weight is not None and weight.shape != shape:
        raise ValueError(
            f"{name} must have the shape of {of}, got "
            f"{name} {tuple(weight.shape)} and {of} {tuple(shape)}"
        )


def check_shapes(input: Tensor, target: Tensor, weight: Tensor | None = None) -> None:
    """``target`` and ``weight`` (unless None) have exactly the shape of ``input``."""
    if input.shape != target.shape:
        raise ValueError(
            "input and target must have the same shape, got "
            f"input {tuple(input.shape)} and target {tuple(target.shape)}"
        )
    check_weight_map("weight", weight, input.shape, "input")


def check_binary(input: Tensor, target: Tensor, *, per_sample: bool = False) -> None:
    """Binary-loss arguments: one shape, both floating point, a batch axis if ``per_sample``."""
    check_shapes(input, target)
    if not input.is_floating_point():
        raise ValueError(f"input must be a floating-point tensor, got dtype {input.dtype}")
    if not target.is_floating_point():
        raise ValueError(
            "target must be a floating-point tensor of 0/1 (or soft) labels, got dtype "
            f"{target.dtype}; convert it with target.float()"
        )
    if per_sample and input.ndim == 0:
        raise ValueError("input must have a batch axis, shape (N, *), got a scalar")


def as_pos_weight(pos_weight, input: Tensor) -> Tensor | None:
    """``pos_weight`` as a tensor of ``input``'s dtype and device that broadcasts to it."""
    if pos_weight is None:
        return None
    pos_weight = torch.as_tensor(pos_weight, dtype=input.dtype, device=input.device)
    try:
        broadcast = torch.broadcast_shapes(pos_weight.shape, input.shape)
    except RuntimeError:
        broadcast = None
    if broadcast != input.shape:
        raise ValueError(
            "pos_weight must broadcast to the shape of input without changing it, got "
            f"pos_weight {tuple(pos_weight.shape)} and input {tuple(input.shape)}"
        )
    return pos_weight


def check_class_target(input: Tensor, target: Tensor) -> Tensor:
    """Class indices ``(N, *)`` for logits ``(N, C, *)``, returned as int64."""
    if not input.is_floating_point():
        raise ValueError(f"input must be a floating-point tensor, got dtype {input.dtype}")
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise ValueError(
            f"target must hold class indices (an integer dtype), got dtype {target.dtype}"
        )
    if input.ndim < 2 or input.shape[:1] + input.shape[2:] != target.shape:
        raise ValueError(
            "target must have the shape of input without its class axis 1, got "
            f"input {tuple(input.shape)} and target {tuple(target.shape)}"
        )
    return target.long()


def as_class_vector(name: str, values, input: Tensor) -> Tensor:
    """``values`` as a ``(C,)`` tensor of ``input``'s dtype and device, ``C = input.shape[1]``."""
    values = torch.as_tensor(values, dtype=input.dtype, device=input.device)
    n_classes = input.shape[1]
    if values.shape != (n_classes,):
        raise ValueError(
            f"{name} must have one entry per class, shape ({n_classes},) for input "
            f"{tuple(input.shape)}, got {name} {tuple(values.shape)}"
        )
    return values


def _check_square(cost_matrix: Tensor) -> Tensor:
    if cost_matrix.ndim != 2 or cost_matrix.shape[0] != cost_matrix.shape[1]:
        raise ValueError(
            "cost_matrix must be a square matrix (C, C), cost_matrix[true, predicted], got "
            f"shape {tuple(cost_matrix.shape)}"
        )
    return cost_matrix


def square_cost_matrix(cost_matrix) -> Tensor:
    """``cost_matrix`` as a square ``(C, C)`` tensor of the default dtype (a module buffer)."""
    return _check_square(torch.as_tensor(cost_matrix, dtype=torch.get_default_dtype()))


def as_cost_matrix(cost_matrix, input: Tensor) -> Tensor:
    """``cost_matrix`` as a ``(C, C)`` tensor of ``input``'s dtype and device."""
    cost_matrix = torch.as_tensor(cost_matrix, dtype=input.dtype, device=input.device)
    _check_square(cost_matrix)
    n_classes = input.shape[1]
    if cost_matrix.shape[0] != n_classes:
        raise ValueError(
            f"cost_matrix must be ({n_classes}, {n_classes}) for the {n_classes} classes of "
            f"input {tuple(input.shape)}, got cost_matrix {tuple(cost_matrix.shape)}"
        )
    return cost_matrix
