"""Soft F-beta and precision-at-recall losses for Keras 3, on any backend (``keras.ops`` only).

The Keras twins of :mod:`companion.torch.precision`, in Keras's conventions:
``(y_true, y_pred)`` order and probabilities by default (``from_logits=False``), as in
``keras.losses``. The values equal the PyTorch ones on the same data.

==========================  ===============================================================
``soft_fbeta``              ``1 - soft F-beta``, a scalar pooled over the batch
``SoftFBeta``               the same as a ``keras.losses.Loss``
``PrecisionAtRecall``       Eban et al. (2017): precision subject to recall >= a target, with
                            a trainable Lagrange multiplier (see its docstring for ``fit``)
==========================  ===============================================================

With ``class_index``, ``y_pred`` holds ``C`` classes on its last axis (Keras is channels-last)
and ``y_true`` the class indices, of shape ``y_pred.shape[:-1]``; that class is then the
positive one, against the rest.
"""

from __future__ import annotations

import math

import keras
from keras import ops

from companion._common import PROBABILITY_CLIP, SURROGATES
from companion._common import check_beta as _check_beta
from companion._common import check_choice as _check_choice
from companion._common import check_class_index as _check_class_index
from companion._common import check_number as _check_number
from companion._common import check_target_recall as _check_target_recall
from companion.keras._checks import HALF_DTYPES as _HALF
from companion.keras._checks import LossWithOptions as _LossWithOptions
from companion.keras._checks import Option as _Option
from companion.keras._checks import check_same_shape as _check_same_shape
from companion.keras._checks import shape as _shape

__all__ = ["PrecisionAtRecall", "SoftFBeta", "soft_fbeta"]

#: Default of ``epsilon``, ``keras.backend.epsilon()``: keeps the ratio finite when the
#: denominator's sum is 0, and makes ``soft_fbeta`` with ``beta=1`` equal ``keras.losses.Dice``.
EPSILON = 1e-7


def _prepare(y_true, y_pred, class_index):
    """Tensors of a floating dtype (float32 at least), with their shapes checked."""
    y_pred = ops.convert_to_tensor(y_pred)
    if not keras.backend.is_float_dtype(y_pred.dtype):
        y_pred = ops.cast(y_pred, keras.backend.floatx())
    if keras.backend.standardize_dtype(y_pred.dtype) in _HALF:
        # Half-precision sums of many probabilities lose digits; accumulate in float32.
        y_pred = ops.cast(y_pred, "float32")
    y_true = ops.convert_to_tensor(y_true)
    true_shape, pred_shape = _shape(y_true), _shape(y_pred)
    if class_index is None:
        _check_same_shape(true_shape, pred_shape)
        return ops.cast(y_true, y_pred.dtype), y_pred
    if len(pred_shape) < 2 or true_shape != pred_shape[:-1]:
        raise ValueError(
            "with class_index, y_pred must be (..., C) and y_true hold class indices (...), got "
            f"y_true {true_shape} and y_pred {pred_shape}"
        )
    classes = pred_shape[-1]
    if classes is not None and classes < 2:
        raise ValueError(f"with class_index, y_pred needs C >= 2 classes, got y_pred {pred_shape}")
    if classes is not None and class_index >= classes:
        raise ValueError(
            f"class_index must be < C = {classes} for y_pred {pred_shape}, got {class_index}"
        )
    positive = ops.cast(ops.equal(ops.cast(y_true, "int32"), class_index), y_pred.dtype)
    return positive, y_pred


def _positive_probability(y_true, y_pred, from_logits, class_index):
    positive, y_pred = _prepare(y_true, y_pred, class_index)
    if class_index is None:
        return positive, ops.sigmoid(y_pred) if from_logits else y_pred
    if from_logits:
        y_pred = ops.softmax(y_pred, axis=-1)
    return positive, ops.take(y_pred, class_index, axis=-1)


