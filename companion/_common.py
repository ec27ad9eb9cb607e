"""Small helpers shared by ``companion.torch`` and ``companion.keras``, framework-free.

The two framework sides never import each other; what both need (argument checks with
one wording of their error messages, the U-Net's normalization groups) lives here once.
"""

from __future__ import annotations

import math
import numbers

#: The ``reduction`` values of the PyTorch losses, as in ``torch.nn.functional``.
REDUCTIONS = ("mean", "sum", "none")

#: The convex upper bounds of the 0-1 loss that the precision-at-recall losses can use.
SURROGATES = ("cross_entropy", "hinge")

#: Probabilities are clipped to ``[PROBABILITY_CLIP, 1 - PROBABILITY_CLIP]`` before their
#: logit is taken (the precision-at-recall losses given probabilities), as
#: ``keras.losses.binary_crossentropy`` clips them.
PROBABILITY_CLIP = 1e-7


def check_number(name: str, value, *, low: float = 0.0, strict: bool = False) -> float:
    """``value`` as a float, finite and ``> low`` (``strict``) or ``>= low``; else ValueError.

    Example:
        >>> check_number("smooth", 1)
        1.0
    """
    value = float(value)
    if not (value > low if strict else value >= low) or not math.isfinite(value):
        relation = ">" if strict else ">="
        raise ValueError(f"{name} must be a finite number {relation} {low:g}, got {value}")
    return value


def check_delta(delta) -> float:
    """The Huber threshold: a finite number > 0."""
    return check_number("delta", delta, strict=True)


def check_beta(beta) -> float:
    """The F-beta weight of recall: a finite number > 0."""
    return check_number("beta", beta, strict=True)


def check_alpha(alpha) -> float | None:
    """The focal loss's class balance: None or a number in [0, 1]."""
    if alpha is None:
        return None
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be None or a number in [0, 1], got {alpha}")
    return alpha


def check_target_recall(target_recall) -> float:
    """A recall target in the open interval (0, 1)."""
    target_recall = float(target_recall)
    if not 0.0 < target_recall < 1.0:
        raise ValueError(f"target_recall must lie in the open interval (0, 1), got {target_recall}")
    return target_recall


def check_class_index(class_index) -> int | None:
    """None, or the index (an int >= 0) of the class that counts as positive."""
    if class_index is None:
        return None
    if isinstance(class_index, bool) or not isinstance(class_index, numbers.Integral):
        raise ValueError(f"class_index must be None or an int >= 0, got {class_index!r}")
    if class_index < 0:
        raise ValueError(f"class_index must be None or an int >= 0, got {class_index}")
    return int(class_index)


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    """``value`` if it is one of ``choices``; else ValueError naming them."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def check_positive_int(name: str, value) -> int:
    """An integer >= 1 (booleans refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def group_count(channels: int) -> int:
    """The U-Net's number of normalization groups for ``channels`` channels: ``gcd(8, channels)``.

    Eight groups, as many as divide the channel count of a narrow test model.

    Example:
        >>> [group_count(channels) for channels in (4, 12, 16, 256)]
        [4, 4, 8, 8]
    """
    return math.gcd(8, channels)
