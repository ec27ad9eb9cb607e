"""Segmentation losses for PyTorch: weighted BCE, Dice, Dice + BCE, focal, Tversky,
weighted and cost-sensitive cross-entropy, and the expected cost.

They follow ``torch.nn``'s habits: ``(input, target)`` order, logits by default,
``reduction`` in ``{"mean", "sum", "none"}``, a function (``dice_loss``) and an ``nn.Module``
(``DiceLoss``). Unlike ``torch.nn.functional``, a shape mismatch is an error, never a broadcast.

Binary losses take ``input`` of shape ``(N, *)`` (e.g. ``(N, 1, H, W)``) and a floating-point
``target`` of the same shape; per-sample quantities (Dice, Tversky) pool every non-batch axis.
Multi-class losses take logits ``(N, C, *)`` and class indices ``(N, *)``.

Logits are handled in log-space (``logsigmoid``, ``log_softmax``), so logits of +-1e4 give
finite losses and gradients. float16 and bfloat16 inputs are accepted; Dice, Tversky and focal
compute in float32 internally (a sum over a 512x512 mask overflows float16) and return the
input's dtype.

The float64 twins of these losses are in :mod:`companion.reference`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from companion._common import check_alpha as _check_alpha
from companion._common import check_number as _check_number
from companion.torch import _kernels
from companion.torch._checks import as_class_vector as _as_class_vector
from companion.torch._checks import as_cost_matrix as _as_cost_matrix
from companion.torch._checks import as_pos_weight as _as_pos_weight
from companion.torch._checks import check_binary as _check_binary
from companion.torch._checks import check_class_target as _check_class_target
from companion.torch._checks import check_reduction as _check_reduction
from companion.torch._checks import check_weight_map as _check_weight_map
from companion.torch._checks import reduce as _reduce
from companion.torch._checks import square_cost_matrix as _square_cost_matrix
from companion.torch._checks import working_dtype as _working_dtype

__all__ = [
    "CostSensitiveCrossEntropyLoss",
    "DiceBCELoss",
    "DiceLoss",
    "ExpectedCostLoss",
    "FocalLoss",
    "TverskyLoss",
    "WeightedBCELoss",
    "WeightedCrossEntropyLoss",
    "cost_sensitive_cross_entropy",
    "dice_bce_loss",
    "dice_loss",
    "expected_cost_loss",
    "focal_loss",
    "tversky_loss",
    "weighted_bce_loss",
    "weighted_cross_entropy",
]


# ------------------------------------------------------------------------------ Dice and Tversky


def _samples(input: Tensor, target: Tensor, batch: bool) -> tuple[Tensor, Tensor]:
    """Both tensors as ``(N, M)`` (or ``(1, N M)`` with ``batch``), in float32 for half input."""
    dtype = _working_dtype(input.dtype)
    rows = 1 if batch else input.shape[0]
    return input.to(dtype).reshape(rows, -1), target.to(dtype).reshape(rows, -1)


def _reduce_per_sample(loss: Tensor, input: Tensor, batch: bool, reduction: str) -> Tensor:
    loss = loss[0] if batch else _reduce(loss, reduction)
    return loss.to(input.dtype)


def dice_loss(
    input: Tensor,
    target: Tensor,
    *,
    from_logits: bool = True,
    smooth: float = 1.0,
    batch: bool = False,
    reduction: str = "mean",
    compile: bool = False,
) -> Tensor:
    """The soft Dice loss (Milletari et al., 2016), smoothed, per sample or per batch.

    Formula, with ``p = sigmoid(input)`` (or ``p = input`` when ``from_logits=False``) and
    sums over every non-batch axis of one sample::

        loss[n] = 1 - (2 * sum(p * t) + smooth) / (sum(p) + sum(t) + smooth)

    then ``"mean"``: the mean over samples; ``"sum"``: their sum; ``"none"``: shape ``(N,)``.
    With ``batch=True`` the sums run over the whole batch and a single value is returned
    whatever the reduction (the "batch Dice" of nnU-Net, Isensee et al., 2021), which lets a
    sample without positives count less. Milletari et al. square ``p`` and ``t`` in the
    denominator; this, like ``keras.losses.Dice`` and MONAI's default (``squared_pred=False``),
    does not. Dice-type losses suit highly unbalanced masks (Sudre et al., 2017).

    Edge cases: a perfect prediction gives 0. An empty target gives
    ``sum(p) / (sum(p) + smooth)``: 0 for an empty prediction, near 1 once the predicted mass
    is much larger than ``smooth``. ``keras.losses.Dice`` (``1 - 2 sum(p t) / (sum(p) +
    sum(t) + 1e-7)``, no numerator term) gives 1 for every empty target, even a perfect empty
    prediction; MONAI's ``DiceLoss`` (``smooth_nr = smooth_dr = 1e-5``) gives 0 only when
    ``sum(p)`` is far below 1e-5, near 1 otherwise. An all-positive target gives
    ``1 - (2 sum(p) + smooth) / (sum(p) + M + smooth)`` (``M`` elements): 0 when ``p = 1``.
    ``smooth`` must be > 0, so no case divides 0 by 0.

    The gradient, ``(dL/dTP * t + dL/dsum(p)) * p (1 - p)`` per element with per-sample
    factors, comes from a hand-written backward, which is not twice differentiable.
    ``compile=True`` runs the forward and the backward through ``torch.compile``, with the
    same values and gradients up to rounding: the first call for each input shape compiles
    (seconds to tens of seconds on CPU; ``benchmarks/segmentation_losses.py`` times both
    paths), and ``torch.compile``'s recompilation limit applies to many distinct shapes.

    Args:
        input: logits (or probabilities), shape ``(N, *)``, floating point.
        target: targets in [0, 1], the shape of ``input``, floating point.
        from_logits: whether ``input`` holds logits (default) or probabilities.
        smooth: added to numerator and denominator, finite and > 0.
        batch: pool the whole batch into one score.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``, over samples.
        compile: run the forward and the backward through ``torch.compile``.

    Returns:
        A scalar, or shape ``(N,)`` for ``"none"`` without ``batch``; in ``input``'s dtype
        (computed in float32 for float16 and bfloat16 input).

    Raises:
        ValueError: if the shapes differ (the message names both), ``target`` is not floating
            point, ``input`` is a scalar, ``smooth`` is not > 0 or ``reduction`` is unknown.
        RuntimeError: in a backward with ``create_graph=True`` (on either path).

    Example:
        >>> target = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
        >>> probabilities = torch.tensor([[1.0, 0.5, 0.0, 0.5], [0.0, 0.0, 0.0, 0.0]])
        >>> dice_loss(probabilities, target, from_logits=False, reduction="none")
        tensor([0.2000, 0.0000])
        >>> round(dice_loss(probabilities, target, from_logits=False, batch=True).item(), 4)
        0.2
    """
    smooth = _check_number("smooth", smooth, strict=True)
    _check_reduction(reduction)
    _check_binary(input, target, per_sample=True)
    samples, targets = _samples(input, target, batch)
    loss = _kernels.overlap_loss(
        samples, targets, bool(from_logits), _kernels.dice_terms, (smooth,), bool(compile)
    )
    return _reduce_per_sample(loss, input, batch, reduction)


def tversky_loss(
    input: Tensor,
    target: Tensor,
    *,
    alpha: float = 0.5,
    beta: float = 0.5,
    from_logits: bool = True,
    smooth: float = 1.0,
    batch: bool = False,
    reduction: str = "mean",
    compile: bool = False,
) -> Tensor:
    """The Tversky loss (Salehi et al., 2017), per sample or per batch.

    Formula, with ``p = sigmoid(input)`` (or ``p = input``) and sums over every non-batch
    axis of one sample::

        TP = sum(p * t),  FP = sum(p * (1 - t)),  FN = sum((1 - p) * t)
        loss[n] = 1 - (TP + smooth) / (TP + alpha * FP + beta * FN + smooth)

    ``alpha`` weighs false positives and ``beta`` false negatives, as in the paper (which
    trains with ``alpha = 0.3, beta = 0.7`` to favour recall of small lesions).
    ``alpha = beta = 0.5`` is a Dice loss (smoothed differently from :func:`dice_loss`),
    ``alpha = beta = 1`` a soft Jaccard (IoU) loss. Reductions and ``batch`` as in
    :func:`dice_loss`; a perfect prediction gives 0, an empty target and empty prediction 0.
    The backward and the ``compile=True`` path are those of :func:`dice_loss`.

    ``keras.losses.Tversky`` (Keras 3.15) names its arguments the other way round in effect:
    its docstring says alpha weighs false positives, but its code multiplies alpha by
    ``sum(y_true (1 - y_pred))``, the false negatives; so ``keras.losses.Tversky(alpha=a,
    beta=b)`` equals ``tversky_loss(alpha=b, beta=a)`` here (with ``smooth`` in place of its
    ``1e-7`` in the denominator only). MONAI's ``TverskyLoss`` follows the paper (alpha on FP).

    Args:
        input: logits (or probabilities), shape ``(N, *)``, floating point.
        target: targets in [0, 1], the shape of ``input``, floating point.
        alpha: the weight of false positives, finite and >= 0.
        beta: the weight of false negatives, finite and >= 0.
        from_logits: whether ``input`` holds logits (default) or probabilities.
        smooth: added to numerator and denominator, finite and > 0.
        batch: pool the whole batch into one score.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``, over samples.
        compile: run the forward and the backward through ``torch.compile``.

    Returns:
        A scalar, or shape ``(N,)`` for ``"none"`` without ``batch``; in ``input``'s dtype.

    Raises:
        ValueError: as :func:`dice_loss`, and if ``alpha`` or ``beta`` is negative.
        RuntimeError: in a backward with ``create_graph=True`` (on either path).

    Example:
        >>> target = torch.tensor([[1.0, 0.0, 0.0]])
        >>> probabilities = torch.tensor([[1.0, 1.0, 0.0]])
        >>> tversky_loss(probabilities, target, alpha=0.7, beta=0.3, from_logits=False)
        tensor(0.2593)
    """
    alpha = _check_number("alpha", alpha)
    beta = _check_number("beta", beta)
    smooth = _check_number("smooth", smooth, strict=True)
    _check_reduction(reduction)
    _check_binary(input, target, per_sample=True)
    samples, targets = _samples(input, target, batch)
    params = (alpha, beta, smooth)
    loss = _kernels.overlap_loss(
        samples, targets, bool(from_logits), _kernels.tversky_terms, params, bool(compile)
    )
    return _reduce_per_sample(loss, input, batch, reduction)


# ------------------------------------------------------------------------ BCE and its relatives


def weighted_bce_loss(
    input: Tensor,
    target: Tensor,
    *,
    pos_weight=None,
    weight: Tensor | None = None,
    reduction: str = "mean",
) -> Tensor:
    """Binary cross-entropy with logits, a positive-class weight and a weight map.

    Formula, for each element, with ``p = sigmoid(input)``::

        loss = -weight * (pos_weight * t * log(p) + (1 - t) * log(1 - p))

    then ``"mean"``: ``sum(loss) / loss.numel()`` (the weighted sum over the number of
    elements, not over the sum of the weights); ``"sum"``; ``"none"``: ``input``'s shape.
    This is ``F.binary_cross_entropy_with_logits(input, target, weight=weight,
    pos_weight=pos_weight, reduction=reduction)``, which it calls (computed in log-space)
    after checking the shapes.

    ``pos_weight`` is the usual answer to rare positives: ``n_negative / n_positive`` makes
    both classes weigh the same in total. ``weight`` is an element-wise map, e.g. a U-Net
    border map from :func:`companion.weightmaps.unet_weight_map`. An empty target gives the
    mean of ``-log(1 - p)``, an all-positive one the mean of ``-pos_weight log p``: both finite.

    Args:
        input: logits, any shape, e.g. ``(N, 1, H, W)``, floating point (float16 and bfloat16
            included).
        target: targets in [0, 1], the shape of ``input``, floating point.
        pos_weight: a number or a tensor that broadcasts to ``input``'s shape without changing
            it (e.g. ``(C, 1, 1)`` for one weight per channel); None for 1.
        weight: element-wise weights, exactly the shape of ``input``; None for 1.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.

    Returns:
        A scalar for ``"mean"`` and ``"sum"``, else a tensor of ``input``'s shape; in
        ``input``'s dtype (``target`` and ``weight`` are cast to it).

    Raises:
        ValueError: if ``target`` or ``weight`` differs in shape from ``input`` (the message
            names both shapes), ``pos_weight`` does not broadcast to it, ``target`` is not
            floating point or ``reduction`` is unknown.

    Example:
        >>> input, target = torch.tensor([0.0, 2.0]), torch.tensor([1.0, 0.0])
        >>> weighted_bce_loss(input, target, pos_weight=3.0, reduction="none")
        tensor([2.0794, 2.1269])
    """
    _check_reduction(reduction)
    _check_binary(input, target)
    _check_weight_map("weight", weight, input.shape, "input")
    pos_weight = _as_pos_weight(pos_weight, input)
    # In input's dtype: given a float64 input and a bfloat16 target, the PyTorch function
    # alone computes and returns bfloat16.
    target = target.to(input.dtype)
    weight = None if weight is None else weight.to(input.dtype)
    return F.binary_cross_entropy_with_logits(
        input, target, weight=weight, pos_weight=pos_weight, reduction=reduction
    )


def dice_bce_loss(
    input: Tensor,
    target: Tensor,
    *,
    dice_weight: float = 1.0,
    bce_weight: float = 1.0,
    pos_weight=None,
    smooth: float = 1.0,
    reduction: str = "mean",
) -> Tensor:
    """Dice plus binary cross-entropy, from logits, per sample.

    Formula, for each sample ``n`` (sums and means over its non-batch axes)::

        loss[n] = dice_weight * dice_loss[n] + bce_weight * mean(bce[n])

    with :func:`dice_loss` (``smooth``) and :func:`weighted_bce_loss` (``pos_weight``).
    ``"none"`` returns the ``(N,)`` values; ``"mean"`` their mean, which is
    ``dice_weight * mean(dice) + bce_weight * (BCE mean over all elements)``; ``"sum"`` their
    sum. The BCE term keeps a gradient on every pixel, the Dice term counters the imbalance
    of tiny targets; edge cases are those of the two terms.

    Args:
        input: logits, shape ``(N, *)``, floating point.
        target: targets in [0, 1], the shape of ``input``, floating point.
        dice_weight: the factor of the Dice term, finite and >= 0.
        bce_weight: the factor of the BCE term, finite and >= 0.
        pos_weight: the positive-class weight of the BCE term (see :func:`weighted_bce_loss`).
        smooth: the Dice smoothing term, finite and > 0.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``, over samples.

    Returns:
        A scalar, or shape ``(N,)`` for ``"none"``; in ``input``'s dtype.

    Raises:
        ValueError: as :func:`dice_loss` and :func:`weighted_bce_loss`, and for a negative
            ``dice_weight`` or ``bce_weight``.

    Example:
        >>> dice_bce_loss(torch.zeros(1, 2), torch.tensor([[1.0, 0.0]]), reduction="none")
        tensor([1.0265])
    """
    dice_weight = _check_number("dice_weight", dice_weight)
    bce_weight = _check_number("bce_weight", bce_weight)
    _check_reduction(reduction)
    _check_binary(input, target, per_sample=True)
    pos_weight = _as_pos_weight(pos_weight, input)
    dice = dice_loss(input, target, smooth=smooth, reduction=reduction)
    target = target.to(input.dtype)  # as in weighted_bce_loss
    if reduction == "none":
        bce = F.binary_cross_entropy_with_logits(
            input, target, pos_weight=pos_weight, reduction="none"
        )
        return dice_weight * dice + bce_weight * bce.reshape(input.shape[0], -1).mean(1)
    # Every sample has the same number of elements: the mean of the per-sample means is the
    # overall mean, which the fused kernel computes without an input-sized output.
    bce = F.binary_cross_entropy_with_logits(input, target, pos_weight=pos_weight)
    if reduction == "sum":
        bce = bce * input.shape[0]
    return dice_weight * dice + bce_weight * bce


def focal_loss(
    input: Tensor,
    target: Tensor,
    *,
    gamma: float = 2.0,
    alpha: float | None = None,
    reduction: str = "mean",
) -> Tensor:
    """The binary focal loss from logits (Lin et al., 2017), element-wise.

    Formula, for each element, with ``p = sigmoid(input)``::

        p_t = p * t + (1 - p) * (1 - t)
        alpha_t = alpha * t + (1 - alpha) * (1 - t)        (no alpha term if alpha is None)
        loss = alpha_t * (1 - p_t)**gamma * bce(input, t)

    then ``"mean"``, ``"sum"`` or ``"none"`` (``input``'s shape) over elements. For targets in
    {0, 1}, ``bce = -log p_t`` and this is the paper's ``-alpha_t (1 - p_t)**gamma log p_t``;
    for soft targets it is the usual generalization, ``bce = -(t log p + (1 - t) log(1 - p))``
    (torchvision's ``sigmoid_focal_loss`` and ``keras.losses.BinaryFocalCrossentropy``).
    ``gamma = 0`` with ``alpha = None`` is the binary cross-entropy. Note that ``alpha`` is the
    weight of positives: the paper's ``alpha = 0.25`` down-weights them, because the focal term
    already down-weights the many easy negatives.

    ``bce`` comes from ``F.binary_cross_entropy_with_logits`` (log-space), so logits of +-1e4
    give finite values and gradients, also for ``gamma < 1``. ``1 - p_t`` is computed as
    ``p (1 - 2 t) + t``, which loses relative accuracy only where ``1 - p_t`` is far below
    the float resolution, where the loss is negligible anyway. The backward is hand-written
    and not twice differentiable. Empty and all-positive targets are ordinary inputs here (a
    per-element loss).

    Args:
        input: logits, any shape, floating point.
        target: targets in [0, 1], the shape of ``input``, floating point.
        gamma: the focusing exponent, finite and >= 0.
        alpha: the weight of positives in [0, 1], or None.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.

    Returns:
        A scalar for ``"mean"`` and ``"sum"``, else a tensor of ``input``'s shape; in
        ``input``'s dtype (computed in float32 for float16 and bfloat16).

    Raises:
        ValueError: if the shapes differ (the message names both), ``target`` is not floating
            point, ``gamma`` is negative, ``alpha`` is outside [0, 1] or ``reduction`` is
            unknown.
        RuntimeError: in a backward with ``create_graph=True``.

    Example:
        >>> input, target = torch.zeros(2), torch.tensor([1.0, 0.0])
        >>> focal_loss(input, target, gamma=2.0, alpha=0.25, reduction="none")
        tensor([0.0433, 0.1300])
    """
    gamma = _check_number("gamma", gamma)
    alpha = _check_alpha(alpha)
    _check_reduction(reduction)
    _check_binary(input, target)
    dtype = _working_dtype(input.dtype)
    loss = _kernels.focal_elementwise(input.to(dtype), target.to(dtype), gamma, alpha)
    return _reduce(loss, reduction).to(input.dtype)


# ----------------------------------------------------------------------------- cross-entropies


def weighted_cross_entropy(
    input: Tensor,
    target: Tensor,
    *,
    class_weights=None,
    weight_map: Tensor | None = None,
    reduction: str = "mean",
) -> Tensor:
    """Cross-entropy from logits, weighted per class and per pixel (a U-Net weight map).

    Formula, for each pixel ``i`` with class index ``y_i``::

        w_i = class_weights[y_i] * weight_map[i]
        loss_i = -w_i * log_softmax(input)[y_i]

    then ``"mean"``: ``sum(loss_i) / sum(w_i)``, the weighted mean, so that with class weights
    only it equals ``F.cross_entropy(input, target, weight=class_weights)``; ``"sum"``:
    ``sum(loss_i)``; ``"none"``: the ``loss_i``, shape ``(N, *)``. If every weight is 0,
    ``"mean"`` is 0 / 0 = NaN, as in ``F.cross_entropy``. Computed with ``log_softmax``
    (``F.cross_entropy``), so logits of +-1e4 are fine. For the weight map of
    Ronneberger et al. (2015), see :func:`companion.weightmaps.unet_weight_map`; for
    balancing class weights, :func:`companion.weightmaps.balanced_class_weights`.

    Args:
        input: logits, shape ``(N, C, *)``, floating point (float16 and bfloat16 included).
        target: class indices in ``[0, C)``, shape ``(N, *)``, an integer dtype.
        class_weights: one weight per class, shape ``(C,)`` (a tensor or a sequence); None
            for 1.
        weight_map: per-pixel weights, the shape of ``target``; None for 1.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.

    Returns:
        A scalar for ``"mean"`` and ``"sum"``, else a tensor of ``target``'s shape.

    Raises:
        ValueError: if ``target`` is not integer or not shaped as ``input`` without axis 1,
            ``class_weights`` has not ``C`` entries, ``weight_map`` differs in shape from
            ``target``, or ``reduction`` is unknown. Out-of-range class indices raise
            PyTorch's own error.

    Example:
        >>> input, target = torch.zeros(1, 2, 2), torch.tensor([[0, 1]])
        >>> weighted_cross_entropy(input, target, class_weights=[1.0, 3.0], reduction="none")
        tensor([[0.6931, 2.0794]])
    """
    _check_reduction(reduction)
    target = _check_class_target(input, target)
    _check_weight_map("weight_map", weight_map, target.shape, "target")
    if class_weights is not None:
        class_weights = _as_class_vector("class_weights", class_weights, input)
    if weight_map is None:
        return F.cross_entropy(input, target, weight=class_weights, reduction=reduction)
    nll = F.cross_entropy(input, target, reduction="none")
    weight_map = weight_map.to(nll.dtype)
    weights = weight_map if class_weights is None else class_weights[target] * weight_map
    loss = nll * weights
    if reduction == "mean":
        # float32 sums for half input: a sum over a batch of masks overflows float16.
        accumulate = _working_dtype(loss.dtype)
        return (loss.sum(dtype=accumulate) / weights.sum(dtype=accumulate)).to(loss.dtype)
    return _reduce(loss, reduction)


def cost_sensitive_cross_entropy(
    input: Tensor,
    target: Tensor,
    cost_matrix,
    *,
    reduction: str = "mean",
    compile: bool = False,
) -> Tensor:
    """Cross-entropy per pixel times the cost of the predicted class given the true one.

    Formula, for each pixel ``i`` with class index ``y_i``::

        loss_i = cost_matrix[y_i, argmax(input_i)] * -log_softmax(input)_i[y_i]

    then ``"mean"``: the plain mean over pixels (not over the costs); ``"sum"``; ``"none"``:
    shape ``(N, *)``. The cost is a constant weight: no gradient flows through ``argmax``, so
    a pixel's gradient is its cross-entropy gradient scaled by the cost of the mistake it is
    making now. A cost matrix of ones gives ``F.cross_entropy``; with zeros on the diagonal,
    correctly classified pixels stop contributing.

    This is what the widely copied Keras loss that loops over every (true, predicted) pair
    of classes computes, vectorized (one gather per pixel instead of ``C**2`` passes over the
    batch). Where several classes tie for the maximum, ``argmax`` takes the first; the loop
    instead sums the costs of all tied classes (ties have probability 0 for continuous logits
    but occur with all-equal logits, e.g. a zero-initialized last layer).

    The gradient, ``cost * (softmax(input) - onehot(target))`` per pixel, comes from a
    hand-written backward, which is not twice differentiable. ``compile=True`` runs the
    forward and the backward through ``torch.compile``, with the same values and gradients up
    to rounding; the first call for each input shape compiles (seconds on CPU;
    ``benchmarks/segmentation_losses.py`` times both paths).

    Args:
        input: logits, shape ``(N, C, *)``, floating point.
        target: class indices in ``[0, C)``, shape ``(N, *)``, an integer dtype.
        cost_matrix: ``cost_matrix[true, predicted]``, shape ``(C, C)`` (a tensor or nested
            sequence); its diagonal is the cost of a correct prediction.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.
        compile: run the forward and the backward through ``torch.compile``.

    Returns:
        A scalar for ``"mean"`` and ``"sum"``, else a tensor of ``target``'s shape.

    Raises:
        ValueError: if ``target`` is not integer or not shaped as ``input`` without axis 1,
            ``cost_matrix`` is not square or not ``(C, C)``, or ``reduction`` is unknown.
        RuntimeError: in a backward with ``create_graph=True`` (on either path).

    Example:
        >>> cost = [[0.0, 1.0], [5.0, 0.0]]
        >>> input, target = torch.tensor([[2.0, 0.0], [0.0, 2.0]]), torch.tensor([1, 1])
        >>> cost_sensitive_cross_entropy(input, target, cost, reduction="none")
        tensor([10.6346,  0.0000])
    """
    _check_reduction(reduction)
    target = _check_class_target(input, target)
    cost_matrix = _as_cost_matrix(cost_matrix, input)
    loss = _kernels.cost_sensitive_nll(input, target, cost_matrix.detach(), bool(compile))
    return _reduce(loss, reduction)


def expected_cost_loss(
    input: Tensor,
    target: Tensor,
    cost_matrix,
    *,
    reduction: str = "mean",
) -> Tensor:
    """The expected cost of each pixel's prediction under the predicted distribution.

    Formula, for each pixel ``i`` with class index ``y_i`` and ``p = softmax(input)`` over the
    class axis::

        loss_i = sum_k p_ik * cost_matrix[y_i, k]

    then ``"mean"`` over pixels, ``"sum"``, or ``"none"`` (shape ``(N, *)``). This is the
    differentiable counterpart of :func:`cost_sensitive_cross_entropy`: instead of weighting
    the cross-entropy by the cost of the ``argmax`` (a constant, since ``argmax`` has no
    gradient), it averages the costs over the classes the model predicts, so the cost matrix
    itself shapes the gradient, ``dloss_i/dinput_ij = p_ij * (cost_matrix[y_i, j] -
    loss_i)``: probability moves from classes costlier than the current expectation to
    cheaper ones. With ``cost_matrix = 1 - eye(C)`` it is the expected error ``1 - p_iy``.

    The loss is bounded (between the smallest and largest cost of the true class's row) and
    saturates: a confidently wrong pixel has ``p`` near one-hot and a gradient near 0, which
    makes it a poor loss to train from scratch alone. It is usually added to a cross-entropy,
    ``F.cross_entropy(input, target) + weight * expected_cost_loss(input, target, cost)``, or
    used to fine-tune. Computed with ``softmax`` (float32 for half-precision input), so logits
    of +-1e4 are fine.

    Args:
        input: logits, shape ``(N, C, *)``, floating point.
        target: class indices in ``[0, C)``, shape ``(N, *)``, an integer dtype.
        cost_matrix: ``cost_matrix[true, predicted]``, shape ``(C, C)`` (a tensor or nested
            sequence); its diagonal is the cost of a correct prediction.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.

    Returns:
        A scalar for ``"mean"`` and ``"sum"``, else a tensor of ``target``'s shape; in
        ``input``'s dtype.

    Raises:
        ValueError: if ``target`` is not integer or not shaped as ``input`` without axis 1,
            ``cost_matrix`` is not square or not ``(C, C)``, or ``reduction`` is unknown.

    Example:
        >>> cost = [[0.0, 1.0], [5.0, 0.0]]
        >>> input, target = torch.tensor([[2.0, 0.0], [0.0, 2.0]]), torch.tensor([1, 1])
        >>> expected_cost_loss(input, target, cost, reduction="none")
        tensor([4.4040, 0.5960])
    """
    _check_reduction(reduction)
    target = _check_class_target(input, target)
    cost_matrix = _as_cost_matrix(cost_matrix, input)
    dtype = _working_dtype(input.dtype)
    prob = torch.softmax(input, 1, dtype=dtype)
    # The row of each pixel's true class, moved to the class axis: (N, C, *). Autograd keeps
    # prob and rows, two input-sized tensors, for the backward.
    rows = cost_matrix.to(dtype)[target].movedim(-1, 1)
    loss = (prob * rows).sum(1)
    return _reduce(loss, reduction).to(input.dtype)


# ------------------------------------------------------------------------------------- modules


class WeightedBCELoss(nn.Module):
    """Weighted binary cross-entropy with logits; see :func:`weighted_bce_loss`.

    Like ``torch.nn.BCEWithLogitsLoss(pos_weight=...)``, to which it is equal, but shapes must
    match exactly and ``forward`` takes the element-wise ``weight`` map (which usually changes
    from batch to batch) instead of fixing it at construction.

    Shape:
        - input: ``(*)``, e.g. ``(N, 1, H, W)``, logits.
        - target, weight: ``(*)``, the shape of ``input``.
        - output: a scalar for ``"mean"`` and ``"sum"``, ``(*)`` for ``"none"``.

    Args:
        pos_weight: the positive-class weight, a number or a tensor broadcasting to
            ``input``; stored as a buffer (moves with ``.to(device)``).
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.

    Example:
        >>> criterion = WeightedBCELoss(pos_weight=3.0, reduction="sum")
        >>> criterion(torch.tensor([0.0, 2.0]), torch.tensor([1.0, 0.0]))
        tensor(4.2064)
    """

    def __init__(self, pos_weight=None, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = _check_reduction(reduction)
        self.register_buffer(
            "pos_weight", None if pos_weight is None else torch.as_tensor(pos_weight)
        )

    def forward(self, input: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        return weighted_bce_loss(
            input, target, pos_weight=self.pos_weight, weight=weight, reduction=self.reduction
        )

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


class DiceLoss(nn.Module):
    """The soft Dice loss; see :func:`dice_loss` for the formula and the edge cases.

    Shape:
        - input: ``(N, *)``, e.g. ``(N, 1, H, W)``, logits (or probabilities).
        - target: ``(N, *)``, the shape of ``input``.
        - output: a scalar, or ``(N,)`` for ``"none"`` without ``batch``.

    Args:
        from_logits: whether ``input`` holds logits (default) or probabilities.
        smooth: added to numerator and denominator, finite and > 0.
        batch: pool the whole batch into one score.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``, over samples.
        compile: use the ``torch.compile`` path of :func:`dice_loss`; stored as
            ``use_compile``, since ``compile()`` is ``nn.Module.compile``, which compiles the
            whole module.

    Example:
        >>> criterion = DiceLoss(from_logits=False)
        >>> criterion(torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0]]))
        tensor(0.)
    """

    def __init__(
        self,
        from_logits: bool = True,
        smooth: float = 1.0,
        batch: bool = False,
        reduction: str = "mean",
        compile: bool = False,
    ) -> None:
        super().__init__()
        self.from_logits, self.batch = bool(from_logits), bool(batch)
        self.smooth = _check_number("smooth", smooth, strict=True)
        self.reduction = _check_reduction(reduction)
        self.use_compile = bool(compile)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return dice_loss(
            input,
            target,
            from_logits=self.from_logits,
            smooth=self.smooth,
            batch=self.batch,
            reduction=self.reduction,
            compile=self.use_compile,
        )

    def extra_repr(self) -> str:
        return (
            f"from_logits={self.from_logits}, smooth={self.smooth}, batch={self.batch}, "
            f"reduction={self.reduction!r}, compile={self.use_compile}"
        )


class DiceBCELoss(nn.Module):
    """Dice plus binary cross-entropy, from logits; see :func:`dice_bce_loss`.

    Shape:
        - input: ``(N, *)``, logits.
        - target: ``(N, *)``, the shape of ``input``.
        - output: a scalar, or ``(N,)`` for ``"none"``.

    Args:
        dice_weight: the factor of the Dice term, finite and >= 0.
        bce_weight: the factor of the BCE term, finite and >= 0.
        pos_weight: the positive-class weight of the BCE term; stored as a buffer.
        smooth: the Dice smoothing term, finite and > 0.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``, over samples.

    Example:
        >>> criterion = DiceBCELoss(dice_weight=0.5)
        >>> criterion(torch.zeros(1, 2), torch.tensor([[1.0, 0.0]]))
        tensor(0.8598)
    """

    def __init__(
        self,
        dice_weight: float = 1.0,
        bce_weight: float = 1.0,
        pos_weight=None,
        smooth: float = 1.0,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        self.dice_weight = _check_number("dice_weight", dice_weight)
        self.bce_weight = _check_number("bce_weight", bce_weight)
        self.smooth = _check_number("smooth", smooth, strict=True)
        self.reduction = _check_reduction(reduction)
        self.register_buffer(
            "pos_weight", None if pos_weight is None else torch.as_tensor(pos_weight)
        )

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return dice_bce_loss(
            input,
            target,
            dice_weight=self.dice_weight,
            bce_weight=self.bce_weight,
            pos_weight=self.pos_weight,
            smooth=self.smooth,
            reduction=self.reduction,
        )

    def extra_repr(self) -> str:
        return (
            f"dice_weight={self.dice_weight}, bce_weight={self.bce_weight}, "
            f"smooth={self.smooth}, reduction={self.reduction!r}"
        )


class FocalLoss(nn.Module):
    """The binary focal loss from logits; see :func:`focal_loss`.

    Shape:
        - input: ``(*)``, e.g. ``(N, 1, H, W)``, logits.
        - target: ``(*)``, the shape of ``input``.
        - output: a scalar for ``"mean"`` and ``"sum"``, ``(*)`` for ``"none"``.

    Args:
        gamma: the focusing exponent, finite and >= 0.
        alpha: the weight of positives in [0, 1], or None.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.

    Example:
        >>> criterion = FocalLoss(gamma=0.0)
        >>> criterion(torch.zeros(2), torch.tensor([1.0, 0.0]))
        tensor(0.6931)
    """

    def __init__(
        self, gamma: float = 2.0, alpha: float | None = None, reduction: str = "mean"
    ) -> None:
        super().__init__()
        self.gamma = _check_number("gamma", gamma)
        self.alpha = _check_alpha(alpha)
        self.reduction = _check_reduction(reduction)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return focal_loss(
            input, target, gamma=self.gamma, alpha=self.alpha, reduction=self.reduction
        )

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, alpha={self.alpha}, reduction={self.reduction!r}"


class TverskyLoss(nn.Module):
    """The Tversky loss; see :func:`tversky_loss` (alpha weighs false positives).

    Shape:
        - input: ``(N, *)``, logits (or probabilities).
        - target: ``(N, *)``, the shape of ``input``.
        - output: a scalar, or ``(N,)`` for ``"none"`` without ``batch``.

    Args:
        alpha: the weight of false positives, finite and >= 0.
        beta: the weight of false negatives, finite and >= 0.
        from_logits: whether ``input`` holds logits (default) or probabilities.
        smooth: added to numerator and denominator, finite and > 0.
        batch: pool the whole batch into one score.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``, over samples.
        compile: use the ``torch.compile`` path of :func:`tversky_loss`; stored as
            ``use_compile``, as in :class:`DiceLoss`.

    Example:
        >>> criterion = TverskyLoss(alpha=0.3, beta=0.7, from_logits=False, smooth=1e-6)
        >>> criterion(torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 1.0]]))
        tensor(0.4118)
    """

    def __init__(
        self,
        alpha: float = 0.5,
        beta: float = 0.5,
        from_logits: bool = True,
        smooth: float = 1.0,
        batch: bool = False,
        reduction: str = "mean",
        compile: bool = False,
    ) -> None:
        super().__init__()
        self.alpha = _check_number("alpha", alpha)
        self.beta = _check_number("beta", beta)
        self.from_logits, self.batch = bool(from_logits), bool(batch)
        self.smooth = _check_number("smooth", smooth, strict=True)
        self.reduction = _check_reduction(reduction)
        self.use_compile = bool(compile)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return tversky_loss(
            input,
            target,
            alpha=self.alpha,
            beta=self.beta,
            from_logits=self.from_logits,
            smooth=self.smooth,
            batch=self.batch,
            reduction=self.reduction,
            compile=self.use_compile,
        )

    def extra_repr(self) -> str:
        return (
            f"alpha={self.alpha}, beta={self.beta}, from_logits={self.from_logits}, "
            f"smooth={self.smooth}, batch={self.batch}, reduction={self.reduction!r}, "
            f"compile={self.use_compile}"
        )


class WeightedCrossEntropyLoss(nn.Module):
    """Cross-entropy weighted per class and per pixel; see :func:`weighted_cross_entropy`.

    Like ``torch.nn.CrossEntropyLoss(weight=class_weights)``, to which it is equal without a
    weight map, but ``forward`` also takes a per-pixel ``weight_map`` and the ``"mean"``
    divides by the sum of the combined weights.

    Shape:
        - input: ``(N, C, *)``, logits.
        - target, weight_map: ``(N, *)``; ``target`` holds class indices.
        - output: a scalar for ``"mean"`` and ``"sum"``, ``(N, *)`` for ``"none"``.

    Args:
        class_weights: one weight per class, shape ``(C,)``, or None; stored as a buffer.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.

    Example:
        >>> criterion = WeightedCrossEntropyLoss(class_weights=[1.0, 3.0])
        >>> criterion(torch.zeros(2, 2), torch.tensor([0, 1]))
        tensor(0.6931)
    """

    def __init__(self, class_weights=None, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = _check_reduction(reduction)
        if class_weights is not None:
            class_weights = torch.as_tensor(class_weights, dtype=torch.get_default_dtype())
            if class_weights.ndim != 1:
                raise ValueError(
                    "class_weights must be one weight per class, shape (C,), got "
                    f"class_weights {tuple(class_weights.shape)}"
                )
        self.register_buffer("class_weights", class_weights)

    def forward(self, input: Tensor, target: Tensor, weight_map: Tensor | None = None) -> Tensor:
        return weighted_cross_entropy(
            input,
            target,
            class_weights=self.class_weights,
            weight_map=weight_map,
            reduction=self.reduction,
        )

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


class ExpectedCostLoss(nn.Module):
    """The expected cost of each pixel's prediction; see :func:`expected_cost_loss`.

    Shape:
        - input: ``(N, C, *)``, logits.
        - target: ``(N, *)``, class indices.
        - output: a scalar for ``"mean"`` and ``"sum"``, ``(N, *)`` for ``"none"``.

    Args:
        cost_matrix: ``cost_matrix[true, predicted]``, shape ``(C, C)``; stored as a buffer.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.

    Raises:
        ValueError: if ``cost_matrix`` is not square, at construction.

    Example:
        >>> criterion = ExpectedCostLoss([[0.0, 1.0], [5.0, 0.0]], reduction="sum")
        >>> criterion(torch.tensor([[2.0, 0.0], [0.0, 2.0]]), torch.tensor([1, 1]))
        tensor(5.0000)
    """

    def __init__(self, cost_matrix, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = _check_reduction(reduction)
        self.register_buffer("cost_matrix", _square_cost_matrix(cost_matrix))

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return expected_cost_loss(input, target, self.cost_matrix, reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"n_classes={self.cost_matrix.shape[0]}, reduction={self.reduction!r}"


class CostSensitiveCrossEntropyLoss(nn.Module):
    """Cross-entropy times the cost of each pixel's prediction; see
    :func:`cost_sensitive_cross_entropy`.

    Shape:
        - input: ``(N, C, *)``, logits.
        - target: ``(N, *)``, class indices.
        - output: a scalar for ``"mean"`` and ``"sum"``, ``(N, *)`` for ``"none"``.

    Args:
        cost_matrix: ``cost_matrix[true, predicted]``, shape ``(C, C)``; stored as a buffer.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.
        compile: use the ``torch.compile`` path of :func:`cost_sensitive_cross_entropy`;
            stored as ``use_compile``, as in :class:`DiceLoss`.

    Raises:
        ValueError: if ``cost_matrix`` is not square, at construction.

    Example:
        >>> criterion = CostSensitiveCrossEntropyLoss([[0.0, 1.0], [5.0, 0.0]], reduction="sum")
        >>> criterion(torch.tensor([[2.0, 0.0], [0.0, 2.0]]), torch.tensor([1, 1]))
        tensor(10.6346)
    """

    def __init__(self, cost_matrix, reduction: str = "mean", compile: bool = False) -> None:
        super().__init__()
        self.reduction = _check_reduction(reduction)
        self.use_compile = bool(compile)
        self.register_buffer("cost_matrix", _square_cost_matrix(cost_matrix))

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return cost_sensitive_cross_entropy(
            input, target, self.cost_matrix, reduction=self.reduction, compile=self.use_compile
        )

    def extra_repr(self) -> str:
        return (
            f"n_classes={self.cost_matrix.shape[0]}, reduction={self.reduction!r}, "
            f"compile={self.use_compile}"
        )
