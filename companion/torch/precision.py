"""Differentiable stand-ins for precision, recall and F-beta, and precision-at-recall training.

Precision ``TP / (TP + FP)`` counts thresholded predictions, so its gradient with respect to
the model's scores is zero almost everywhere. The functions here replace the counts by sums
of probabilities ("soft" counts) or by convex upper bounds of the 0-1 loss:

=============================  ==============================================================
``soft_precision``             ``sum(p t) / (sum(p) + eps)``, pooled over the batch
``soft_recall``                ``sum(p t) / (sum(t) + eps)``, pooled over the batch
``soft_fbeta_loss``            ``1 - soft F-beta``; for ``beta = 1`` this is ``1 - soft Dice``
``SoftFBetaLoss``              the same as an ``nn.Module``
``PrecisionAtRecallLoss``      Eban et al. (2017): precision subject to recall >= a target,
                               with a learnable Lagrange multiplier
=============================  ==============================================================

All take logits by default (``from_logits=True``), ``(input, target)`` in that order, and
either a binary problem (``input`` and ``target`` of one shape) or a multi-class one where
``class_index`` names the class that counts as positive (softmax over the classes of
``input`` of shape ``(N, C, *)``, then that class against the rest; ``target`` then holds
class indices of shape ``(N, *)``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from companion._common import PROBABILITY_CLIP, SURROGATES
from companion._common import check_beta as _check_beta
from companion._common import check_choice as _check_choice
from companion._common import check_class_index as _check_class_index
from companion._common import check_number as _check_number
from companion._common import check_target_recall as _check_target_recall
from companion.torch._checks import check_reduction as _check_reduction
from companion.torch._checks import check_shapes as _check_same_shape
from companion.torch._checks import working_dtype as _working_dtype

__all__ = [
    "PrecisionAtRecallLoss",
    "SoftFBetaLoss",
    "soft_fbeta_loss",
    "soft_precision",
    "soft_recall",
]

#: Default of ``eps``: keeps every ratio finite when a denominator's sum is 0; it equals
#: ``keras.backend.epsilon()``, so that ``soft_fbeta_loss`` with ``beta=1`` is
#: ``keras.losses.Dice()`` on the same probabilities.
EPS = 1e-7

# PROBABILITY_CLIP (probabilities are clipped to [PROBABILITY_CLIP, 1 - PROBABILITY_CLIP] before
# their logit is taken, from_logits=False in PrecisionAtRecallLoss) and SURROGATES come from
# companion._common, shared with companion.keras.precision.


def _check_shapes(input: Tensor, target: Tensor, class_index: int | None) -> None:
    if class_index is None:
        _check_same_shape(input, target)
        return
    if input.dim() < 2 or target.shape != input.shape[:1] + input.shape[2:]:
        raise ValueError(
            "with class_index, input must be (N, C, *) and target hold class indices (N, *), got "
            f"input {tuple(input.shape)} and target {tuple(target.shape)}"
        )
    if input.shape[1] < 2:
        raise ValueError(
            f"with class_index, input needs C >= 2 classes, got input {tuple(input.shape)}"
        )
    if class_index >= input.shape[1]:
        raise ValueError(
            f"class_index must be < C = {input.shape[1]} for input {tuple(input.shape)}, "
            f"got {class_index}"
        )


def _positive_probability(
    input: Tensor, target: Tensor, from_logits: bool, class_index: int | None
) -> tuple[Tensor, Tensor]:
    """The probability of the positive class and the 0/1 (or soft) target, same shape."""
    _check_shapes(input, target, class_index)
    # Half-precision sums of many probabilities lose digits; accumulate in float32 at least.
    input = input.to(_working_dtype(input.dtype))
    if class_index is None:
        probability = torch.sigmoid(input) if from_logits else input
        return probability, target.to(input.dtype)
    if from_logits:
        probability = torch.softmax(input, dim=1).select(1, class_index)
    else:
        probability = input.select(1, class_index)
    return probability, (target == class_index).to(input.dtype)


def _positive_logit(
    input: Tensor, target: Tensor, from_logits: bool, class_index: int | None
) -> tuple[Tensor, Tensor]:
    """The log-odds ``log(p / (1 - p))`` of the positive class and the target, same shape."""
    _check_shapes(input, target, class_index)
    # Half-precision sums of many probabilities lose digits; accumulate in float32 at least.
    input = input.to(_working_dtype(input.dtype))
    if class_index is None:
        positive = target.to(input.dtype)
        if from_logits:
            return input, positive
        probability = input
    else:
        positive = (target == class_index).to(input.dtype)
        if from_logits:
            # softmax_k = sigmoid(x_k - logsumexp_{j != k} x_j): the class against the rest,
            # in log-space, so that logits of +-1e4 stay finite.
            is_class = torch.zeros_like(input, dtype=torch.bool)
            is_class.select(1, class_index).fill_(True)
            rest = torch.logsumexp(input.masked_fill(is_class, -math.inf), dim=1)
            return input.select(1, class_index) - rest, positive
        probability = input.select(1, class_index)
    probability = probability.clamp(PROBABILITY_CLIP, 1.0 - PROBABILITY_CLIP)
    return torch.log(probability) - torch.log1p(-probability), positive


def soft_precision(
    input: Tensor,
    target: Tensor,
    *,
    from_logits: bool = True,
    class_index: int | None = None,
    eps: float = EPS,
) -> Tensor:
    """Soft precision: the fraction of predicted probability mass that falls on positives.

    Formula, with ``p`` the predicted probability of the positive class and ``t`` the
    target (0 or 1, soft labels in ``[0, 1]`` allowed), summed over every element of the
    batch::

        soft_precision = sum(p * t) / (sum(p) + eps)

    With hard predictions (``p`` in {0, 1}) this is ``TP / (TP + FP)``. The batch is pooled:
    precision does not decompose into a mean over samples, so there is no ``reduction``.
    All-zero predictions give ``0`` (not NaN) thanks to ``eps``.

    As a loss (``1 - soft_precision``) it has a degenerate optimum: a model that gives
    probability 1 to a single sure positive and 0 to everything else scores 1, whatever it
    misses. Its gradient is ``(t_i - P) / (sum(p) + eps)`` for ``p_i``, so every negative is
    pushed down and positives are pushed up less and less as ``P`` approaches 1.

    Args:
        input: logits (default) or probabilities; any shape ``(*)``, or ``(N, C, *)`` with
            ``class_index``.
        target: 0/1 targets of ``input``'s shape, or class indices ``(N, *)`` with
            ``class_index``.
        from_logits: ``True`` (default) to apply a sigmoid (softmax over dim 1 with
            ``class_index``) to ``input``; ``False`` if ``input`` holds probabilities.
        class_index: ``None`` for a binary problem, or the class counted as positive
            (softmax over ``C``, then that class against the rest).
        eps: the term added to the denominator, ``>= 0``; default ``1e-7``.

    Returns:
        A scalar tensor in ``[0, 1)``, of ``input``'s dtype.

    Raises:
        ValueError: if the shapes do not match (the message names both), if ``class_index``
            is not an int in ``[0, C)``, or if ``eps`` is negative or not finite.

    References:
        Precision and recall: van Rijsbergen (1979), *Information Retrieval*, chapter 7.

    Example:
        >>> t = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0])
        >>> p = torch.tensor([0.9, 0.6, 0.4, 0.2, 0.1], dtype=torch.float64)
        >>> round(soft_precision(p, t, from_logits=False, eps=0.0).item(), 6)  # 1.3 / 2.2
        0.590909
        >>> logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 3.0, 0.0]])
        >>> round(soft_precision(logits, torch.tensor([0, 1]), class_index=1).item(), 6)
        0.888442
    """
    class_index = _check_class_index(class_index)
    eps = _check_number("eps", eps)
    probability, positive = _positive_probability(input, target, from_logits, class_index)
    result = (probability * positive).sum() / (probability.sum() + eps)
    return result.to(input.dtype)


def soft_recall(
    input: Tensor,
    target: Tensor,
    *,
    from_logits: bool = True,
    class_index: int | None = None,
    eps: float = EPS,
) -> Tensor:
    """Soft recall: the fraction of the positives' mass that the predictions recover.

    Formula, with ``p`` and ``t`` as in :func:`soft_precision`, summed over the batch::

        soft_recall = sum(p * t) / (sum(t) + eps)

    With hard predictions this is ``TP / (TP + FN)``. A batch without positives gives ``0``
    (not NaN) thanks to ``eps``. On its own it is maximized by predicting everything
    positive.

    Args:
        input: logits (default) or probabilities; any shape ``(*)``, or ``(N, C, *)`` with
            ``class_index``.
        target: 0/1 targets of ``input``'s shape, or class indices ``(N, *)`` with
            ``class_index``.
        from_logits: ``True`` (default) if ``input`` holds logits, ``False`` for
            probabilities.
        class_index: ``None`` for a binary problem, or the class counted as positive.
        eps: the term added to the denominator, ``>= 0``; default ``1e-7``.

    Returns:
        A scalar tensor in ``[0, 1]``, of ``input``'s dtype.

    Raises:
        ValueError: if the shapes do not match (the message names both), if ``class_index``
            is not an int in ``[0, C)``, or if ``eps`` is negative or not finite.

    References:
        van Rijsbergen (1979), *Information Retrieval*, chapter 7.

    Example:
        >>> t = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0])
        >>> p = torch.tensor([0.9, 0.6, 0.4, 0.2, 0.1], dtype=torch.float64)
        >>> round(soft_recall(p, t, from_logits=False, eps=0.0).item(), 6)  # 1.3 / 2
        0.65
    """
    class_index = _check_class_index(class_index)
    eps = _check_number("eps", eps)
    probability, positive = _positive_probability(input, target, from_logits, class_index)
    result = (probability * positive).sum() / (positive.sum() + eps)
    return result.to(input.dtype)


def soft_fbeta_loss(
    input: Tensor,
    target: Tensor,
    *,
    beta: float = 1.0,
    from_logits: bool = True,
    class_index: int | None = None,
    eps: float = EPS,
) -> Tensor:
    """One minus the soft F-beta score, pooled over the batch.

    Formula, with soft counts ``TP = sum(p t)``, ``FN = sum((1 - p) t)``,
    ``FP = sum(p (1 - t))`` over every element of the batch::

        F_beta = (1 + beta**2) TP / ((1 + beta**2) TP + beta**2 FN + FP + eps)
               = (1 + beta**2) TP / (beta**2 sum(t) + sum(p) + eps)
        loss   = 1 - F_beta

    The two denominators are equal for every ``p`` and ``t``; the second is the one
    computed. ``beta > 1`` weighs recall more, ``beta < 1`` precision more. For
    ``beta = 1`` the loss is ``1 - 2 sum(p t) / (sum(p) + sum(t) + eps)``, the soft Dice
    loss, equal to ``keras.losses.Dice()`` (which adds ``keras.backend.epsilon() = 1e-7``)
    on the same probabilities. F-beta does not decompose over samples, hence no
    ``reduction``. A batch without positives gives loss 1 with zero gradient, whatever the
    predictions (also when they are all 0): train on batches that contain positives.

    Args:
        input: logits (default) or probabilities; any shape ``(*)``, or ``(N, C, *)`` with
            ``class_index``.
        target: 0/1 targets of ``input``'s shape, or class indices ``(N, *)`` with
            ``class_index``.
        beta: the weight of recall relative to precision, a finite number ``> 0``.
        from_logits: ``True`` (default) if ``input`` holds logits, ``False`` for
            probabilities.
        class_index: ``None`` for a binary problem, or the class counted as positive.
        eps: the term added to the denominator, ``>= 0``; default ``1e-7``.

    Returns:
        A scalar tensor in ``[0, 1]``, of ``input``'s dtype.

    Raises:
        ValueError: if the shapes do not match (the message names both), if ``beta <= 0``,
            if ``class_index`` is not an int in ``[0, C)`` or ``eps`` is negative.

    References:
        van Rijsbergen (1979), *Information Retrieval*, chapter 7 (the F-measure); Lipton,
        Elkan and Naryanaswamy (2014) on thresholds that maximize F1.

    Example:
        >>> t = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0])
        >>> p = torch.tensor([0.9, 0.6, 0.4, 0.2, 0.1], dtype=torch.float64)
        >>> round(soft_fbeta_loss(p, t, from_logits=False, eps=0.0).item(), 6)  # 1 - 2.6/4.2
        0.380952
        >>> round(soft_fbeta_loss(p, t, beta=2.0, from_logits=False, eps=0.0).item(), 6)
        0.362745
    """
    beta = _check_beta(beta)
    class_index = _check_class_index(class_index)
    eps = _check_number("eps", eps)
    probability, positive = _positive_probability(input, target, from_logits, class_index)
    beta2 = beta * beta
    true_positives = (probability * positive).sum()
    denominator = beta2 * positive.sum() + probability.sum() + eps
    result = 1.0 - (1.0 + beta2) * true_positives / denominator
    return result.to(input.dtype)


class SoftFBetaLoss(nn.Module):
    """One minus the soft F-beta score as a module; see :func:`soft_fbeta_loss`.

    Shape:
        - input: ``(*)`` logits or probabilities, or ``(N, C, *)`` with ``class_index``.
        - target: ``(*)``, or class indices ``(N, *)`` with ``class_index``.
        - output: a scalar (the batch is pooled).

    Args:
        beta: the weight of recall relative to precision, a finite number ``> 0``.
        from_logits: ``True`` (default) if ``input`` holds logits, ``False`` for
            probabilities.
        class_index: ``None`` for a binary problem, or the class counted as positive.
        eps: the term added to the denominator, ``>= 0``; default ``1e-7``.

    Raises:
        ValueError: for a ``beta``, ``class_index`` or ``eps`` that
            :func:`soft_fbeta_loss` rejects, at construction; for mismatched shapes, in
            ``forward``.

    Example:
        >>> criterion = SoftFBetaLoss(beta=1.0)
        >>> logits = torch.tensor([2.0, -1.0, 0.5, -3.0])
        >>> round(criterion(logits, torch.tensor([1.0, 0.0, 1.0, 0.0])).item(), 6)
        0.212877
    """

    def __init__(
        self,
        beta: float = 1.0,
        *,
        from_logits: bool = True,
        class_index: int | None = None,
        eps: float = EPS,
    ) -> None:
        super().__init__()
        self.beta = _check_beta(beta)
        self.from_logits = bool(from_logits)
        self.class_index = _check_class_index(class_index)
        self.eps = _check_number("eps", eps)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return soft_fbeta_loss(
            input,
            target,
            beta=self.beta,
            from_logits=self.from_logits,
            class_index=self.class_index,
            eps=self.eps,
        )

    def extra_repr(self) -> str:
        return (
            f"beta={self.beta}, from_logits={self.from_logits}, "
            f"class_index={self.class_index}, eps={self.eps}"
        )


class _GradientAscent(torch.autograd.Function):
    """The identity forward; the negated gradient backward.

    A parameter passed through it is descended by the loss's gradient with the sign flipped,
    that is ascended, by the same ``optimizer.step()`` that descends the model's weights.
    """

    @staticmethod
    def forward(ctx, multiplier: Tensor) -> Tensor:
        # A copy, not the parameter itself: nothing in the graph then holds the parameter,
        # so projecting it in place before the next forward is safe.
        return multiplier.clone()

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> Tensor:
        return -grad_output


def _surrogate(logit: Tensor, surrogate: str) -> Tensor:
    """An upper bound of the 0-1 loss ``1[logit <= 0]``, element-wise."""
    if surrogate == "hinge":
        return F.relu(1.0 - logit)
    # log2(1 + exp(-z)) is 1 at z = 0, so it bounds the 0-1 loss from above; softplus keeps
    # it finite for logits of +-1e4.
    return F.softplus(-logit) / math.log(2.0)


class PrecisionAtRecallLoss(nn.Module):
    """Maximize precision subject to recall >= ``target_recall`` (Eban et al., 2017).

    The problem ``max_f precision(f) s.t. recall(f) >= alpha`` (``alpha = target_recall``)
    is, at a recall pinned to ``alpha``, ``min_f FP(f) s.t. TP(f) >= alpha |Y+|``. Eban et
    al. bound both counts with a surrogate ``l`` of the 0-1 loss (their building-block
    bounds ``tp_l <= TP`` and ``fp_u >= FP``)::

        tp_l = sum_{i in Y+} (1 - l(z_i))      fp_u = sum_{i in Y-} l(-z_i)

    where ``z`` is the logit of the positive class and ``l`` is the hinge
    ``max(0, 1 - z)`` or the cross-entropy in bits ``log2(1 + exp(-z))``, both ``>= 1[z <= 0]``.
    Their Lagrangian of ``min fp_u s.t. tp_l >= alpha |Y+|``, with multiplier
    ``lambda >= 0``, divided here by the number of elements ``N``, is what this module
    returns::

        L(f, lambda) = (1/N) [ sum_{Y-} l(-z_i) + lambda (sum_{Y+} l(z_i) - (1 - alpha) |Y+|) ]

    to be minimized over the model and maximized over ``lambda``. Per element (for
    ``reduction="none"``) the value is ``(1 - t) l(-z) + lambda t (l(z) - (1 - alpha))``,
    so soft targets ``t`` in ``[0, 1]`` are accepted. This is the form of
    ``precision_at_recall_loss`` in TensorFlow's ``global_objectives`` library by the same
    authors (which writes the cross-entropy in nats and rescales the constant instead).

    **The ascent.** ``lambda`` is the parameter :attr:`multiplier`. In ``forward`` it passes
    through a custom autograd function that is the identity forward and negates the
    gradient backward, so ``loss.backward()`` stores ``-dL/dlambda`` in
    ``multiplier.grad`` and one ``optimizer.step()`` descends in the model's weights and
    ascends in ``lambda``: with SGD, ``lambda += lr * dL/dlambda``, where
    ``dL/dlambda = (sum_{Y+} l(z_i) - (1 - alpha) |Y+|) / N`` is the violation of the
    surrogate recall constraint. ``lambda`` grows while the surrogate recall is below
    ``alpha`` and shrinks otherwise. **Keeping lambda >= 0**: each ``forward`` first
    projects the parameter in place onto ``[0, inf)`` (``clamp_(min=0)``), which makes the
    scheme projected gradient ascent, the projection being applied just before the next
    use. Put :attr:`multiplier` in the optimizer with the model's parameters (or in its own
    parameter group with its own learning rate). Since negatives count once and positives
    ``lambda`` times, the ``lambda`` that meets the constraint grows with the class
    imbalance; a larger learning rate or ``multiplier_init`` for it gets there sooner.

    A satisfied surrogate constraint implies the true one, since ``l`` bounds the 0-1 loss
    (recall at threshold ``z = 0``, probability 0.5, is then ``>= alpha``).

    Shape:
        - input: ``(*)`` logits or probabilities, or ``(N, C, *)`` with ``class_index``.
        - target: ``(*)`` 0/1 (or soft) targets, or class indices ``(N, *)``.
        - output: a scalar for ``"mean"`` and ``"sum"``, else the shape of ``target``.

    Args:
        target_recall: ``alpha``, in the open interval ``(0, 1)``.
        surrogate: ``"cross_entropy"`` (default, ``log2(1 + exp(-z))``) or ``"hinge"``
            (``max(0, 1 - z)``).
        from_logits: ``True`` (default) if ``input`` holds logits; ``False`` for
            probabilities, which are clipped to ``[1e-7, 1 - 1e-7]`` before their logit is
            taken.
        class_index: ``None`` for a binary problem, or the class counted as positive; its
            logit against the rest is ``x_k - logsumexp_{j != k} x_j``.
        multiplier_init: the initial ``lambda``, ``>= 0``; default 1.
        reduction: ``"mean"`` (default, divide by ``N``), ``"sum"`` or ``"none"``.

    Raises:
        ValueError: if ``target_recall`` is not in ``(0, 1)``, ``surrogate`` or
            ``reduction`` unknown, ``multiplier_init`` negative, ``class_index`` not an int
            ``>= 0``, at construction; for mismatched shapes, in ``forward``.

    References:
        E. Eban, M. Schain, A. Mackey, A. Gordon, R. A. Saurous and G. Elidan (2017),
        "Scalable Learning of Non-Decomposable Objectives", AISTATS, PMLR 54: the bounds
        ``tp_l``, ``fp_u`` and the Lagrangian of precision at a fixed recall written above.

    Example:
        >>> criterion = PrecisionAtRecallLoss(target_recall=0.8, surrogate="hinge")
        >>> logits = torch.tensor([2.0, -1.0, 0.5, 0.3], requires_grad=True)
        >>> target = torch.tensor([1.0, 0.0, 1.0, 0.0])
        >>> loss = criterion(logits, target)  # (0 + 1.3 + 1 * (0 + 0.5 - 0.2 * 2)) / 4
        >>> round(loss.item(), 6)
        0.35
        >>> loss.backward()
        >>> round(criterion.multiplier.grad.item(), 6)  # -(0.5 - 0.4) / 4: ascent
        -0.025
    """

    def __init__(
        self,
        target_recall: float,
        *,
        surrogate: str = "cross_entropy",
        from_logits: bool = True,
        class_index: int | None = None,
        multiplier_init: float = 1.0,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        self.target_recall = _check_target_recall(target_recall)
        self.surrogate = _check_choice("surrogate", surrogate, SURROGATES)
        self.from_logits = bool(from_logits)
        self.class_index = _check_class_index(class_index)
        self.reduction = _check_reduction(reduction)
        multiplier_init = _check_number("multiplier_init", multiplier_init)
        #: The Lagrange multiplier ``lambda``, trained by gradient ascent.
        self.multiplier = nn.Parameter(torch.tensor(multiplier_init))

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        with torch.no_grad():
            self.multiplier.clamp_(min=0.0)
        logit, positive = _positive_logit(input, target, self.from_logits, self.class_index)
        multiplier = _GradientAscent.apply(self.multiplier).to(logit.dtype)
        negative_part = (1.0 - positive) * _surrogate(-logit, self.surrogate)
        positive_part = positive * (_surrogate(logit, self.surrogate) - (1.0 - self.target_recall))
        elementwise = negative_part + multiplier * positive_part
        if self.reduction == "mean":
            elementwise = elementwise.mean()
        elif self.reduction == "sum":
            elementwise = elementwise.sum()
        return elementwise.to(input.dtype)

    def extra_repr(self) -> str:
        return (
            f"target_recall={self.target_recall}, surrogate={self.surrogate!r}, "
            f"from_logits={self.from_logits}, class_index={self.class_index}, "
            f"reduction={self.reduction!r}"
        )
