"""Argument checks and small tensor helpers shared by the Keras loss modules (private).

``companion.keras.regression``, ``companion.keras.segmentation`` and
``companion.keras.precision`` import them from here (and the framework-free checks from
``companion._common``), never from one another. Each check raises ``ValueError`` with a
message that names the argument and, for shapes, both shapes; the tests match these messages.

:class:`Option` and :class:`LossWithOptions` keep each constructor argument of a loss class
once, as an attribute that is checked whenever it is assigned and that ``get_config`` reads.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

#: The dtypes whose sums lose digits; the losses compute them in float32.
HALF_DTYPES = ("float16", "bfloat16")


# ------------------------------------------------------------------------- tensors and shapes


def check_same_shape(true_shape: tuple, pred_shape: tuple) -> None:
    """Equal shapes, where an unknown (None) dimension of a symbolic tensor matches anything."""
    if len(true_shape) != len(pred_shape) or any(
        a is not None and b is not None and a != b
        for a, b in zip(true_shape, pred_shape, strict=True)
    ):
        raise ValueError(
            "y_true and y_pred must have the same shape, got "
            f"y_true {true_shape} and y_pred {pred_shape}"
        )


def shape(x) -> tuple:
    """The shape of a tensor as a tuple of ints, None for a dimension not known yet."""
    return tuple(None if d is None else int(d) for d in x.shape)


def as_tensors(y_true, y_pred):
    """``y_true`` and ``y_pred`` as tensors of ``y_pred``'s dtype, of one shape."""
    y_pred = ops.convert_to_tensor(y_pred)
    y_true = ops.convert_to_tensor(y_true, dtype=y_pred.dtype)
    check_same_shape(shape(y_true), shape(y_pred))
    return y_true, y_pred


def mean_over_last_axis(values):
    """The mean over the last axis, in the dtype of ``values``."""
    # Not ops.mean: on the torch backend it computes in float32 even for float64 inputs.
    # Dividing before summing keeps float64 precision and cannot overflow float16.
    count = ops.cast(ops.shape(values)[-1], values.dtype)
    return ops.sum(values / count, axis=-1)


# ------------------------------------------------------------------------ weights and costs


def as_per_channel(name: str, values, y_pred):
    """A number, or one value per channel (the last axis), as a tensor of y_pred's dtype."""
    values = np.asarray(values, dtype="float64")
    channels = y_pred.shape[-1]
    if values.ndim > 1 or (values.ndim == 1 and channels is not None and values.size != channels):
        raise ValueError(
            f"{name} must be a number or one value per channel, shape ({channels},) for "
            f"y_pred {tuple(y_pred.shape)}, got {name} {values.shape}"
        )
    return ops.convert_to_tensor(values, dtype=y_pred.dtype)


def as_class_vector(name: str, values, y_pred):
    """One value per class (the last axis of ``y_pred``), as a tensor of y_pred's dtype."""
    values = ops.convert_to_tensor(np.asarray(values, dtype="float64"), dtype=y_pred.dtype)
    n_classes = y_pred.shape[-1]
    if len(values.shape) != 1 or (n_classes is not None and values.shape[0] != n_classes):
        raise ValueError(
            f"{name} must have one entry per class, shape ({n_classes},) for y_pred "
            f"{tuple(y_pred.shape)}, got {name} {tuple(values.shape)}"
        )
    return values


def as_cost_matrix(cost_matrix, n_classes: int | None = None) -> np.ndarray:
    """A square float64 ``cost_matrix[true, predicted]``, ``(n_classes, n_classes)`` if given."""
    cost_matrix = np.asarray(cost_matrix, dtype="float64")
    if cost_matrix.ndim != 2 or cost_matrix.shape[0] != cost_matrix.shape[1]:
        raise ValueError(
            "cost_matrix must be a square matrix (C, C), cost_matrix[true, predicted], got "
            f"shape {cost_matrix.shape}"
        )
    if n_classes is not None and cost_matrix.shape[0] != n_classes:
        raise ValueError(
            f"cost_matrix must be ({n_classes}, {n_classes}) for the {n_classes} classes of "
            f"y_pred, got cost_matrix {cost_matrix.shape}"
        )
    return cost_matrix


# A loss class stores its array options as plain floats and lists, which get_config returns as
# they are (JSON). Their sizes are checked against y_pred when the loss is called.


def float_or_list(values) -> float | list | None:
    """None, a number as a float, or an array of numbers as (nested) lists of floats."""
    if values is None:
        return None
    values = np.asarray(values, dtype="float64")
    return float(values) if values.ndim == 0 else values.tolist()


def class_weights_list(class_weights) -> list[float] | None:
    """None, or one weight per class as a list of floats."""
    if class_weights is None:
        return None
    class_weights = np.asarray(class_weights, dtype="float64")
    if class_weights.ndim != 1:
        raise ValueError(
            "class_weights must be one weight per class, shape (C,), got shape "
            f"{class_weights.shape}"
        )
    return class_weights.tolist()


def cost_matrix_list(cost_matrix) -> list[list[float]]:
    """A square cost matrix as a list of rows of floats."""
    return as_cost_matrix(cost_matrix).tolist()


# ------------------------------------------------------------------------- options of a Loss


class Option:
    """A constructor argument of a :class:`LossWithOptions`, stored once, as an attribute.

    Each assignment, the constructor's and any later one (``loss.smooth = 5.0``), stores
    ``check(*args, value, **keywords)``: the value as the loss keeps it (a float, a bool, a
    list: what ``get_config`` returns), or a ``ValueError`` for a value the loss rejects. So
    ``Option(check_number, "smooth", strict=True)`` checks ``smooth`` as the functions do.

    Example:
        >>> class Scaled(LossWithOptions):
        ...     scale = Option(float)
        ...     def __init__(self, scale=1.0, reduction="sum_over_batch_size", name=None):
        ...         super().__init__(name=name, reduction=reduction)
        ...         self.scale = scale
        >>> loss = Scaled(scale=2)
        >>> loss.scale = 3
        >>> loss.scale, loss.get_config()["scale"]
        (3.0, 3.0)
    """

    def __init__(self, check, *args, **keywords):
        self.check, self.args, self.keywords = check, args, keywords

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, instance, owner=None):
        if instance is None:
            return self
        try:
            return instance.__dict__[self.name]
        except KeyError:
            raise AttributeError(self.name) from None

    def __set__(self, instance, value):
        instance.__dict__[self.name] = self.check(*self.args, value, **self.keywords)


class LossWithOptions(keras.losses.Loss):
    """A ``keras.losses.Loss`` whose :class:`Option` attributes make up its configuration.

    ``get_config`` returns ``name``, ``reduction``, every option (in the order the classes
    define them, base classes first) and ``dtype``: the values the attributes hold now, so
    that ``from_config(get_config())`` rebuilds the loss as it is.
    """

    @classmethod
    def option_names(cls) -> list[str]:
        """The names of the class's options, base classes first."""
        names = []
        for klass in reversed(cls.__mro__):
            for name, value in vars(klass).items():
                if isinstance(value, Option) and name not in names:
                    names.append(name)
        return names

    def get_config(self):
        options = {name: getattr(self, name) for name in self.option_names()}
        return {**super().get_config(), **options, "dtype": self.dtype}
