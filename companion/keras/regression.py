"""Robust regression losses for Keras 3: Huber and pseudo-Huber, on any backend.

Both follow ``keras.losses``' habits: ``(y_true, y_pred)`` order, a function that returns
one value per sample (the mean over the last axis) and a ``keras.losses.Loss`` subclass that
reduces over the batch and takes ``sample_weight``. Unlike ``keras.losses``, ``y_true`` and
``y_pred`` must have the same shape: a ``(N, 1)`` target against an ``(N,)`` prediction is an
error here, never a silent squeeze or broadcast.

Only ``keras.ops`` is used, so the losses run on the TensorFlow, JAX and torch backends. The
float64 twins of these losses are in :mod:`companion.reference`.
"""

from __future__ import annotations

import keras
from keras import ops

from companion._common import check_delta as _check_delta
from companion.keras._checks import LossWithOptions as _LossWithOptions
from companion.keras._checks import Option as _Option
from companion.keras._checks import as_tensors as _as_tensors
from companion.keras._checks import mean_over_last_axis as _mean_over_last_axis

__all__ = ["Huber", "PseudoHuber", "huber", "pseudo_huber"]


def huber(y_true, y_pred, delta: float = 1.0):
    """The Huber loss of ``y_pred - y_true`` per sample (Huber, 1964).

    Formula::

        r = y_pred - y_true
        q = clip(|r|, 0, delta)
        loss = mean(0.5 * q**2 + delta * (|r| - q), axis=-1)

    which is ``0.5 r**2`` where ``|r| <= delta`` and ``delta * (|r| - 0.5 delta)`` elsewhere.
    Equal to ``keras.losses.huber`` for inputs of equal shape, up to rounding; the element-wise
    values are those of ``torch.nn.functional.huber_loss(reduction="none")``. float64 inputs
    give float64 values on every backend.

    Args:
        y_true: targets, shape ``(..., d)``.
        y_pred: predictions, the shape of ``y_true``.
        delta: the threshold between the quadratic and the linear piece, finite and > 0.

    Returns:
        The mean loss over the last axis, shape ``(...)``: one value per sample.

    Raises:
        ValueError: if the shapes differ (the message names both) or ``delta`` is not a
            finite number > 0.

    Example:
        >>> y_true = [[0.0, 1.0], [0.0, 0.0]]
        >>> y_pred = [[0.6, 0.4], [0.4, 0.6]]
        >>> [round(float(value), 4) for value in huber(y_true, y_pred)]
        [0.18, 0.13]
    """
    delta = _check_delta(delta)
    y_true, y_pred = _as_tensors(y_true, y_pred)
    abs_error = ops.abs(y_pred - y_true)
    # Written without a branch, so that no gradient passes through an unused piece. The mean
    # keeps float64 on the torch backend, where keras.losses.huber takes it in float32.
    # clip, not minimum: on the torch backend ops.minimum and ops.maximum return float32 for
    # float64 inputs (Keras demotes 64-bit dtypes there); ops.clip keeps the dtype.
    quadratic = ops.clip(abs_error, 0.0, delta)
    return _mean_over_last_axis(0.5 * ops.square(quadratic) + delta * (abs_error - quadratic))


