"""companion.keras segmentation losses against companion.torch, the reference and keras.losses.

Runs on whichever backend KERAS_BACKEND names; `make test` runs it on TensorFlow and torch.
"""

import keras
import numpy as np
import pytest
import torch
from helpers import binary_data
from keras import ops
from keras_helpers import BACKEND, to_numpy, value_and_grad

import companion.torch as companion_torch
from companion import reference
from companion.keras import (
    CostSensitiveCategoricalCrossentropy,
    Dice,
    DiceBCE,
    ExpectedCost,
    Focal,
    Tversky,
    WeightedBCE,
    WeightedCategoricalCrossentropy,
    class_weight_to_sample_weight,
    cost_sensitive_categorical_crossentropy,
    dice,
    dice_bce,
    expected_cost,
    focal,
    tversky,
    weighted_bce,
    weighted_categorical_crossentropy,
)

BINARY_SHAPE = (3, 4, 5, 2)  # of binary_data unless a test says otherwise: N, H, W, C


def class_data(seed, shape=(2, 3, 4, 5)):
    """float64 one-hot labels and logits, channels last (N, H, W, C)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, shape[-1], size=shape[:-1])
    return np.eye(shape[-1])[labels], rng.normal(scale=2.0, size=shape), labels


def channels_first(array):
    return torch.tensor(np.moveaxis(array, -1, 1))


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def softmax(x):
    exp = np.exp(x - x.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)


# Each binary loss: the Keras function with its options, the PyTorch twin with the same
# options (logits), and whether the Keras values are per pixel (the mean over channels).
BINARY = {
    "weighted_bce": (
        lambda t, p, logits: weighted_bce(t, p, pos_weight=3.0, from_logits=logits),
        lambda x, t: companion_torch.weighted_bce_loss(x, t, pos_weight=3.0, reduction="none"),
        True,
    ),
    "dice": (
        lambda t, p, logits: dice(t, p, smooth=0.5, from_logits=logits),
        lambda x, t: companion_torch.dice_loss(x, t, smooth=0.5, reduction="none"),
        False,
    ),
    "dice_bce": (
        lambda t, p, logits: dice_bce(
            t, p, dice_weight=0.3, bce_weight=2.0, pos_weight=4.0, from_logits=logits
        ),
        lambda x, t: companion_torch.dice_bce_loss(
            x, t, dice_weight=0.3, bce_weight=2.0, pos_weight=4.0, reduction="none"
        ),
        False,
    ),
    "focal": (
        lambda t, p, logits: focal(t, p, gamma=2.0, alpha=0.25, from_logits=logits),
        lambda x, t: companion_torch.focal_loss(x, t, gamma=2.0, alpha=0.25, reduction="none"),
        True,
    ),
    "focal_small_gamma": (
        lambda t, p, logits: focal(t, p, gamma=0.5, from_logits=logits),
        lambda x, t: companion_torch.focal_loss(x, t, gamma=0.5, reduction="none"),
        True,
    ),
    "tversky": (
        lambda t, p, logits: tversky(t, p, alpha=0.3, beta=0.7, from_logits=logits),
        lambda x, t: companion_torch.tversky_loss(x, t, alpha=0.3, beta=0.7, reduction="none"),
        False,
    ),
}


@pytest.mark.parametrize("name", BINARY)
@pytest.mark.parametrize("from_logits", [True, False])
@pytest.mark.parametrize("soft", [False, True])
def test_binary_losses_equal_torch_in_values_and_gradients(name, from_logits, soft):
    keras_fn, torch_fn, per_pixel = BINARY[name]
    logits, y_true = binary_data(0, BINARY_SHAPE, soft=soft)
    y_pred = logits if from_logits else sigmoid(logits)
    values, grad = value_and_grad(
        lambda pred: keras_fn(ops.convert_to_tensor(y_true), pred, from_logits), y_pred
    )
    assert values.dtype == np.float64
    input = channels_first(logits).requires_grad_()
    # Per pixel: the mean of the PyTorch values over the channel axis 1.
    expected = torch_fn(input, channels_first(y_true))
    expected = expected.mean(1) if per_pixel else expected
    expected.sum().backward()
    assert values.shape == ((3, 4, 5) if per_pixel else (3,))
    np.testing.assert_allclose(values, expected.detach().numpy(), rtol=1e-12, atol=1e-15)
    expected_grad = np.moveaxis(input.grad.numpy(), 1, -1)
    if not from_logits:
        # Through p = sigmoid(x): dL/dp = dL/dx / (p (1 - p)).
        expected_grad = expected_grad / (y_pred * (1 - y_pred))
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-9, atol=1e-14)


def test_per_channel_pos_weight_equals_torch():
    logits, y_true = binary_data(14, BINARY_SHAPE)
    values = weighted_bce(y_true, logits, pos_weight=[3.0, 0.5], from_logits=True)
    expected = companion_torch.weighted_bce_loss(
        channels_first(logits),
        channels_first(y_true),
        pos_weight=torch.tensor([3.0, 0.5], dtype=torch.float64).reshape(2, 1, 1),
        reduction="none",
    )
    np.testing.assert_allclose(to_numpy(values), expected.mean(1).numpy(), rtol=1e-12)


@pytest.mark.parametrize("from_logits", [True, False])
def test_categorical_losses_equal_torch_and_reference(from_logits):
    y_true, logits, labels = class_data(1)
    y_pred = logits if from_logits else softmax(logits)
    class_weights = [0.5, 1.0, 2.0, 4.0, 8.0]
    cost_matrix = np.random.default_rng(2).uniform(0.0, 5.0, size=(5, 5))
    input, target = channels_first(logits).requires_grad_(), torch.tensor(labels)
    for keras_fn, torch_fn in [
        (
            lambda t, p: weighted_categorical_crossentropy(
                t, p, class_weights=class_weights, from_logits=from_logits
            ),
            lambda x: companion_torch.weighted_cross_entropy(
                x, target, class_weights=class_weights, reduction="none"
            ),
        ),
        (
            lambda t, p: cost_sensitive_categorical_crossentropy(
                t, p, cost_matrix, from_logits=from_logits
            ),
            lambda x: companion_torch.cost_sensitive_cross_entropy(
                x, target, cost_matrix, reduction="none"
            ),
        ),
        (
            lambda t, p: expected_cost(t, p, cost_matrix, from_logits=from_logits),
            lambda x: companion_torch.expected_cost_loss(x, target, cost_matrix, reduction="none"),
        ),
    ]:
        values, grad = value_and_grad(
            lambda pred, keras_fn=keras_fn: keras_fn(ops.convert_to_tensor(y_true), pred), y_pred
        )
        expected = torch_fn(input)
        assert values.shape == (2, 3, 4)
        np.testing.assert_allclose(values, expected.detach().numpy(), rtol=1e-12, atol=1e-15)
        if from_logits:
            (expected_grad,) = torch.autograd.grad(expected.sum(), input)
            np.testing.assert_allclose(
                grad, np.moveaxis(expected_grad.numpy(), 1, -1), rtol=1e-10, atol=1e-15
            )
    probabilities = np.moveaxis(softmax(logits), -1, 1)
    np.testing.assert_allclose(
        to_numpy(
            cost_sensitive_categorical_crossentropy(
                y_true, y_pred, cost_matrix, from_logits=from_logits
            )
        ),
        reference.cost_sensitive_cross_entropy(
            probabilities, labels, cost_matrix, from_logits=False
        ),
        rtol=1e-12,
    )
    np.testing.assert_allclose(
        to_numpy(expected_cost(y_true, y_pred, cost_matrix, from_logits=from_logits)),
        reference.expected_cost(probabilities, labels, cost_matrix, from_logits=False),
        rtol=1e-12,
    )


# ----------------------------------------------------------------------------- keras.losses


FLOAT64_RTOL = 1e-12 if BACKEND == "tensorflow" else 1e-6  # keras.losses' float32 means


def test_weighted_bce_without_pos_weight_is_keras_binary_crossentropy():
    logits, y_true = binary_data(3, BINARY_SHAPE)
    for from_logits, y_pred in ((True, logits), (False, sigmoid(logits))):
        ours = to_numpy(weighted_bce(y_true, y_pred, from_logits=from_logits))
        builtin = to_numpy(
            keras.losses.binary_crossentropy(y_true, y_pred, from_logits=from_logits)
        )
        np.testing.assert_allclose(ours, builtin, rtol=FLOAT64_RTOL, atol=1e-12)


def test_dice_is_keras_dice_per_sample_except_for_empty_masks():
    logits, y_true = binary_data(4, BINARY_SHAPE)
    y_pred = sigmoid(logits).astype("float32")
    y_true = y_true.astype("float32")
    builtin = keras.losses.Dice(axis=(1, 2, 3), reduction=None)(y_true, y_pred)
    ours = dice(y_true, y_pred, smooth=1e-7)
    # Keras adds epsilon = 1e-7 to the denominator only; smooth = 1e-7 is the same up to
    # epsilon / sum, far below float32 resolution, on the two non-empty samples.
    np.testing.assert_allclose(to_numpy(ours)[:2], to_numpy(builtin)[:2], rtol=1e-6)
    # An empty target predicted empty: 0 here, 1 for keras.losses.Dice.
    empty = np.zeros((1, 4, 4, 1), dtype="float32")
    assert float(to_numpy(dice(empty, empty))[0]) == 0.0
    assert (
        float(to_numpy(keras.losses.Dice(axis=(1, 2, 3), reduction=None)(empty, empty))[0]) == 1.0
    )


@pytest.mark.parametrize("from_logits", [True, False])
@pytest.mark.parametrize("gamma, alpha", [(2.0, None), (2.0, 0.25), (0.5, 0.6)])
def test_focal_is_keras_binary_focal_crossentropy(from_logits, gamma, alpha):
    logits, y_true = binary_data(5, BINARY_SHAPE)
    y_pred = logits if from_logits else sigmoid(logits)
    builtin = keras.losses.BinaryFocalCrossentropy(
        apply_class_balancing=alpha is not None,
        alpha=0.25 if alpha is None else alpha,
        gamma=gamma,
        from_logits=from_logits,
        reduction=None,
    )(y_true, y_pred)
    ours = focal(y_true, y_pred, gamma=gamma, alpha=alpha, from_logits=from_logits)
    np.testing.assert_allclose(to_numpy(ours), to_numpy(builtin), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("from_logits", [True, False])
def test_weighted_categorical_is_keras_categorical_crossentropy_times_weights(from_logits):
    y_true, logits, labels = class_data(6)
    y_pred = logits if from_logits else softmax(logits)
    builtin = to_numpy(
        keras.losses.CategoricalCrossentropy(from_logits=from_logits, reduction=None)(
            y_true, y_pred
        )
    )
    unweighted = to_numpy(
        weighted_categorical_crossentropy(y_true, y_pred, from_logits=from_logits)
    )
    np.testing.assert_allclose(unweighted, builtin, rtol=1e-6)
    class_weights = np.array([1.0, 2.0, 0.5, 3.0, 1.5])
    weighted = to_numpy(
        weighted_categorical_crossentropy(
            y_true, y_pred, class_weights=class_weights, from_logits=from_logits
        )
    )
    np.testing.assert_allclose(weighted, class_weights[labels] * builtin, rtol=1e-6)
    # Costs of ones: the plain cross-entropy.
    ones = to_numpy(
        cost_sensitive_categorical_crossentropy(
            y_true, y_pred, np.ones((5, 5)), from_logits=from_logits
        )
    )
    np.testing.assert_allclose(ones, builtin, rtol=1e-6)


def test_keras_tversky_weighs_false_negatives_with_alpha():
    logits, y_true = binary_data(7, BINARY_SHAPE)
    y_pred = sigmoid(logits)
    builtin = keras.losses.Tversky(alpha=0.8, beta=0.2, axis=(1, 2, 3), reduction=None)(
        y_true, y_pred
    )
    swapped = tversky(y_true, y_pred, alpha=0.2, beta=0.8, smooth=1e-7)
    as_named = tversky(y_true, y_pred, alpha=0.8, beta=0.2, smooth=1e-7)
    np.testing.assert_allclose(to_numpy(swapped)[:2], to_numpy(builtin)[:2], rtol=1e-6)
    assert np.all(np.abs(to_numpy(as_named)[:2] - to_numpy(builtin)[:2]) > 1e-3)


# ------------------------------------------------------------------------- classes, weights


def test_loss_classes_weight_and_reduce():
    logits, y_true = binary_data(8, shape=(2, 3, 3, 1))
    weight_map = np.random.default_rng(9).uniform(1.0, 5.0, size=(2, 3, 3))
    per_pixel = to_numpy(weighted_bce(y_true, logits, pos_weight=2.0, from_logits=True))
    for reduction, expected in [
        ("sum_over_batch_size", (weight_map * per_pixel).mean()),
        ("sum", (weight_map * per_pixel).sum()),
        ("none", weight_map * per_pixel),
    ]:
        loss = WeightedBCE(pos_weight=2.0, from_logits=True, reduction=reduction, dtype="float64")
        value = to_numpy(loss(y_true, logits, sample_weight=weight_map))
        np.testing.assert_allclose(value, expected, rtol=FLOAT64_RTOL)
    per_sample = to_numpy(dice(y_true, logits, from_logits=True))
    loss = Dice(from_logits=True, dtype="float64")
    value = to_numpy(loss(y_true, logits, sample_weight=np.array([0.25, 2.0])))
    np.testing.assert_allclose(value, (per_sample * [0.25, 2.0]).mean(), rtol=FLOAT64_RTOL)


CLASSES = {
    WeightedBCE: {"pos_weight": [2.0, 3.0], "from_logits": True},
    Dice: {"smooth": 0.5, "from_logits": True},
    DiceBCE: {
        "dice_weight": 0.5,
        "bce_weight": 2.0,
        "pos_weight": 3.0,
        "smooth": 0.1,
        "from_logits": True,
    },
    Focal: {"gamma": 1.5, "alpha": 0.25, "from_logits": True},
    Tversky: {"alpha": 0.3, "beta": 0.7, "smooth": 2.0, "from_logits": True},
    WeightedCategoricalCrossentropy: {"class_weights": [1.0, 4.0], "from_logits": True},
    CostSensitiveCategoricalCrossentropy: {
        "cost_matrix": [[0.0, 1.0], [5.0, 0.5]],
        "from_logits": True,
    },
    ExpectedCost: {"cost_matrix": [[0.0, 1.0], [5.0, 0.5]], "from_logits": True},
}


@pytest.mark.parametrize("loss_class", CLASSES, ids=lambda cls: cls.__name__)
def test_config_round_trip(loss_class):
    options = CLASSES[loss_class]
    loss = loss_class(**options, reduction="sum", name="segmentation", dtype="float64")
    config = loss.get_config()
    assert config == {"name": "segmentation", "reduction": "sum", "dtype": "float64", **options}
    assert loss_class.from_config(config).get_config() == config
    assert keras.saving.get_registered_name(loss_class) == f"companion>{loss_class.__name__}"
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(restored) is loss_class
    assert restored.get_config() == config
    logits, y_true = binary_data(10, shape=(2, 3, 3, 2))
    y_true[..., 1] = 1.0 - y_true[..., 0]  # one-hot for the categorical losses
    np.testing.assert_array_equal(
        to_numpy(restored(y_true, logits)), to_numpy(loss(y_true, logits))
    )


def test_float64_functions_and_the_reduced_dtype_of_the_loss_classes():
    # The functions keep float64; the classes reduce to whatever dtype keras.losses' own
    # classes reduce to (float32 on the torch backend in Keras 3.15, as the docstrings say).
    logits, y_true = binary_data(15, BINARY_SHAPE)
    y_pred = sigmoid(logits)
    builtin = keras.losses.BinaryCrossentropy(dtype="float64")(y_true, y_pred)
    expected = "float32" if BACKEND == "torch" else "float64"
    assert keras.backend.standardize_dtype(builtin.dtype) == expected
    for function, loss_class in ((dice, Dice), (weighted_bce, WeightedBCE), (focal, Focal)):
        values = function(y_true, y_pred)
        assert keras.backend.standardize_dtype(values.dtype) == "float64"
        reduced = loss_class(dtype="float64")(y_true, y_pred)
        assert keras.backend.standardize_dtype(reduced.dtype) == expected


def test_model_trains_saves_and_loads_with_a_weight_map(tmp_path):
    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=(8, 8, 1))
    outputs = keras.layers.Conv2D(1, 3, padding="same")(inputs)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=DiceBCE(from_logits=True))
    rng = np.random.default_rng(11)
    x = rng.normal(size=(8, 8, 8, 1)).astype("float32")
    y = (x > 1.0).astype("float32")
    history = model.fit(x, y, batch_size=4, epochs=3, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    logits = to_numpy(model(x)).astype("float64")
    expected = reference.dice_bce_loss(np.moveaxis(logits, -1, 1), np.moveaxis(y, -1, 1)).mean()
    np.testing.assert_allclose(model.evaluate(x, y, batch_size=8, verbose=0), expected, rtol=1e-5)
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored.loss, DiceBCE) and restored.loss.from_logits

    # A per-pixel sample_weight from class_weight_to_sample_weight trains a per-pixel loss.
    model.compile(optimizer="sgd", loss=WeightedBCE(from_logits=True))
    weights = class_weight_to_sample_weight(y, {0: 1.0, 1: 10.0})
    weighted = model.evaluate(x, y, sample_weight=to_numpy(weights), batch_size=8, verbose=0)
    per_pixel = reference.binary_cross_entropy_with_logits(logits, y).mean(axis=-1)
    expected = (np.where(y[..., 0] == 1, 10.0, 1.0) * per_pixel).mean()
    np.testing.assert_allclose(weighted, expected, rtol=1e-5)


def test_class_weight_to_sample_weight():
    y_true, _, labels = class_data(12, shape=(2, 3, 4, 3))
    weights = to_numpy(class_weight_to_sample_weight(y_true, {0: 0.5, 2: 4.0}))
    # Class 1 is missing from the mapping: weight 1, as in fit(class_weight=...).
    np.testing.assert_array_equal(weights, np.array([0.5, 1.0, 4.0])[labels])
    assert weights.shape == (2, 3, 4) and weights.dtype == np.float32
    from_sequence = to_numpy(class_weight_to_sample_weight(y_true, [0.5, 1.0, 4.0]))
    np.testing.assert_array_equal(from_sequence, weights)
    mask = np.array([[[[0.0], [1.0], [0.9]], [[0.2], [1.0], [0.0]]]])
    np.testing.assert_array_equal(
        to_numpy(class_weight_to_sample_weight(mask, {1: 9.0})),
        [[[1.0, 9.0, 9.0], [1.0, 9.0, 1.0]]],
    )
    with pytest.raises(ValueError, match=r"each of the 3 classes of y_true, got shape \(2,\)"):
        class_weight_to_sample_weight(y_true, [1.0, 2.0])
    with pytest.raises(ValueError, match=r"keys must be class indices >= 0"):
        class_weight_to_sample_weight(y_true, {-1: 2.0})
    with pytest.raises(ValueError, match=r"must have a channel axis.*got shape \(3,\)"):
        class_weight_to_sample_weight(np.zeros(3), {0: 1.0})


# ------------------------------------------------------------------- edge and extreme input


def test_empty_and_full_masks():
    empty, full = np.zeros((2, 4, 4, 1)), np.ones((2, 4, 4, 1))
    for loss in (dice, tversky):
        np.testing.assert_array_equal(to_numpy(loss(empty, empty)), [0.0, 0.0])
        np.testing.assert_array_equal(to_numpy(loss(full, full)), [0.0, 0.0])
    # Empty target, p = 0.5: sum(p) / (sum(p) + 1) = 8 / 9.
    np.testing.assert_allclose(to_numpy(dice(empty, np.full((2, 4, 4, 1), 0.5))), [8 / 9] * 2)
    for loss in (weighted_bce, focal, dice_bce):
        assert np.all(np.isfinite(to_numpy(loss(empty, np.full((2, 4, 4, 1), 0.5)))))
        assert np.all(np.isfinite(to_numpy(loss(full, empty))))


@pytest.mark.parametrize("name", BINARY)
def test_huge_logits_are_finite(name):
    keras_fn = BINARY[name][0]
    y_true = np.array([[[1.0], [0.0], [0.0], [1.0], [1.0]]])
    logits = np.array([[[1e4], [-1e4], [1e4], [-1e4], [0.0]]], dtype="float32")
    values, grad = value_and_grad(
        lambda pred: keras_fn(ops.convert_to_tensor(y_true, "float32"), pred, True), logits
    )
    assert np.all(np.isfinite(values)) and np.all(np.isfinite(grad))


def test_huge_logits_are_finite_for_categorical_losses():
    y_true = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype="float32")
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, -1e4]], dtype="float32")
    cost = np.ones((3, 3)) - np.eye(3)
    # Pixel 0 is right with certainty (loss 0); pixel 1 predicts class 1 for class 2 with a
    # margin of 2e4: cross-entropy 2e4, times class weight 3, or times cost[2, 1] = 1.
    for function, expected in (
        (
            lambda pred: weighted_categorical_crossentropy(
                y_true, pred, class_weights=[1.0, 2.0, 3.0], from_logits=True
            ),
            [0.0, 6e4],
        ),
        (
            lambda pred: cost_sensitive_categorical_crossentropy(
                y_true, pred, cost, from_logits=True
            ),
            [0.0, 2e4],
        ),
        # The expected cost saturates: p is one-hot, so the cost of the prediction, 0 and 1.
        (lambda pred: expected_cost(y_true, pred, cost, from_logits=True), [0.0, 1.0]),
    ):
        values, grad = value_and_grad(function, logits)
        assert np.all(np.isfinite(grad))
        np.testing.assert_allclose(values, expected, rtol=1e-6, atol=1e-3)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("name", BINARY)
def test_half_precision(name, dtype):
    keras_fn = BINARY[name][0]
    logits, y_true = binary_data(13, shape=(2, 16, 16, 1))
    y_pred = ops.cast(logits, dtype)
    values = keras_fn(ops.cast(y_true, dtype), y_pred, True)
    assert keras.backend.standardize_dtype(values.dtype) == dtype
    float64 = to_numpy(
        keras_fn(y_true, to_numpy(ops.cast(y_pred, "float32")).astype("float64"), True)
    )
    rtol = 2e-2 if dtype == "bfloat16" else 3e-3
    np.testing.assert_allclose(to_numpy(ops.cast(values, "float32")), float64, rtol=rtol, atol=rtol)


# --------------------------------------------------------------------------------- bad input


def test_bad_input_raises_value_error_naming_the_problem():
    y_true, y_pred = np.zeros((2, 4, 4, 1)), np.zeros((2, 4, 4))
    for function in (weighted_bce, dice, dice_bce, focal, tversky):
        with pytest.raises(ValueError, match=r"y_true \(2, 4, 4, 1\) and y_pred \(2, 4, 4\)"):
            function(y_true, y_pred)
    with pytest.raises(ValueError, match=r"y_true must hold 0/1 \(or soft\) float labels.*int64"):
        dice(np.zeros((2, 3, 1), dtype="int64"), np.zeros((2, 3, 1)))
    with pytest.raises(ValueError, match=r"y_true must hold one-hot \(float\) class labels.*int32"):
        weighted_categorical_crossentropy(np.zeros((2, 3), dtype="int32"), np.zeros((2, 3)))
    with pytest.raises(
        ValueError,
        match=r"shape \(3,\) for y_pred \(2, 3\), got class_weights "
        r"\(2,\)",
    ):
        weighted_categorical_crossentropy(np.zeros((2, 3)), np.zeros((2, 3)), class_weights=[1, 2])
    with pytest.raises(ValueError, match=r"cost_matrix must be a square matrix.*\(3, 2\)"):
        cost_sensitive_categorical_crossentropy(np.zeros((2, 3)), np.zeros((2, 3)), np.ones((3, 2)))
    with pytest.raises(ValueError, match=r"cost_matrix must be a square matrix.*\(2, 3\)"):
        CostSensitiveCategoricalCrossentropy(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"must be \(3, 3\) for the 3 classes.*\(2, 2\)"):
        cost_sensitive_categorical_crossentropy(np.zeros((2, 3)), np.zeros((2, 3)), np.eye(2))
    with pytest.raises(ValueError, match=r"must be \(3, 3\) for the 3 classes.*\(2, 2\)"):
        expected_cost(np.zeros((2, 3)), np.zeros((2, 3)), np.eye(2))
    with pytest.raises(ValueError, match=r"cost_matrix must be a square matrix.*\(2, 3\)"):
        ExpectedCost(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"pos_weight must be a number or one value per channel"):
        weighted_bce(np.zeros((2, 3)), np.zeros((2, 3)), pos_weight=[1.0, 2.0])
    with pytest.raises(ValueError, match=r"class_weights must be one weight per class.*\(2, 2\)"):
        WeightedCategoricalCrossentropy(class_weights=np.ones((2, 2)))
    with pytest.raises(ValueError, match=r"batch and a channel axis.*got shape \(3,\)"):
        dice(np.zeros(3), np.zeros(3))


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: Dice(smooth=0.0), "smooth must be a finite number > 0, got 0.0"),
        (lambda: Tversky(alpha=-1.0), "alpha must be a finite number >= 0, got -1.0"),
        (lambda: Tversky(smooth=float("inf")), "smooth must be a finite number > 0, got inf"),
        (lambda: Focal(gamma=-0.5), "gamma must be a finite number >= 0"),
        (lambda: Focal(alpha=2.0), r"alpha must be None or a number in \[0, 1\], got 2.0"),
        (lambda: DiceBCE(dice_weight=float("nan")), "dice_weight must be a finite number >= 0"),
        (
            lambda: dice_bce(np.zeros((1, 2)), np.zeros((1, 2)), bce_weight=-1.0),
            "bce_weight must be a finite number >= 0",
        ),
    ],
)
def test_invalid_options(call, message):
    with pytest.raises(ValueError, match=message):
        call()
