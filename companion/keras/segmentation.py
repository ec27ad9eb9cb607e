"""Segmentation losses for Keras 3, channels last, on any backend.

Weighted BCE, Dice, Dice + BCE, focal, Tversky, weighted and cost-sensitive categorical
cross-entropy, and the expected cost, each as a function and a registered
``keras.losses.Loss`` subclass, plus
:func:`~companion.keras.class_weight_to_sample_weight`. They follow ``keras.losses``' habits:
``(y_true, y_pred)`` order, probabilities by default (``from_logits=False``), and functions
that return unreduced values, which the ``Loss`` classes weight by ``sample_weight`` and
reduce (every name below is imported from :mod:`companion.keras`):

- per pixel, shape ``(N, H, W)``: the channel (last) axis reduced, as
  ``keras.losses.binary_crossentropy`` does, so that a per-pixel ``sample_weight`` (a weight
  map, or :func:`~companion.keras.class_weight_to_sample_weight`) applies:
  :func:`~companion.keras.weighted_bce`, :func:`~companion.keras.focal`,
  :func:`~companion.keras.weighted_categorical_crossentropy`,
  :func:`~companion.keras.cost_sensitive_categorical_crossentropy`,
  :func:`~companion.keras.expected_cost`;
- per sample, shape ``(N,)``: every non-batch axis pooled: :func:`~companion.keras.dice`,
  :func:`~companion.keras.dice_bce`, :func:`~companion.keras.tversky`.

These values equal the ``reduction="none"`` values of the PyTorch twins in
:mod:`companion.torch` (channels first there) on the same data. Unlike ``keras.losses``,
``y_true`` and ``y_pred`` must have the same shape. Logits are handled in log-space
(``log_sigmoid``, ``log_softmax``); probabilities are clipped to ``[epsilon, 1 - epsilon]``
before a logarithm, as in ``keras.losses``. float16 and bfloat16 inputs are computed in
float32 and returned in their own dtype. Only ``keras.ops`` is used. The float64 twins are in
:mod:`companion.reference`.
"""

from __future__ import annotations

from collections.abc import Mapping

import keras
import numpy as np
from keras import ops

from companion._common import check_alpha as _check_alpha
from companion._common import check_number as _check_number

# _HALF, _class_vector, _cost_matrix and _per_channel keep the names the functions below call
# them by: the book prints the source of cost_sensitive_categorical_crossentropy.
from companion.keras._checks import HALF_DTYPES as _HALF
from companion.keras._checks import LossWithOptions as _LossWithOptions
from companion.keras._checks import Option as _Option
from companion.keras._checks import as_class_vector as _class_vector
from companion.keras._checks import as_cost_matrix as _cost_matrix
from companion.keras._checks import as_per_channel as _per_channel
from companion.keras._checks import as_tensors as _as_tensors
from companion.keras._checks import class_weights_list as _class_weights_list
from companion.keras._checks import cost_matrix_list as _cost_matrix_list
from companion.keras._checks import float_or_list as _float_or_list
from companion.keras._checks import mean_over_last_axis as _mean_over_last_axis

__all__ = [
    "CostSensitiveCategoricalCrossentropy",
    "Dice",
    "DiceBCE",
    "ExpectedCost",
    "Focal",
    "Tversky",
    "WeightedBCE",
    "WeightedCategoricalCrossentropy",
    "class_weight_to_sample_weight",
    "cost_sensitive_categorical_crossentropy",
    "dice",
    "dice_bce",
    "expected_cost",
    "focal",
    "tversky",
    "weighted_bce",
    "weighted_categorical_crossentropy",
]

# ------------------------------------------------------------------------------------ checks


def _prepare(y_true, y_pred, *, classes: bool = False):
    """Same-shape tensors in the compute dtype (float32 for half input), and the input dtype."""
    y_pred = ops.convert_to_tensor(y_pred)
    dtype = keras.backend.standardize_dtype(y_pred.dtype)
    if "float" not in dtype:
        raise ValueError(f"y_pred must be floating point, got dtype {dtype}")
    if "float" not in keras.backend.standardize_dtype(getattr(y_true, "dtype", "float32")):
        what = "one-hot (float) class labels" if classes else "0/1 (or soft) float labels"
        raise ValueError(
            f"y_true must hold {what}, got dtype "
            f"{keras.backend.standardize_dtype(y_true.dtype)}; cast it to float"
        )
    y_true, y_pred = _as_tensors(y_true, y_pred)
    if len(y_pred.shape) < 2:
        raise ValueError(
            f"y_pred must have a batch and a channel axis, (N, ..., C), got shape "
            f"{tuple(y_pred.shape)}"
        )
    if dtype in _HALF:
        y_true, y_pred = ops.cast(y_true, "float32"), ops.cast(y_pred, "float32")
    return y_true, y_pred, dtype


def _log_probabilities(y_pred, from_logits: bool):
    """``log p`` and ``log(1 - p)``: in log-space from logits, clipped from probabilities."""
    if from_logits:
        return ops.log_sigmoid(y_pred), ops.log_sigmoid(-y_pred)
    epsilon = keras.backend.epsilon()
    probabilities = ops.clip(y_pred, epsilon, 1.0 - epsilon)
    return ops.log(probabilities), ops.log(1.0 - probabilities)