def _positive_logit(y_true, y_pred, from_logits, class_index):
    positive, y_pred = _prepare(y_true, y_pred, class_index)
    if class_index is None:
        if from_logits:
            return positive, y_pred
        probability = y_pred
    else:
        if from_logits:
            # softmax_k = sigmoid(x_k - logsumexp_{j != k} x_j), in log-space.
            is_class = ops.one_hot(class_index, y_pred.shape[-1], dtype="bool")
            rest = ops.logsumexp(ops.where(is_class, -math.inf, y_pred), axis=-1)
            return positive, ops.take(y_pred, class_index, axis=-1) - rest
        probability = ops.take(y_pred, class_index, axis=-1)
    probability = ops.clip(probability, PROBABILITY_CLIP, 1.0 - PROBABILITY_CLIP)
    return positive, ops.log(probability) - ops.log1p(-probability)


def soft_fbeta(y_true, y_pred, *, beta=1.0, from_logits=False, class_index=None, epsilon=EPSILON):
    """One minus the soft F-beta score, pooled over the whole batch.

    Formula, with ``p`` the predicted probability of the positive class, ``t`` the target
    and the soft counts ``TP = sum(p t)``, ``FN = sum((1 - p) t)``, ``FP = sum(p (1 - t))``
    over every element of the batch::

        loss = 1 - (1 + beta**2) TP / ((1 + beta**2) TP + beta**2 FN + FP + epsilon)
             = 1 - (1 + beta**2) TP / (beta**2 sum(t) + sum(p) + epsilon)

    F-beta does not decompose over samples, so the value is one scalar for the batch, not a
    value per sample as other Keras loss functions return: ``sample_weight`` has no
    per-sample meaning here (the :class:`SoftFBeta` class refuses it). For ``beta = 1`` it
    equals ``keras.losses.Dice()`` (whose smoothing term is ``keras.backend.epsilon()``, the
    default here). A batch without positives gives 1 with zero gradient. Equal to
    ``companion.torch.precision.soft_fbeta_loss`` with ``eps=epsilon``.

    Args:
        y_true: 0/1 (or soft) targets of ``y_pred``'s shape; class indices of shape
            ``y_pred.shape[:-1]`` with ``class_index``.
        y_pred: probabilities (default) or logits; ``(..., C)`` with ``class_index``.
        beta: the weight of recall relative to precision, a finite number ``> 0``.
        from_logits: ``False`` (default) if ``y_pred`` holds probabilities, ``True`` for
            logits (sigmoid, or softmax over the last axis with ``class_index``).
        class_index: ``None`` for a binary problem, or the class counted as positive.
        epsilon: the term added to the denominator, ``>= 0``.

    Returns:
        A scalar tensor in ``[0, 1]``, of ``y_pred``'s dtype (float32 for float16 and
        bfloat16 inputs, whose sums are accumulated in float32).

    Raises:
        ValueError: if the shapes do not match (the message names both), if ``beta <= 0``,
            if ``class_index`` is not an int in ``[0, C)`` or ``epsilon`` is negative.

    References:
        van Rijsbergen (1979), *Information Retrieval*, chapter 7 (the F-measure).

    Example:
        >>> y_true = [1.0, 0.0, 1.0, 0.0, 0.0]
        >>> y_pred = [0.9, 0.6, 0.4, 0.2, 0.1]
        >>> round(float(soft_fbeta(y_true, y_pred, epsilon=0.0)), 6)  # 1 - 2.6 / 4.2
        0.380952
        >>> round(float(soft_fbeta(y_true, y_pred, beta=2.0, epsilon=0.0)), 6)  # 1 - 6.5/10.2
        0.362745
    """
    beta = _check_beta(beta)
    class_index = _check_class_index(class_index)
    epsilon = _check_number("epsilon", epsilon)
    positive, probability = _positive_probability(y_true, y_pred, from_logits, class_index)
    beta2 = beta * beta
    true_positives = ops.sum(probability * positive)
    denominator = beta2 * ops.sum(positive) + ops.sum(probability) + epsilon
    return 1.0 - (1.0 + beta2) * true_positives / denominator


