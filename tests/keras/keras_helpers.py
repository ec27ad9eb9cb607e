"""Plain helper functions of the Keras tests, on whichever backend KERAS_BACKEND names.

Tests import them by name (``from keras_helpers import to_numpy``): pytest puts this folder
on ``sys.path`` as it imports the test files in it.
"""

import keras
import numpy as np
import pytest
from keras import ops

BACKEND = keras.backend.backend()


def to_numpy(tensor):
    # keras.ops.convert_to_numpy goes through np.array(tensor), which warns on the torch backend.
    if hasattr(tensor, "detach"):
        return tensor.detach().cpu().numpy()
    return ops.convert_to_numpy(tensor)


def value_and_grad(function, y_pred: np.ndarray):
    """The value of function(y_pred) and the gradient of its sum, on the current backend."""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        variable = tf.Variable(y_pred)
        with tf.GradientTape() as tape:
            value = function(variable)
            total = tf.reduce_sum(value)
        return to_numpy(value), to_numpy(tape.gradient(total, variable))
    if BACKEND == "torch":
        import torch

        tensor = torch.tensor(y_pred, requires_grad=True)
        value = function(tensor)
        value.sum().backward()
        return to_numpy(value), to_numpy(tensor.grad)
    pytest.skip(f"no gradient function for the {BACKEND} backend")