def _flatten_samples(values):
    return ops.reshape(values, (ops.shape(values)[0], -1))


# ----------------------------------------------------------------------------- binary losses


def _bce_elements(y_true, y_pred, pos_weight, from_logits: bool):
    log_p, log_not_p = _log_probabilities(y_pred, from_logits)
    positive = y_true * log_p
    if pos_weight is not None:
        positive = _per_channel("pos_weight", pos_weight, y_pred) * positive
    return -(positive + (1.0 - y_true) * log_not_p)


def weighted_bce(y_true, y_pred, *, pos_weight=None, from_logits: bool = False):
    """Binary cross-entropy with a positive-class weight, per pixel.

    Formula, element-wise with ``p = y_pred`` (or ``sigmoid(y_pred)`` with ``from_logits``),
    then the mean over the channel axis::

        loss = -(pos_weight * t * log(p) + (1 - t) * log(1 - p))

    Without ``pos_weight`` this is ``keras.losses.binary_crossentropy``. A weight map enters
    as the per-pixel ``sample_weight`` of :class:`WeightedBCE`. Equal to
    ``companion.torch.weighted_bce_loss(reduction="none")`` averaged over channels.

    Args:
        y_true: 0/1 (or soft) float labels, shape ``(N, H, W, C)`` (any ``(N, ..., C)``).
        y_pred: probabilities (or logits), the shape of ``y_true``.
        pos_weight: a number or one weight per channel, shape ``(C,)``; None for 1.
        from_logits: whether ``y_pred`` holds logits.

    Returns:
        Per-pixel losses, shape ``(N, H, W)``.

    Raises:
        ValueError: if the shapes differ (the message names both), ``y_true`` is not
            floating point, or ``pos_weight`` is neither a number nor ``(C,)``.

    Example:
        >>> y_true = [[[1.0], [0.0]]]
        >>> y_pred = [[[0.5], [0.25]]]
        >>> [round(float(v), 4) for v in weighted_bce(y_true, y_pred, pos_weight=3.0)[0]]
        [2.0794, 0.2877]
    """
    y_true, y_pred, dtype = _prepare(y_true, y_pred)
    loss = _bce_elements(y_true, y_pred, pos_weight, from_logits)
    return ops.cast(_mean_over_last_axis(loss), dtype)


def _overlap_sums(y_true, y_pred, from_logits: bool):
    probabilities = ops.sigmoid(y_pred) if from_logits else y_pred
    probabilities, y_true = _flatten_samples(probabilities), _flatten_samples(y_true)
    true_positives = ops.sum(probabilities * y_true, axis=1)
    return true_positives, probabilities, y_true


def dice(y_true, y_pred, *, smooth: float = 1.0, from_logits: bool = False):
    """The soft Dice loss per sample (Milletari et al., 2016), smoothed.

    Formula, with sums over every non-batch axis of one sample::

        loss = 1 - (2 * sum(p * t) + smooth) / (sum(p) + sum(t) + smooth)

    A perfect prediction gives 0; an empty target with an empty prediction gives 0, where
    ``keras.losses.Dice`` (``1 - 2 sum(p t) / (sum(p) + sum(t) + epsilon)``) gives 1, and
    ``sum(p) / (sum(p) + smooth)`` for an empty target in general. Otherwise, with a small
    ``smooth``, this is ``keras.losses.Dice(axis=(1, 2, 3))``. Equal to
    ``companion.torch.dice_loss(reduction="none")``. Milletari et al. square ``p`` and ``t``
    in the denominator; this, like ``keras.losses.Dice``, does not.

    Args:
        y_true: 0/1 (or soft) float labels, shape ``(N, H, W, C)`` (any ``(N, ..., C)``).
        y_pred: probabilities (or logits), the shape of ``y_true``.
        smooth: added to numerator and denominator, finite and > 0.
        from_logits: whether ``y_pred`` holds logits.

    Returns:
        Per-sample losses, shape ``(N,)``.

    Raises:
        ValueError: if the shapes differ, ``y_true`` is not floating point, or ``smooth`` is
            not > 0.

    Example:
        >>> y_true = [[[1.0], [1.0], [0.0], [0.0]], [[0.0], [0.0], [0.0], [0.0]]]
        >>> y_pred = [[[1.0], [0.5], [0.0], [0.5]], [[0.0], [0.0], [0.0], [0.0]]]
        >>> [round(float(v), 4) for v in dice(y_true, y_pred)]
        [0.2, 0.0]
    """
    smooth = _check_number("smooth", smooth, strict=True)
    y_true, y_pred, dtype = _prepare(y_true, y_pred)
    true_positives, probabilities, y_true = _overlap_sums(y_true, y_pred, from_logits)
    denominator = ops.sum(probabilities, axis=1) + ops.sum(y_true, axis=1) + smooth
    return ops.cast(1.0 - (2.0 * true_positives + smooth) / denominator, dtype)