def pseudo_huber(y_true, y_pred, delta: float = 1.0):
    """The pseudo-Huber loss of ``y_pred - y_true`` per sample.

    Formula::

        r = y_pred - y_true
        loss = mean(delta**2 * (sqrt(1 + (r / delta)**2) - 1), axis=-1)

    A smooth version of :func:`huber` (Hartley and Zisserman, 2004, appendix A6):
    ``0.5 r**2`` near zero, ``delta |r| - delta**2`` far out; finite for float16 residuals of
    any size.

    Args:
        y_true: targets, shape ``(..., d)``.
        y_pred: predictions, the shape of ``y_true``.
        delta: the scale of the transition, finite and > 0.

    Returns:
        The mean loss over the last axis, shape ``(...)``: one value per sample.

    Raises:
        ValueError: if the shapes differ (the message names both) or ``delta`` is not a
            finite number > 0.

    Example:
        >>> y_true = [[0.0, 0.0], [0.0, 0.0]]
        >>> y_pred = [[0.0, 1.0], [-3.0, 3.0]]
        >>> [round(float(value), 4) for value in pseudo_huber(y_true, y_pred)]
        [0.2071, 2.1623]
    """
    delta = _check_delta(delta)
    y_true, y_pred = _as_tensors(y_true, y_pred)
    abs_error = ops.abs(y_pred - y_true)
    # Computed as |r| * delta * s / (t + sqrt(t**2 + s**2)) with a = |r| / delta,
    # m = maximum(a, 1), s = a / m, t = 1 / m: equal to the formula for every m > 0, but with no
    # cancellation near 0, no overflow of a**2 (float16 overflows at a = 256), and an exact
    # gradient (the value does not depend on m, so the kink of maximum at |r| = delta
    # contributes nothing).
    scaled = abs_error / delta
    scale = 1.0 + ops.relu(scaled - 1.0)  # maximum(scaled, 1), keeping float64 (see huber)
    small, inverse = scaled / scale, 1.0 / scale
    ratio = small / (inverse + ops.sqrt(ops.square(inverse) + ops.square(small)))
    return _mean_over_last_axis(abs_error * delta * ratio)


@keras.saving.register_keras_serializable(package="companion")
class Huber(_LossWithOptions):
    """The Huber loss as a ``keras.losses.Loss``; see :func:`huber` for the formula.

    Like ``keras.losses.Huber``, but ``y_true`` and ``y_pred`` must have the same shape.
    Per-sample values (the mean over the last axis) are weighted by ``sample_weight`` and
    reduced over the batch as ``reduction`` says.

    Args:
        delta: the threshold between the quadratic and the linear piece, finite and > 0.
        reduction: as in ``keras.losses.Loss``, ``"sum_over_batch_size"`` by default.
        name: the loss's name.
        dtype: the dtype of the computation, ``keras.backend.floatx()`` by default.

    Raises:
        ValueError: for a ``delta`` that :func:`huber` rejects, at construction or when
            assigned to ``delta``; for mismatched shapes, when called.

    Example:
        >>> loss = Huber(delta=1.0)
        >>> round(float(loss([[0.0, 1.0], [0.0, 0.0]], [[0.6, 0.4], [0.4, 0.6]])), 4)
        0.155
        >>> Huber.from_config(loss.get_config()).delta
        1.0
    """

    delta = _Option(_check_delta)

    def __init__(self, delta=1.0, reduction="sum_over_batch_size", name="huber", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.delta = delta

    def call(self, y_true, y_pred):
        return huber(y_true, y_pred, delta=self.delta)


@keras.saving.register_keras_serializable(package="companion")
class PseudoHuber(_LossWithOptions):
    """The pseudo-Huber loss as a ``keras.losses.Loss``; see :func:`pseudo_huber`.

    Per-sample values (the mean over the last axis) are weighted by ``sample_weight`` and
    reduced over the batch as ``reduction`` says.

    Args:
        delta: the scale of the transition, finite and > 0.
        reduction: as in ``keras.losses.Loss``, ``"sum_over_batch_size"`` by default.
        name: the loss's name.
        dtype: the dtype of the computation, ``keras.backend.floatx()`` by default.

    Raises:
        ValueError: for a ``delta`` that :func:`pseudo_huber` rejects, at construction or when
            assigned to ``delta``; for mismatched shapes, when called.

    Example:
        >>> loss = PseudoHuber(delta=1.0, reduction="sum")
        >>> round(float(loss([[0.0, 0.0]], [[0.0, 1.0]])), 4)
        0.2071
    """

    delta = _Option(_check_delta)

    def __init__(self, delta=1.0, reduction="sum_over_batch_size", name="pseudo_huber", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.delta = delta

    def call(self, y_true, y_pred):
        return pseudo_huber(y_true, y_pred, delta=self.delta)