@keras.saving.register_keras_serializable(package="companion")
class SoftFBeta(_LossWithOptions):
    """One minus the soft F-beta score as a Keras loss; see :func:`soft_fbeta`.

    The loss is pooled over the batch, so it depends on the batch size and composition:
    use batches large enough to hold positives. ``sample_weight`` (and hence ``class_weight``
    in ``fit``, which Keras turns into sample weights) is refused with a ``ValueError``:
    F-beta has no per-sample terms to weight; ``beta`` sets the balance of precision and
    recall instead.

    Args:
        beta: the weight of recall relative to precision, a finite number ``> 0``.
        from_logits: ``False`` (default) if ``y_pred`` holds probabilities.
        class_index: ``None`` for a binary problem, or the class counted as positive.
        epsilon: the term added to the denominator, ``>= 0``.
        name: the loss's name.
        dtype: the dtype of the computation, ``keras.backend.floatx()`` by default.

    Raises:
        ValueError: for arguments :func:`soft_fbeta` rejects (at construction or when
            assigned), mismatched shapes, or a ``sample_weight`` (when called).

    Example:
        >>> loss = SoftFBeta(beta=1.0)
        >>> value = loss([[1.0], [0.0], [1.0]], [[0.8], [0.3], [0.6]])
        >>> round(float(value), 6)  # 1 - 2.8 / 3.7
        0.243243
    """

    beta = _Option(_check_beta)
    from_logits = _Option(bool)
    class_index = _Option(_check_class_index)
    epsilon = _Option(_check_number, "epsilon")

    def __init__(
        self,
        beta=1.0,
        *,
        from_logits=False,
        class_index=None,
        epsilon=EPSILON,
        name="soft_fbeta",
        dtype=None,
    ):
        super().__init__(name=name, reduction="sum_over_batch_size", dtype=dtype)
        self.beta, self.from_logits = beta, from_logits
        self.class_index, self.epsilon = class_index, epsilon

    def __call__(self, y_true, y_pred, sample_weight=None):
        if sample_weight is not None:
            raise ValueError(
                "SoftFBeta is pooled over the batch and has no per-sample terms, so it takes no "
                "sample_weight (nor class_weight in fit); set beta to trade precision for recall"
            )
        return super().__call__(y_true, y_pred)

    def call(self, y_true, y_pred):
        return soft_fbeta(
            y_true,
            y_pred,
            beta=self.beta,
            from_logits=self.from_logits,
            class_index=self.class_index,
            epsilon=self.epsilon,
        )

    def get_config(self):
        # The reduction is fixed: not a constructor argument, so not in the config.
        config = super().get_config()
        del config["reduction"]
        return config


def _surrogate(logit, surrogate):
    """An upper bound of the 0-1 loss ``1[logit <= 0]``, element-wise."""
    if surrogate == "hinge":
        return ops.relu(1.0 - logit)
    return ops.softplus(-logit) / math.log(2.0)