def dice_bce(
    y_true,
    y_pred,
    *,
    dice_weight: float = 1.0,
    bce_weight: float = 1.0,
    pos_weight=None,
    smooth: float = 1.0,
    from_logits: bool = False,
):
    """Dice plus binary cross-entropy per sample.

    Formula, for each sample ``n``::

        loss[n] = dice_weight * dice[n] + bce_weight * mean(bce[n])

    with :func:`dice` and the mean over the sample's elements of the (``pos_weight``-ed)
    binary cross-entropy of :func:`weighted_bce`. Equal to
    ``companion.torch.dice_bce_loss(reduction="none")``.

    Args:
        y_true: 0/1 (or soft) float labels, shape ``(N, H, W, C)``.
        y_pred: probabilities (or logits), the shape of ``y_true``.
        dice_weight: the factor of the Dice term, finite and >= 0.
        bce_weight: the factor of the BCE term, finite and >= 0.
        pos_weight: the positive-class weight of the BCE, a number or ``(C,)``.
        smooth: the Dice smoothing term, finite and > 0.
        from_logits: whether ``y_pred`` holds logits.

    Returns:
        Per-sample losses, shape ``(N,)``.

    Raises:
        ValueError: as :func:`dice` and :func:`weighted_bce`, and for negative weights.

    Example:
        >>> [round(float(v), 4) for v in dice_bce([[[1.0], [0.0]]], [[[0.5], [0.5]]])]
        [1.0265]
    """
    dice_weight = _check_number("dice_weight", dice_weight)
    bce_weight = _check_number("bce_weight", bce_weight)
    smooth = _check_number("smooth", smooth, strict=True)
    y_true, y_pred, dtype = _prepare(y_true, y_pred)
    true_positives, probabilities, flat_true = _overlap_sums(y_true, y_pred, from_logits)
    denominator = ops.sum(probabilities, axis=1) + ops.sum(flat_true, axis=1) + smooth
    dice_loss = 1.0 - (2.0 * true_positives + smooth) / denominator
    bce = _mean_over_last_axis(
        _flatten_samples(_bce_elements(y_true, y_pred, pos_weight, from_logits))
    )
    return ops.cast(dice_weight * dice_loss + bce_weight * bce, dtype)


def focal(y_true, y_pred, *, gamma: float = 2.0, alpha: float | None = None, from_logits=False):
    """The binary focal loss per pixel (Lin et al., 2017).

    Formula, element-wise with ``p = y_pred`` (or ``sigmoid(y_pred)``), then the mean over
    the channel axis::

        p_t = p * t + (1 - p) * (1 - t)
        alpha_t = alpha * t + (1 - alpha) * (1 - t)        (1 if alpha is None)
        loss = alpha_t * (1 - p_t)**gamma * bce(p, t)

    ``bce = -log p_t`` for 0/1 targets; for soft targets this is the usual generalization.
    ``gamma = 0`` and ``alpha = None`` give :func:`weighted_bce` without ``pos_weight``. Equal
    to ``keras.losses.binary_focal_crossentropy`` (with ``apply_class_balancing=True`` and
    ``alpha`` when ``alpha`` is given) and to ``companion.torch.focal_loss(reduction="none")``
    averaged over channels. Finite, with finite gradients, for logits of +-1e4, also for
    ``gamma < 1``.

    Args:
        y_true: 0/1 (or soft) float labels, shape ``(N, H, W, C)``.
        y_pred: probabilities (or logits), the shape of ``y_true``.
        gamma: the focusing exponent, finite and >= 0.
        alpha: the weight of positives in [0, 1], or None.
        from_logits: whether ``y_pred`` holds logits.

    Returns:
        Per-pixel losses, shape ``(N, H, W)``.

    Raises:
        ValueError: if the shapes differ, ``y_true`` is not floating point, ``gamma`` is
            negative or ``alpha`` outside [0, 1].

    Example:
        >>> y_true, y_pred = [[[1.0], [0.0]]], [[[0.5], [0.5]]]
        >>> [round(float(v), 4) for v in focal(y_true, y_pred, alpha=0.25)[0]]
        [0.0433, 0.13]
    """
    gamma = _check_number("gamma", gamma)
    alpha = _check_alpha(alpha)
    y_true, y_pred, dtype = _prepare(y_true, y_pred)
    log_p, log_not_p = _log_probabilities(y_pred, from_logits)
    loss = -(y_true * log_p + (1.0 - y_true) * log_not_p)
    if gamma != 0.0:
        # 1 - p_t as a sum of non-negative terms: no cancellation when p_t is near 1.
        one_minus_p_t = ops.exp(log_p) * (1.0 - y_true) + ops.exp(log_not_p) * y_true
        if gamma < 1.0:
            # d z**gamma / dz is infinite at 0 for gamma < 1 (and 0 * inf is NaN): clip
            # 1 - p_t to the smallest normal number before the power.
            tiny = float(np.finfo(keras.backend.standardize_dtype(y_pred.dtype)).tiny)
            one_minus_p_t = ops.clip(one_minus_p_t, tiny, 1.0)
        loss = ops.power(one_minus_p_t, gamma) * loss
    if alpha is not None:
        loss = (alpha * y_true + (1.0 - alpha) * (1.0 - y_true)) * loss
    return ops.cast(_mean_over_last_axis(loss), dtype)


