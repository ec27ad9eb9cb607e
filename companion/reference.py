"""NumPy float64 ground truth: losses and their closed-form gradients.

Every loss of the package's framework sides (:mod:`companion.torch`, :mod:`companion.keras`)
is tested against its twin here. The functions are plain NumPy, compute in float64 and are
written for clarity and accuracy, not speed; they never import a deep-learning framework.

Robust regression losses of a residual ``r`` (element-wise, any shape):

=========================  ==============================================================
``huber``                  ``0.5 r**2`` for ``|r| <= delta``, ``delta (|r| - delta/2)`` else
``huber_grad``             its derivative ``clip(r, -delta, delta)``
``pseudo_huber``           ``delta**2 (sqrt(1 + (r/delta)**2) - 1)``, smooth everywhere
``pseudo_huber_grad``      its derivative ``r / sqrt(1 + (r/delta)**2)``
=========================  ==============================================================

Segmentation losses, in PyTorch's layout (``(N, C, ...)`` inputs, class indices as targets):

====================================  ====================================================
``binary_cross_entropy_with_logits``  BCE with ``pos_weight`` and a weight map, element-wise
``dice_loss``                         ``1 - (2 TP + smooth) / (P + T + smooth)`` per sample
``dice_bce_loss``                     Dice plus the per-sample mean of the BCE
``focal_loss``                        ``-alpha_t (1 - p_t)**gamma log p_t``, element-wise
``tversky_loss``                      ``1 - (TP + s) / (TP + alpha FP + beta FN + s)``
``weighted_cross_entropy``            ``class_weights[target] * weight_map * NLL`` per pixel
``cost_sensitive_cross_entropy``      ``cost_matrix[target, argmax] * NLL`` per pixel
``expected_cost``                     ``sum_k softmax(x)_k cost_matrix[target, k]`` per pixel
====================================  ====================================================
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "binary_cross_entropy_with_logits",
    "cost_sensitive_cross_entropy",
    "dice_bce_loss",
    "dice_loss",
    "expected_cost",
    "focal_loss",
    "huber",
    "huber_grad",
    "pseudo_huber",
    "pseudo_huber_grad",
    "tversky_loss",
    "weighted_cross_entropy",
]


def _check_delta(delta) -> float:
    delta = float(delta)
    if not 0.0 < delta < math.inf:
        raise ValueError(f"delta must be a finite number > 0, got {delta}")
    return delta


def huber(r, delta: float = 1.0) -> np.ndarray:
    """The Huber loss of a residual, element-wise (Huber, 1964).

    Formula::

        huber(r) = 0.5 * r**2                    if |r| <= delta
                   delta * (|r| - 0.5 * delta)   otherwise

    Quadratic near zero, linear in the tails, and continuously differentiable: both pieces
    have value ``0.5 delta**2`` and slope ``+-delta`` at ``|r| = delta``. As ``delta`` grows
    it tends to ``0.5 r**2``; ``huber(r) / delta`` tends to ``|r|`` as ``delta`` goes to 0.
    Equal to ``torch.nn.functional.huber_loss(..., reduction="none")``.

    Args:
        r: residuals, any shape.
        delta: the threshold between the quadratic and the linear piece, finite and > 0.

    Returns:
        The losses, float64, of the shape of ``r``.

    Raises:
        ValueError: if ``delta`` is not a finite number > 0.

    Example:
        >>> huber([-3.0, -1.0, 0.5, 2.0], delta=1.0).tolist()
        [2.5, 0.5, 0.125, 1.5]
    """
    delta = _check_delta(delta)
    r = np.asarray(r, dtype=np.float64)
    abs_r = np.abs(r)
    # Both pieces are finite for every finite r, so evaluating both is harmless here.
    return np.where(abs_r <= delta, 0.5 * r**2, delta * (abs_r - 0.5 * delta))


def huber_grad(r, delta: float = 1.0) -> np.ndarray:
    """The derivative of :func:`huber` with respect to ``r``, element-wise.

    Formula::

        d huber / dr = r                  if |r| <= delta
                       delta * sign(r)    otherwise
                     = clip(r, -delta, delta)

    The derivative is continuous (the pieces meet at ``|r| = delta``); the second derivative
    jumps from 1 to 0 there.

    Args:
        r: residuals, any shape.
        delta: the threshold between the quadratic and the linear piece, finite and > 0.

    Returns:
        The derivatives, float64, of the shape of ``r``.

    Raises:
        ValueError: if ``delta`` is not a finite number > 0.

    Example:
        >>> huber_grad([-3.0, -1.0, 0.5, 2.0], delta=1.0).tolist()
        [-1.0, -1.0, 0.5, 1.0]
    """
    delta = _check_delta(delta)
    return np.clip(np.asarray(r, dtype=np.float64), -delta, delta)


def pseudo_huber(r, delta: float = 1.0) -> np.ndarray:
    """The pseudo-Huber loss of a residual, element-wise (Hartley and Zisserman, 2004, appendix A6).

    Formula::

        pseudo_huber(r) = delta**2 * (sqrt(1 + (r / delta)**2) - 1)
                        = |r| * delta * a / (1 + hypot(1, a)),   a = |r| / delta

    A smooth (infinitely differentiable) approximation of :func:`huber`: ``0.5 r**2 + O(r**4)``
    near zero and ``delta |r| - delta**2 + O(1/|r|)`` in the tails. It lies below Huber
    everywhere. The second form is the one computed: it is algebraically equal, has no
    cancellation for small ``r`` and no overflow of ``r**2`` for large ``r``.

    Args:
        r: residuals, any shape.
        delta: the scale of the transition, finite and > 0.

    Returns:
        The losses, float64, of the shape of ``r``.

    Raises:
        ValueError: if ``delta`` is not a finite number > 0.

    Example:
        >>> pseudo_huber([0.0, 1.0, -3.0], delta=1.0).round(6).tolist()
        [0.0, 0.414214, 2.162278]
    """
    delta = _check_delta(delta)
    abs_r = np.abs(np.asarray(r, dtype=np.float64))
    scaled = abs_r / delta
    return abs_r * delta * (scaled / (1.0 + np.hypot(1.0, scaled)))


def pseudo_huber_grad(r, delta: float = 1.0) -> np.ndarray:
    """The derivative of :func:`pseudo_huber` with respect to ``r``, element-wise.

    Formula::

        d pseudo_huber / dr = r / sqrt(1 + (r / delta)**2)

    It is ``r`` near zero and tends to ``delta * sign(r)`` in the tails, like
    :func:`huber_grad`, but without a kink.

    Args:
        r: residuals, any shape.
        delta: the scale of the transition, finite and > 0.

    Returns:
        The derivatives, float64, of the shape of ``r``.

    Raises:
        ValueError: if ``delta`` is not a finite number > 0.

    Example:
        >>> pseudo_huber_grad([0.0, 1.0, -3.0], delta=1.0).round(6).tolist()
        [0.0, 0.707107, -0.948683]
    """
    delta = _check_delta(delta)
    r = np.asarray(r, dtype=np.float64)
    return r / np.hypot(1.0, r / delta)


# -----------------------------------------------------------------------------------------
# Segmentation losses: binary (Dice, Tversky, focal, weighted BCE) and multi-class
# (weighted and cost-sensitive cross-entropy). Inputs follow PyTorch's layout: binary
# losses take predictions and float targets of one shape (N, ...); multi-class losses take
# scores (N, C, ...) and class indices (N, ...). Per-sample quantities pool every non-batch
# axis. Each function is written from its definition, not from the framework code it checks.
# -----------------------------------------------------------------------------------------


def _same_shape(input, target) -> tuple[np.ndarray, np.ndarray]:
    input = np.asarray(input, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if input.shape != target.shape:
        raise ValueError(
            f"input and target must have the same shape, got input {input.shape} "
            f"and target {target.shape}"
        )
    return input, target


def _log_sigmoid(x: np.ndarray) -> np.ndarray:
    # log(1 / (1 + exp(-x))) = -log(exp(0) + exp(-x)): no overflow for either sign of x.
    return -np.logaddexp(0.0, -x)


def _binary_log_probabilities(input: np.ndarray, from_logits: bool):
    """``log p`` and ``log(1 - p)`` of binary predictions (logits or probabilities)."""
    if from_logits:
        return _log_sigmoid(input), _log_sigmoid(-input)
    return np.log(input), np.log1p(-input)


def _check_smooth(smooth) -> float:
    smooth = float(smooth)
    if not 0.0 < smooth < math.inf:
        raise ValueError(f"smooth must be a finite number > 0, got {smooth}")
    return smooth


def _flatten_samples(values: np.ndarray, batch: bool) -> np.ndarray:
    if values.ndim == 0:
        raise ValueError("input must have a batch axis, got a scalar")
    return values.reshape(1, -1) if batch else values.reshape(values.shape[0], -1)


def binary_cross_entropy_with_logits(
    input, target, *, pos_weight=None, weight=None, from_logits: bool = True
) -> np.ndarray:
    """Binary cross-entropy, element-wise, with a positive-class weight and a weight map.

    Formula, with ``p = sigmoid(input)`` (or ``p = input`` when ``from_logits=False``)::

        loss = -weight * (pos_weight * t * log(p) + (1 - t) * log(1 - p))

    ``log p`` is computed as ``-logaddexp(0, -input)``, so logits of any size give finite
    values. Equal to ``torch.nn.functional.binary_cross_entropy_with_logits(...,
    reduction="none")``.

    Args:
        input: logits (or probabilities), any shape.
        target: targets in [0, 1], the shape of ``input``.
        pos_weight: weight of the positive term, broadcast against ``input``; 1 if None.
        weight: element-wise weights, broadcast against ``input``; 1 if None.
        from_logits: whether ``input`` holds logits (default) or probabilities.

    Returns:
        The losses, float64, of ``input``'s shape.

    Raises:
        ValueError: if ``input`` and ``target`` differ in shape.

    Example:
        >>> binary_cross_entropy_with_logits([0.0, 2.0], [1.0, 0.0]).round(6).tolist()
        [0.693147, 2.126928]
    """
    input, target = _same_shape(input, target)
    log_p, log_not_p = _binary_log_probabilities(input, from_logits)
    pos_weight = 1.0 if pos_weight is None else np.asarray(pos_weight, dtype=np.float64)
    loss = -(pos_weight * target * log_p + (1.0 - target) * log_not_p)
    if weight is not None:
        loss = loss * np.asarray(weight, dtype=np.float64)
    return np.broadcast_to(loss, input.shape).copy()


def dice_loss(
    input, target, *, from_logits: bool = True, smooth: float = 1.0, batch: bool = False
) -> np.ndarray:
    """The soft Dice loss per sample (Milletari et al., 2016), smoothed.

    Formula, with ``p = sigmoid(input)`` (or ``p = input``) and sums over every non-batch
    axis of one sample::

        loss = 1 - (2 * sum(p * t) + smooth) / (sum(p) + sum(t) + smooth)

    (Milletari et al. square ``p`` and ``t`` in the denominator; this does not, as
    ``keras.losses.Dice`` and MONAI's ``DiceLoss`` by default.) With ``batch=True`` the sums
    run over the whole batch and one value is returned. An empty target with an empty
    prediction gives 0.

    Args:
        input: logits (or probabilities), shape ``(N, ...)``.
        target: targets in [0, 1], the shape of ``input``.
        from_logits: whether ``input`` holds logits (default) or probabilities.
        smooth: added to numerator and denominator, finite and > 0.
        batch: pool the batch into one score.

    Returns:
        float64 losses of shape ``(N,)``, or a scalar when ``batch`` is True.

    Raises:
        ValueError: if the shapes differ, ``input`` is a scalar or ``smooth`` is not > 0.

    Example:
        >>> dice_loss([[1.0, 0.0, 0.0]], [[1.0, 1.0, 0.0]], from_logits=False).tolist()
        [0.25]
    """
    smooth = _check_smooth(smooth)
    input, target = _same_shape(input, target)
    p = np.exp(_binary_log_probabilities(input, True)[0]) if from_logits else input
    p, target = _flatten_samples(p, batch), _flatten_samples(target, batch)
    numerator = 2.0 * np.sum(p * target, axis=1) + smooth
    loss = 1.0 - numerator / (np.sum(p, axis=1) + np.sum(target, axis=1) + smooth)
    return loss[0] if batch else loss


def dice_bce_loss(
    input,
    target,
    *,
    dice_weight: float = 1.0,
    bce_weight: float = 1.0,
    pos_weight=None,
    smooth: float = 1.0,
    from_logits: bool = True,
) -> np.ndarray:
    """Dice plus binary cross-entropy, per sample.

    Formula, for each sample ``n``::

        loss[n] = dice_weight * dice_loss[n] + bce_weight * mean(bce[n])

    with :func:`dice_loss` and the mean over the sample's elements of
    :func:`binary_cross_entropy_with_logits` (``pos_weight`` applies to the BCE only).

    Args:
        input: logits (or probabilities), shape ``(N, ...)``.
        target: targets in [0, 1], the shape of ``input``.
        dice_weight: the factor of the Dice term.
        bce_weight: the factor of the BCE term.
        pos_weight: weight of the positive BCE term, broadcast against ``input``.
        smooth: the Dice smoothing term, finite and > 0.
        from_logits: whether ``input`` holds logits (default) or probabilities.

    Returns:
        float64 losses of shape ``(N,)``.

    Raises:
        ValueError: as :func:`dice_loss`.

    Example:
        >>> dice_bce_loss([[0.0, 0.0]], [[1.0, 0.0]]).round(6).tolist()
        [1.026481]
    """
    dice = dice_loss(input, target, from_logits=from_logits, smooth=smooth)
    bce = binary_cross_entropy_with_logits(
        input, target, pos_weight=pos_weight, from_logits=from_logits
    )
    return dice_weight * dice + bce_weight * _flatten_samples(bce, False).mean(axis=1)


def focal_loss(
    input, target, *, gamma: float = 2.0, alpha: float | None = None, from_logits: bool = True
) -> np.ndarray:
    """The binary focal loss, element-wise (Lin et al., 2017).

    Formula, with ``p = sigmoid(input)`` (or ``p = input``)::

        p_t = p * t + (1 - p) * (1 - t)
        alpha_t = alpha * t + (1 - alpha) * (1 - t)       (1 if alpha is None)
        loss = alpha_t * (1 - p_t)**gamma * bce(p, t)

    where ``bce(p, t) = -(t log p + (1 - t) log(1 - p))`` equals ``-log p_t`` for targets in
    {0, 1}; for soft targets this is the usual generalization (as in torchvision's
    ``sigmoid_focal_loss`` and ``keras.losses.BinaryFocalCrossentropy``). ``gamma = 0`` and
    ``alpha = None`` give the binary cross-entropy.

    Args:
        input: logits (or probabilities), any shape.
        target: targets in [0, 1], the shape of ``input``.
        gamma: the focusing exponent, >= 0.
        alpha: the weight of positives (negatives get ``1 - alpha``), or None.
        from_logits: whether ``input`` holds logits (default) or probabilities.

    Returns:
        The losses, float64, of ``input``'s shape.

    Raises:
        ValueError: if the shapes differ.

    Example:
        >>> focal_loss([0.0, 0.0], [1.0, 0.0], gamma=2.0, alpha=0.25).round(6).tolist()
        [0.043322, 0.129965]
    """
    input, target = _same_shape(input, target)
    log_p, log_not_p = _binary_log_probabilities(input, from_logits)
    bce = -(target * log_p + (1.0 - target) * log_not_p)
    # 1 - p_t written as a sum of non-negative terms: no cancellation when p_t is near 1.
    one_minus_p_t = target * np.exp(log_not_p) + (1.0 - target) * np.exp(log_p)
    loss = one_minus_p_t**gamma * bce
    if alpha is not None:
        loss = loss * (alpha * target + (1.0 - alpha) * (1.0 - target))
    return loss


def tversky_loss(
    input,
    target,
    *,
    alpha: float = 0.5,
    beta: float = 0.5,
    from_logits: bool = True,
    smooth: float = 1.0,
    batch: bool = False,
) -> np.ndarray:
    """The Tversky loss per sample (Salehi et al., 2017).

    Formula, with ``p = sigmoid(input)`` (or ``p = input``) and sums over every non-batch
    axis of one sample::

        TP = sum(p * t),  FP = sum(p * (1 - t)),  FN = sum((1 - p) * t)
        loss = 1 - (TP + smooth) / (TP + alpha * FP + beta * FN + smooth)

    ``alpha`` weighs false positives and ``beta`` false negatives; ``alpha = beta = 0.5``
    gives the Dice score with a different smoothing, ``alpha = beta = 1`` the Jaccard
    (intersection-over-union) score.

    Args:
        input: logits (or probabilities), shape ``(N, ...)``.
        target: targets in [0, 1], the shape of ``input``.
        alpha: the weight of false positives.
        beta: the weight of false negatives.
        from_logits: whether ``input`` holds logits (default) or probabilities.
        smooth: added to numerator and denominator, finite and > 0.
        batch: pool the batch into one score.

    Returns:
        float64 losses of shape ``(N,)``, or a scalar when ``batch`` is True.

    Raises:
        ValueError: if the shapes differ, ``input`` is a scalar or ``smooth`` is not > 0.

    Example:
        >>> tversky_loss([[1.0, 1.0, 0.0]], [[1.0, 0.0, 0.0]], alpha=0.7, beta=0.3,
        ...              from_logits=False).round(6).tolist()
        [0.259259]
    """
    smooth = _check_smooth(smooth)
    input, target = _same_shape(input, target)
    p = np.exp(_binary_log_probabilities(input, True)[0]) if from_logits else input
    p, target = _flatten_samples(p, batch), _flatten_samples(target, batch)
    true_positives = np.sum(p * target, axis=1)
    false_positives = np.sum(p * (1.0 - target), axis=1)
    false_negatives = np.sum((1.0 - p) * target, axis=1)
    denominator = true_positives + alpha * false_positives + beta * false_negatives + smooth
    loss = 1.0 - (true_positives + smooth) / denominator
    return loss[0] if batch else loss


def _class_log_probabilities(input, target, from_logits: bool):
    """``log p`` over the class axis 1, and the class indices, checked against each other."""
    input = np.asarray(input, dtype=np.float64)
    target = np.asarray(target)
    if not np.issubdtype(target.dtype, np.integer):
        raise ValueError(f"target must hold class indices (integers), got dtype {target.dtype}")
    if input.ndim < 2 or input.shape[:1] + input.shape[2:] != target.shape:
        raise ValueError(
            "target must have the shape of input without its class axis 1, got "
            f"input {input.shape} and target {target.shape}"
        )
    if from_logits:
        shifted = input - input.max(axis=1, keepdims=True)
        return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True)), target
    return np.log(input), target


def _nll(log_probabilities: np.ndarray, target: np.ndarray) -> np.ndarray:
    return -np.take_along_axis(log_probabilities, target[:, None], axis=1)[:, 0]


def weighted_cross_entropy(
    input, target, *, class_weights=None, weight_map=None, from_logits: bool = True
) -> np.ndarray:
    """Cross-entropy per pixel, weighted by class and by a weight map.

    Formula, for each pixel with class index ``y`` and scores ``x`` over the class axis 1::

        loss = class_weights[y] * weight_map * -log(softmax(x)[y])

    (``-log(x[y])`` when ``from_logits=False``). A weighted mean, as in PyTorch's
    ``cross_entropy(weight=...)``, is ``loss.sum() / weights.sum()`` with
    ``weights = class_weights[y] * weight_map``.

    Args:
        input: logits (or probabilities), shape ``(N, C, ...)``.
        target: class indices in ``[0, C)``, shape ``(N, ...)``.
        class_weights: one weight per class, shape ``(C,)``; 1 if None.
        weight_map: per-pixel weights, the shape of ``target``; 1 if None.
        from_logits: whether ``input`` holds logits (default) or probabilities.

    Returns:
        The weighted losses, float64, of ``target``'s shape.

    Raises:
        ValueError: if ``target`` is not integer or its shape is not ``input``'s without
            axis 1.

    Example:
        >>> weighted_cross_entropy([[0.0, 0.0]], [1], class_weights=[1.0, 3.0]).round(6).tolist()
        [2.079442]
    """
    log_probabilities, target = _class_log_probabilities(input, target, from_logits)
    loss = _nll(log_probabilities, target)
    if class_weights is not None:
        loss = np.asarray(class_weights, dtype=np.float64)[target] * loss
    if weight_map is not None:
        loss = np.asarray(weight_map, dtype=np.float64) * loss
    return loss


def cost_sensitive_cross_entropy(
    input, target, cost_matrix, *, from_logits: bool = True
) -> np.ndarray:
    """Cross-entropy per pixel, times the cost of the predicted class given the true one.

    Formula, for each pixel with class index ``y`` and scores ``x`` over the class axis 1::

        loss = cost_matrix[y, argmax(x)] * -log(softmax(x)[y])

    ``argmax`` takes the first of tied maxima (NumPy's and PyTorch's rule).

    Args:
        input: logits (or probabilities), shape ``(N, C, ...)``.
        target: class indices in ``[0, C)``, shape ``(N, ...)``.
        cost_matrix: ``cost_matrix[true, predicted]``, shape ``(C, C)``.
        from_logits: whether ``input`` holds logits (default) or probabilities.

    Returns:
        The weighted losses, float64, of ``target``'s shape.

    Raises:
        ValueError: as :func:`weighted_cross_entropy`.

    Example:
        >>> cost = [[0.0, 1.0], [5.0, 0.0]]
        >>> cost_sensitive_cross_entropy([[2.0, 0.0]], [1], cost).round(6).tolist()
        [10.63464]
    """
    log_probabilities, target = _class_log_probabilities(input, target, from_logits)
    predicted = np.argmax(np.asarray(input, dtype=np.float64), axis=1)
    return np.asarray(cost_matrix, dtype=np.float64)[target, predicted] * _nll(
        log_probabilities, target
    )


def expected_cost(input, target, cost_matrix, *, from_logits: bool = True) -> np.ndarray:
    """The expected cost of each pixel's prediction under the predicted distribution.

    Formula, for each pixel with class index ``y`` and ``p = softmax(x)`` over the class
    axis 1 (``p = x`` when ``from_logits=False``)::

        loss = sum_k p[k] * cost_matrix[y, k]

    Its gradient with respect to the logits is ``p[j] * (cost_matrix[y, j] - loss)``.

    Args:
        input: logits (or probabilities), shape ``(N, C, ...)``.
        target: class indices in ``[0, C)``, shape ``(N, ...)``.
        cost_matrix: ``cost_matrix[true, predicted]``, shape ``(C, C)``.
        from_logits: whether ``input`` holds logits (default) or probabilities.

    Returns:
        The expected costs, float64, of ``target``'s shape.

    Raises:
        ValueError: as :func:`weighted_cross_entropy`, or if ``cost_matrix`` is not
            ``(C, C)``.

    Example:
        >>> cost = [[0.0, 1.0], [5.0, 0.0]]
        >>> expected_cost([[2.0, 0.0]], [1], cost).round(6).tolist()
        [4.403985]
    """
    log_probabilities, target = _class_log_probabilities(input, target, from_logits)
    cost_matrix = np.asarray(cost_matrix, dtype=np.float64)
    n_classes = log_probabilities.shape[1]
    if cost_matrix.shape != (n_classes, n_classes):
        raise ValueError(f"cost_matrix must be ({n_classes}, {n_classes}), got {cost_matrix.shape}")
    rows = np.moveaxis(cost_matrix[target], -1, 1)
    return (np.exp(log_probabilities) * rows).sum(axis=1)