@keras.saving.register_keras_serializable(package="companion")
class PrecisionAtRecall(_LossWithOptions):
    """Maximize precision subject to recall >= ``target_recall`` (Eban et al., 2017).

    The Lagrangian of ``min FP s.t. TP >= alpha |Y+|`` with the counts replaced by the
    surrogate bounds of Eban et al. (``alpha = target_recall``, ``z`` the logit of the
    positive class, ``l`` the cross-entropy in bits ``log2(1 + exp(-z))`` or the hinge
    ``max(0, 1 - z)``, both upper bounds of ``1[z <= 0]``). Per element::

        loss_i = (1 - t_i) l(-z_i) + lambda t_i (l(z_i) - (1 - alpha))

    which the default reduction averages over the batch into
    ``(sum_{Y-} l(-z) + lambda (sum_{Y+} l(z) - (1 - alpha) |Y+|)) / N``, the value of
    ``companion.torch.precision.PrecisionAtRecallLoss`` (whose docstring derives it).
    ``sample_weight`` weights each element's terms, constraint included.

    **The multiplier.** ``lambda`` is the trainable ``keras.Variable`` :attr:`multiplier`.
    It enters the loss as ``2 * stop_gradient(lambda) - lambda``: the value is ``lambda``
    (exactly), the gradient is negated, so the optimizer's descent step is an ascent step in
    ``lambda`` (by about the learning rate per step with Adam). It carries the constraint
    ``keras.constraints.NonNeg()``, which Keras optimizers apply after each update, so
    ``lambda >= 0`` (projected gradient ascent).

    **Inside** ``model.fit``: a loss is not part of the model, and ``fit`` only trains the
    model's ``trainable_variables``. Track the multiplier in the model by assigning it to an
    attribute before the first ``fit`` (Keras 3 tracks variables assigned to a model's
    attributes); this works on the TensorFlow and the torch backends::

        criterion = PrecisionAtRecall(target_recall=0.8)
        model.lagrange_multiplier = criterion.multiplier  # now in model.trainable_variables
        model.compile(optimizer=keras.optimizers.Adam(0.01), loss=criterion)
        model.fit(x, y, ...)

    Without that line ``lambda`` keeps its initial value and the loss is a fixed weighting
    of the classes. The tracked variable becomes one of the model's weights: ``save_weights``
    stores it, and ``load_weights`` expects a model with the same attribute.

    Args:
        target_recall: ``alpha``, in the open interval ``(0, 1)``.
        surrogate: ``"cross_entropy"`` (default) or ``"hinge"``.
        from_logits: ``False`` (default) if ``y_pred`` holds probabilities, which are
            clipped to ``[1e-7, 1 - 1e-7]`` before their logit is taken; ``True`` for logits.
        class_index: ``None`` for a binary problem, or the class counted as positive (its
            logit against the rest, ``x_k - logsumexp_{j != k} x_j``).
        multiplier_init: the initial ``lambda``, ``>= 0``; assigning it after construction
            changes the config, not :attr:`multiplier`.
        reduction: a Keras reduction, ``"sum_over_batch_size"`` by default.
        name: the loss's name.
        dtype: the dtype of the computation and of the multiplier, ``floatx()`` by default.

    Raises:
        ValueError: if ``target_recall`` is not in ``(0, 1)``, ``surrogate`` is unknown,
            ``multiplier_init`` negative or ``class_index`` not an int ``>= 0`` (at
            construction or when assigned); for mismatched shapes when called.

    References:
        E. Eban, M. Schain, A. Mackey, A. Gordon, R. A. Saurous and G. Elidan (2017),
        "Scalable Learning of Non-Decomposable Objectives", AISTATS, PMLR 54.

    Example:
        >>> loss = PrecisionAtRecall(0.8, surrogate="hinge", from_logits=True)
        >>> y_true = [1.0, 0.0, 1.0, 0.0]
        >>> y_pred = [2.0, -1.0, 0.5, 0.3]
        >>> value = loss(y_true, y_pred)  # (0 + 1.3 + 1 * (0 + 0.5 - 0.2 * 2)) / 4
        >>> round(float(ops.stop_gradient(value)), 6)
        0.35
    """

    target_recall = _Option(_check_target_recall)
    surrogate = _Option(_check_choice, "surrogate", choices=SURROGATES)
    from_logits = _Option(bool)
    class_index = _Option(_check_class_index)
    # The initial value of the multiplier, for get_config; assigning it later leaves the
    # multiplier as it is.
    multiplier_init = _Option(_check_number, "multiplier_init")

    def __init__(
        self,
        target_recall,
        *,
        surrogate="cross_entropy",
        from_logits=False,
        class_index=None,
        multiplier_init=1.0,
        reduction="sum_over_batch_size",
        name="precision_at_recall",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.target_recall, self.surrogate = target_recall, surrogate
        self.from_logits, self.class_index = from_logits, class_index
        self.multiplier_init = multiplier_init
        #: The Lagrange multiplier ``lambda``, trained by gradient ascent, kept ``>= 0``.
        self.multiplier = keras.Variable(
            self.multiplier_init, dtype=self.dtype, trainable=True, name="lagrange_multiplier"
        )
        self.multiplier.constraint = keras.constraints.NonNeg()

    def call(self, y_true, y_pred):
        positive, logit = _positive_logit(y_true, y_pred, self.from_logits, self.class_index)
        multiplier = ops.cast(self.multiplier, logit.dtype)
        # Value: lambda; gradient: -1. The optimizer's descent is then an ascent in lambda.
        multiplier = 2.0 * ops.stop_gradient(multiplier) - multiplier
        negative_part = (1.0 - positive) * _surrogate(-logit, self.surrogate)
        positive_part = positive * (_surrogate(logit, self.surrogate) - (1.0 - self.target_recall))
        return negative_part + multiplier * positive_part