def tversky(
    y_true,
    y_pred,
    *,
    alpha: float = 0.5,
    beta: float = 0.5,
    smooth: float = 1.0,
    from_logits: bool = False,
):
    """The Tversky loss per sample (Salehi et al., 2017); alpha weighs false positives.

    Formula, with sums over every non-batch axis of one sample::

        TP = sum(p * t),  FP = sum(p * (1 - t)),  FN = sum((1 - p) * t)
        loss = 1 - (TP + smooth) / (TP + alpha * FP + beta * FN + smooth)

    As in the paper and in MONAI, ``alpha`` weighs false positives and ``beta`` false
    negatives. ``keras.losses.Tversky`` (Keras 3.15) says the same in its docstring, but its
    code multiplies ``alpha`` by ``sum(y_true * (1 - y_pred))``, the false negatives: its
    ``Tversky(alpha=a, beta=b)`` is ``tversky(alpha=b, beta=a)`` here, up to the smoothing
    (it adds ``epsilon`` to the denominator only). Equal to
    ``companion.torch.tversky_loss(reduction="none")``.

    Args:
        y_true: 0/1 (or soft) float labels, shape ``(N, H, W, C)``.
        y_pred: probabilities (or logits), the shape of ``y_true``.
        alpha: the weight of false positives, finite and >= 0.
        beta: the weight of false negatives, finite and >= 0.
        smooth: added to numerator and denominator, finite and > 0.
        from_logits: whether ``y_pred`` holds logits.

    Returns:
        Per-sample losses, shape ``(N,)``.

    Raises:
        ValueError: if the shapes differ, ``y_true`` is not floating point, ``alpha`` or
            ``beta`` is negative or ``smooth`` not > 0.

    Example:
        >>> y_true, y_pred = [[[1.0], [0.0], [0.0]]], [[[1.0], [1.0], [0.0]]]
        >>> [round(float(v), 4) for v in tversky(y_true, y_pred, alpha=0.7, beta=0.3)]
        [0.2593]
    """
    alpha, beta = _check_number("alpha", alpha), _check_number("beta", beta)
    smooth = _check_number("smooth", smooth, strict=True)
    y_true, y_pred, dtype = _prepare(y_true, y_pred)
    true_positives, probabilities, y_true = _overlap_sums(y_true, y_pred, from_logits)
    false_positives = ops.sum(probabilities * (1.0 - y_true), axis=1)
    false_negatives = ops.sum((1.0 - probabilities) * y_true, axis=1)
    denominator = true_positives + alpha * false_positives + beta * false_negatives + smooth
    return ops.cast(1.0 - (true_positives + smooth) / denominator, dtype)


# -------------------------------------------------------------------------- categorical losses


def weighted_categorical_crossentropy(
    y_true, y_pred, *, class_weights=None, from_logits: bool = False
):
    """Categorical cross-entropy per pixel, weighted by the true class.

    Formula, for each pixel with one-hot ``y_true`` over the last axis::

        loss = sum(y_true * class_weights) * -sum(y_true * log(p))

    with ``p = y_pred`` (normalized to sum 1 and clipped, as ``keras.losses`` does) or
    ``softmax(y_pred)`` with ``from_logits``. For one-hot labels the weight is
    ``class_weights[true class]``. Without ``class_weights`` this is
    ``keras.losses.categorical_crossentropy``; a weight map enters as the per-pixel
    ``sample_weight`` of :class:`WeightedCategoricalCrossentropy`. The class's
    ``"sum_over_batch_size"`` divides by the number of pixels, not by the sum of the weights
    as ``companion.torch.weighted_cross_entropy(reduction="mean")`` does; the per-pixel
    values equal its ``reduction="none"`` values.

    Args:
        y_true: one-hot (float) labels, shape ``(N, H, W, C)``.
        y_pred: probabilities (or logits), the shape of ``y_true``.
        class_weights: one weight per class, shape ``(C,)``; None for 1.
        from_logits: whether ``y_pred`` holds logits.

    Returns:
        Per-pixel losses, shape ``(N, H, W)``.

    Raises:
        ValueError: if the shapes differ, ``y_true`` is not floating point (integer class
            indices: one-hot encode them with ``keras.ops.one_hot``), or ``class_weights``
            has not ``C`` entries.

    Example:
        >>> y_true, y_pred = [[[1.0, 0.0], [0.0, 1.0]]], [[[0.5, 0.5], [0.5, 0.5]]]
        >>> values = weighted_categorical_crossentropy(y_true, y_pred, class_weights=[1.0, 3.0])
        >>> [round(float(v), 4) for v in values[0]]
        [0.6931, 2.0794]
    """
    y_true, y_pred, dtype = _prepare(y_true, y_pred, classes=True)
    loss = ops.categorical_crossentropy(y_true, y_pred, from_logits=from_logits, axis=-1)
    if class_weights is not None:
        weights = _class_vector("class_weights", class_weights, y_pred)
        loss = ops.sum(y_true * weights, axis=-1) * loss
    return ops.cast(loss, dtype)


def cost_sensitive_categorical_crossentropy(
    y_true, y_pred, cost_matrix, *, from_logits: bool = False
):
    """Categorical cross-entropy per pixel times the cost of the predicted class.

    Formula, for each pixel with one-hot ``y_true`` over the last axis::

        loss = cost_matrix[true, argmax(y_pred)] * -sum(y_true * log(p))

    (for soft labels, ``sum(y_true * cost_matrix[:, argmax(y_pred)])``). The cost is a
    constant (``stop_gradient``). This is what the widely copied Keras answer with a double
    loop over (true, predicted) class pairs computes, except where classes tie for the
    maximum: ``argmax`` picks one (the first on the torch and TensorFlow CPU backends) where
    the loop sums their costs. Equal to
    ``companion.torch.cost_sensitive_cross_entropy(reduction="none")``.

    Args:
        y_true: one-hot (float) labels, shape ``(N, H, W, C)``.
        y_pred: probabilities (or logits), the shape of ``y_true``.
        cost_matrix: ``cost_matrix[true, predicted]``, shape ``(C, C)``.
        from_logits: whether ``y_pred`` holds logits.

    Returns:
        Per-pixel losses, shape ``(N, H, W)``.

    Raises:
        ValueError: if the shapes differ, ``y_true`` is not floating point, or
            ``cost_matrix`` is not square or not ``(C, C)``.

    Example:
        >>> cost = [[0.0, 1.0], [5.0, 0.0]]
        >>> y_true, y_pred = [[0.0, 1.0], [0.0, 1.0]], [[0.8, 0.2], [0.3, 0.7]]
        >>> values = cost_sensitive_categorical_crossentropy(y_true, y_pred, cost)
        >>> [round(float(v), 4) for v in values]
        [8.0472, 0.0]
    """
    y_true, y_pred, dtype = _prepare(y_true, y_pred, classes=True)
    cost_matrix = _cost_matrix(cost_matrix, y_pred.shape[-1])
    loss = ops.categorical_crossentropy(y_true, y_pred, from_logits=from_logits, axis=-1)
    # No gradient flows through argmax; stop_gradient also turns a tf.Variable into a tensor,
    # which the TensorFlow backend's ops.argmax needs (Keras 3.15).
    predicted = ops.argmax(ops.stop_gradient(y_pred), axis=-1)
    # Row k of the transposed matrix holds the costs of predicting k for every true class.
    costs_of_prediction = ops.take(
        ops.convert_to_tensor(cost_matrix.T, dtype=y_pred.dtype), predicted, axis=0
    )
    cost = ops.stop_gradient(ops.sum(y_true * costs_of_prediction, axis=-1))
    return ops.cast(cost * loss, dtype)


def expected_cost(y_true, y_pred, cost_matrix, *, from_logits: bool = False):
    """The expected cost of each pixel's prediction under the predicted distribution.

    Formula, for each pixel with one-hot ``y_true`` over the last axis and ``p = y_pred`` (or
    ``softmax(y_pred)`` with ``from_logits``)::

        loss = sum_k p[k] * cost_matrix[true, k]

    (for soft labels, the ``y_true``-weighted mean of the rows). The differentiable
    counterpart of :func:`cost_sensitive_categorical_crossentropy`: the costs shape the
    gradient instead of weighting the cross-entropy by the cost of a constant ``argmax``.
    Bounded and saturating (a confidently wrong pixel has almost no gradient), so it is
    usually added to a cross-entropy rather than trained alone; see
    ``companion.torch.expected_cost_loss``, to whose ``reduction="none"`` values it is
    equal. Probabilities are used as given (not renormalized or clipped: no logarithm here).

    Args:
        y_true: one-hot (float) labels, shape ``(N, H, W, C)``.
        y_pred: probabilities (or logits), the shape of ``y_true``.
        cost_matrix: ``cost_matrix[true, predicted]``, shape ``(C, C)``.
        from_logits: whether ``y_pred`` holds logits.

    Returns:
        Per-pixel expected costs, shape ``(N, H, W)``.

    Raises:
        ValueError: if the shapes differ, ``y_true`` is not floating point, or
            ``cost_matrix`` is not square or not ``(C, C)``.

    Example:
        >>> cost = [[0.0, 1.0], [5.0, 0.0]]
        >>> y_true, y_pred = [[0.0, 1.0], [0.0, 1.0]], [[0.8, 0.2], [0.3, 0.7]]
        >>> [round(float(v), 4) for v in expected_cost(y_true, y_pred, cost)]
        [4.0, 1.5]
    """
    y_true, y_pred, dtype = _prepare(y_true, y_pred, classes=True)
    cost_matrix = _cost_matrix(cost_matrix, y_pred.shape[-1])
    probabilities = ops.softmax(y_pred, axis=-1) if from_logits else y_pred
    # Each pixel's row of the cost matrix: one-hot labels times the matrix. einsum, not
    # matmul: Keras 3.15's torch backend computes matmul of float64 tensors in float32.
    costs = ops.convert_to_tensor(cost_matrix, dtype=y_pred.dtype)
    rows = ops.einsum("...j,jk->...k", y_true, costs)
    return ops.cast(ops.sum(probabilities * rows, axis=-1), dtype)


def class_weight_to_sample_weight(y_true, class_weight):
    """Per-pixel ``sample_weight`` that does for masks what ``fit(class_weight=...)`` does
    for labels.

    ``Model.fit(class_weight=...)`` gives each sample the weight of its class, which for a
    mask of many pixels per sample has no clear meaning: Keras 3.15 fails on NumPy masks
    with a ``TypeError`` and, fed from ``tf.data``, weights each pixel without saying so.
    This gives each pixel the weight of its class, explicitly, with Keras's rules: one-hot
    labels (last axis ``C > 1``) take the class of their ``argmax``, a binary mask (last axis
    1) its rounded value (0 or 1), and classes missing from ``class_weight`` weigh 1. Pass the
    result as ``sample_weight`` to ``fit``, or return it from a ``tf.data`` map, with a loss
    whose values are per pixel (:class:`WeightedBCE`, :class:`Focal`, the categorical ones,
    or ``keras.losses.BinaryCrossentropy``).

    Args:
        y_true: one-hot labels ``(N, H, W, C)`` or a binary mask ``(N, H, W, 1)``.
        class_weight: ``{class index: weight}`` or a sequence of weights indexed by class.

    Returns:
        The weights, shape ``(N, H, W)``, dtype ``keras.backend.floatx()``.

    Raises:
        ValueError: if ``y_true`` has no channel axis, ``class_weight`` has a negative key or
            a sequence has fewer entries than classes.

    Example:
        >>> mask = [[[[0.0], [1.0], [1.0]]]]  # N = 1, H = 1, W = 3, one channel
        >>> weights = class_weight_to_sample_weight(mask, {0: 0.5, 1: 4.0})
        >>> [float(w) for w in weights[0, 0]]
        [0.5, 4.0, 4.0]
    """
    y_true = ops.convert_to_tensor(y_true)
    if len(y_true.shape) < 2:
        raise ValueError(
            "y_true must have a channel axis, (N, H, W, C) or (N, H, W, 1), got shape "
            f"{tuple(y_true.shape)}"
        )
    channels = y_true.shape[-1]
    if channels == 1:
        labels = ops.cast(ops.round(ops.squeeze(y_true, axis=-1)), "int32")
        n_classes = 2
    else:
        labels = ops.cast(ops.argmax(y_true, axis=-1), "int32")
        n_classes = channels
    if isinstance(class_weight, Mapping):
        if any(int(key) < 0 for key in class_weight):
            raise ValueError(f"class_weight keys must be class indices >= 0, got {class_weight}")
        table = np.ones(max([n_classes, *(int(key) + 1 for key in class_weight)]))
        for key, weight in class_weight.items():
            table[int(key)] = float(weight)
    else:
        table = np.asarray(class_weight, dtype="float64")
        if table.ndim != 1 or table.size < n_classes:
            raise ValueError(
                f"class_weight must give a weight to each of the {n_classes} classes of "
                f"y_true, got shape {table.shape}"
            )
    # A binary mask with values outside [0, 1] counts as its nearest class.
    labels = ops.clip(labels, 0, table.size - 1)
    return ops.take(ops.convert_to_tensor(table, dtype=keras.backend.floatx()), labels, axis=0)


# ------------------------------------------------------------------------------- Loss classes


@keras.saving.register_keras_serializable(package="companion")
class WeightedBCE(_LossWithOptions):
    """Binary cross-entropy with a positive-class weight; see :func:`weighted_bce`.

    Per-pixel values are weighted by ``sample_weight`` (e.g. a U-Net weight map of shape
    ``(N, H, W)``) and reduced as ``reduction`` says.

    Args:
        pos_weight: a number or one weight per channel; None for 1.
        from_logits: whether ``y_pred`` holds logits.
        reduction: as in ``keras.losses.Loss``, ``"sum_over_batch_size"`` by default.
        name: the loss's name.
        dtype: the dtype of the computation, ``keras.backend.floatx()`` by default.

    Raises:
        ValueError: for a ``pos_weight`` that is neither a number nor one value per channel,
            when called.

    Example:
        >>> loss = WeightedBCE(pos_weight=3.0)
        >>> round(float(loss([[[1.0], [0.0]]], [[[0.5], [0.25]]])), 4)
        1.1836
        >>> WeightedBCE.from_config(loss.get_config()).pos_weight
        3.0
    """

    pos_weight = _Option(_float_or_list)
    from_logits = _Option(bool)

    def __init__(
        self,
        pos_weight=None,
        from_logits=False,
        reduction="sum_over_batch_size",
        name="weighted_bce",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.pos_weight, self.from_logits = pos_weight, from_logits

    def call(self, y_true, y_pred):
        return weighted_bce(
            y_true, y_pred, pos_weight=self.pos_weight, from_logits=self.from_logits
        )


@keras.saving.register_keras_serializable(package="companion")
class Dice(_LossWithOptions):
    """The soft Dice loss, one value per sample; see :func:`dice`.

    Unlike ``keras.losses.Dice`` (whose default ``axis=None`` pools the whole batch into one
    score, and whose empty-mask value is 1), this scores each sample, with ``smooth`` in the
    numerator and the denominator.

    Args:
        smooth: added to numerator and denominator, finite and > 0.
        from_logits: whether ``y_pred`` holds logits.
        reduction: as in ``keras.losses.Loss``, ``"sum_over_batch_size"`` by default.
        name: the loss's name.
        dtype: the dtype of the computation, ``keras.backend.floatx()`` by default.

    Raises:
        ValueError: for a ``smooth`` that is not > 0, at construction or when assigned; for
            arguments :func:`dice` rejects, when called.

    Example:
        >>> y_true = [[[1.0], [1.0]], [[0.0], [0.0]]]
        >>> y_pred = [[[1.0], [0.0]], [[0.0], [0.0]]]
        >>> round(float(Dice()(y_true, y_pred)), 4)
        0.125
    """

    smooth = _Option(_check_number, "smooth", strict=True)
    from_logits = _Option(bool)

    def __init__(
        self,
        smooth=1.0,
        from_logits=False,
        reduction="sum_over_batch_size",
        name="dice",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.smooth, self.from_logits = smooth, from_logits

    def call(self, y_true, y_pred):
        return dice(y_true, y_pred, smooth=self.smooth, from_logits=self.from_logits)


@keras.saving.register_keras_serializable(package="companion")
class DiceBCE(_LossWithOptions):
    """Dice plus binary cross-entropy, one value per sample; see :func:`dice_bce`.

    Args:
        dice_weight: the factor of the Dice term, finite and >= 0.
        bce_weight: the factor of the BCE term, finite and >= 0.
        pos_weight: the positive-class weight of the BCE term.
        smooth: the Dice smoothing term, finite and > 0.
        from_logits: whether ``y_pred`` holds logits.
        reduction: as in ``keras.losses.Loss``, ``"sum_over_batch_size"`` by default.
        name: the loss's name.
        dtype: the dtype of the computation, ``keras.backend.floatx()`` by default.

    Raises:
        ValueError: for negative weights or a ``smooth`` not > 0, at construction or when
            assigned; for arguments :func:`dice_bce` rejects, when called.

    Example:
        >>> round(float(DiceBCE(dice_weight=0.5)([[[1.0], [0.0]]], [[[0.5], [0.5]]])), 4)
        0.8598
    """

    dice_weight = _Option(_check_number, "dice_weight")
    bce_weight = _Option(_check_number, "bce_weight")
    pos_weight = _Option(_float_or_list)
    smooth = _Option(_check_number, "smooth", strict=True)
    from_logits = _Option(bool)

    def __init__(
        self,
        dice_weight=1.0,
        bce_weight=1.0,
        pos_weight=None,
        smooth=1.0,
        from_logits=False,
        reduction="sum_over_batch_size",
        name="dice_bce",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.dice_weight, self.bce_weight, self.pos_weight = dice_weight, bce_weight, pos_weight
        self.smooth, self.from_logits = smooth, from_logits

    def call(self, y_true, y_pred):
        return dice_bce(
            y_true,
            y_pred,
            dice_weight=self.dice_weight,
            bce_weight=self.bce_weight,
            pos_weight=self.pos_weight,
            smooth=self.smooth,
            from_logits=self.from_logits,
        )


@keras.saving.register_keras_serializable(package="companion")
class Focal(_LossWithOptions):
    """The binary focal loss, one value per pixel; see :func:`focal`.

    Args:
        gamma: the focusing exponent, finite and >= 0.
        alpha: the weight of positives in [0, 1], or None.
        from_logits: whether ``y_pred`` holds logits.
        reduction: as in ``keras.losses.Loss``, ``"sum_over_batch_size"`` by default.
        name: the loss's name.
        dtype: the dtype of the computation, ``keras.backend.floatx()`` by default.

    Raises:
        ValueError: for a negative ``gamma`` or an ``alpha`` outside [0, 1], at construction or
            when assigned; for arguments :func:`focal` rejects, when called.

    Example:
        >>> round(float(Focal(gamma=0.0)([[[1.0], [0.0]]], [[[0.5], [0.5]]])), 4)
        0.6931
    """

    gamma = _Option(_check_number, "gamma")
    alpha = _Option(_check_alpha)
    from_logits = _Option(bool)

    def __init__(
        self,
        gamma=2.0,
        alpha=None,
        from_logits=False,
        reduction="sum_over_batch_size",
        name="focal",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.gamma, self.alpha, self.from_logits = gamma, alpha, from_logits

    def call(self, y_true, y_pred):
        return focal(
            y_true, y_pred, gamma=self.gamma, alpha=self.alpha, from_logits=self.from_logits
        )


@keras.saving.register_keras_serializable(package="companion")
class Tversky(_LossWithOptions):
    """The Tversky loss, one value per sample; alpha weighs false positives. See
    :func:`tversky`, also for how it differs from ``keras.losses.Tversky``.

    Args:
        alpha: the weight of false positives, finite and >= 0.
        beta: the weight of false negatives, finite and >= 0.
        smooth: added to numerator and denominator, finite and > 0.
        from_logits: whether ``y_pred`` holds logits.
        reduction: as in ``keras.losses.Loss``, ``"sum_over_batch_size"`` by default.
        name: the loss's name.
        dtype: the dtype of the computation, ``keras.backend.floatx()`` by default.

    Raises:
        ValueError: for a negative ``alpha`` or ``beta`` or a ``smooth`` not > 0, at
            construction or when assigned; for arguments :func:`tversky` rejects, when called.

    Example:
        >>> loss = Tversky(alpha=0.3, beta=0.7, smooth=1e-6)
        >>> round(float(loss([[[1.0], [1.0]]], [[[1.0], [0.0]]])), 4)
        0.4118
    """

    alpha = _Option(_check_number, "alpha")
    beta = _Option(_check_number, "beta")
    smooth = _Option(_check_number, "smooth", strict=True)
    from_logits = _Option(bool)

    def __init__(
        self,
        alpha=0.5,
        beta=0.5,
        smooth=1.0,
        from_logits=False,
        reduction="sum_over_batch_size",
        name="tversky",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.alpha, self.beta, self.smooth, self.from_logits = alpha, beta, smooth, from_logits

    def call(self, y_true, y_pred):
        return tversky(
            y_true,
            y_pred,
            alpha=self.alpha,
            beta=self.beta,
            smooth=self.smooth,
            from_logits=self.from_logits,
        )


@keras.saving.register_keras_serializable(package="companion")
class WeightedCategoricalCrossentropy(_LossWithOptions):
    """Categorical cross-entropy weighted by the true class, one value per pixel; see
    :func:`weighted_categorical_crossentropy`.

    Args:
        class_weights: one weight per class, shape ``(C,)``; None for 1.
        from_logits: whether ``y_pred`` holds logits.
        reduction: as in ``keras.losses.Loss``, ``"sum_over_batch_size"`` by default.
        name: the loss's name.
        dtype: the dtype of the computation, ``keras.backend.floatx()`` by default.

    Raises:
        ValueError: if ``class_weights`` is not one-dimensional, at construction or when
            assigned; if it has not ``C`` entries, when called.

    Example:
        >>> loss = WeightedCategoricalCrossentropy(class_weights=[1.0, 3.0], reduction="sum")
        >>> round(float(loss([[[1.0, 0.0], [0.0, 1.0]]], [[[0.5, 0.5], [0.5, 0.5]]])), 4)
        2.7726
    """

    class_weights = _Option(_class_weights_list)
    from_logits = _Option(bool)

    def __init__(
        self,
        class_weights=None,
        from_logits=False,
        reduction="sum_over_batch_size",
        name="weighted_categorical_crossentropy",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.class_weights, self.from_logits = class_weights, from_logits

    def call(self, y_true, y_pred):
        return weighted_categorical_crossentropy(
            y_true, y_pred, class_weights=self.class_weights, from_logits=self.from_logits
        )


class _CostMatrixLoss(_LossWithOptions):
    """A ``Loss`` of a cost matrix; subclasses name the function (``_function``)."""

    cost_matrix = _Option(_cost_matrix_list)
    from_logits = _Option(bool)

    def __init__(self, cost_matrix, from_logits, reduction, name, dtype):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.cost_matrix, self.from_logits = cost_matrix, from_logits

    def call(self, y_true, y_pred):
        return self._function(y_true, y_pred, self.cost_matrix, from_logits=self.from_logits)


@keras.saving.register_keras_serializable(package="companion")
class CostSensitiveCategoricalCrossentropy(_CostMatrixLoss):
    """Categorical cross-entropy times the cost of each pixel's prediction; see
    :func:`cost_sensitive_categorical_crossentropy`.

    Args:
        cost_matrix: ``cost_matrix[true, predicted]``, shape ``(C, C)``.
        from_logits: whether ``y_pred`` holds logits.
        reduction: as in ``keras.losses.Loss``, ``"sum_over_batch_size"`` by default.
        name: the loss's name.
        dtype: the dtype of the computation, ``keras.backend.floatx()`` by default.

    Raises:
        ValueError: if ``cost_matrix`` is not square, at construction or when assigned; if it
            is not ``(C, C)``, when called.

    Example:
        >>> loss = CostSensitiveCategoricalCrossentropy([[0.0, 1.0], [5.0, 0.0]])
        >>> round(float(loss([[0.0, 1.0], [0.0, 1.0]], [[0.8, 0.2], [0.3, 0.7]])), 4)
        4.0236
    """

    def __init__(
        self,
        cost_matrix,
        from_logits=False,
        reduction="sum_over_batch_size",
        name="cost_sensitive_categorical_crossentropy",
        dtype=None,
    ):
        super().__init__(cost_matrix, from_logits, reduction, name, dtype)

    _function = staticmethod(cost_sensitive_categorical_crossentropy)


@keras.saving.register_keras_serializable(package="companion")
class ExpectedCost(_CostMatrixLoss):
    """The expected cost of each pixel's prediction; see :func:`expected_cost`.

    Args:
        cost_matrix: ``cost_matrix[true, predicted]``, shape ``(C, C)``.
        from_logits: whether ``y_pred`` holds logits.
        reduction: as in ``keras.losses.Loss``, ``"sum_over_batch_size"`` by default.
        name: the loss's name.
        dtype: the dtype of the computation, ``keras.backend.floatx()`` by default.

    Raises:
        ValueError: if ``cost_matrix`` is not square, at construction or when assigned; if it
            is not ``(C, C)``, when called.

    Example:
        >>> loss = ExpectedCost([[0.0, 1.0], [5.0, 0.0]])
        >>> round(float(loss([[0.0, 1.0], [0.0, 1.0]], [[0.8, 0.2], [0.3, 0.7]])), 4)
        2.75
    """

    def __init__(
        self,
        cost_matrix,
        from_logits=False,
        reduction="sum_over_batch_size",
        name="expected_cost",
        dtype=None,
    ):
        super().__init__(cost_matrix, from_logits, reduction, name, dtype)

    _function = staticmethod(expected_cost)
