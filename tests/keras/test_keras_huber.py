"""companion.keras Huber and pseudo-Huber losses against companion.reference and keras.losses.

Runs on whichever backend KERAS_BACKEND names; `make test` runs it on TensorFlow and torch.
"""

import keras
import numpy as np
import pytest
from helpers import residual_data
from keras import ops
from keras_helpers import BACKEND, to_numpy, value_and_grad

from companion import reference
from companion.keras import Huber, PseudoHuber, huber, pseudo_huber

LOSSES = {
    "huber": (huber, Huber, reference.huber, reference.huber_grad),
    "pseudo_huber": (
        pseudo_huber,
        PseudoHuber,
        reference.pseudo_huber,
        reference.pseudo_huber_grad,
    ),
}
SHAPE = (5, 7)  # of residual_data


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("delta", [0.1, 1.0, 3.5])
def test_matches_reference_in_float64(name, delta):
    loss_fn, _, reference_loss, reference_grad = LOSSES[name]
    y_pred, y_true = residual_data(seed=int(10 * delta), delta=delta, shape=SHAPE)
    residual = y_pred - y_true
    np.testing.assert_array_equal(np.abs(residual.flat[:2]), delta)
    values, grad = value_and_grad(
        lambda pred: loss_fn(ops.convert_to_tensor(y_true), pred, delta), y_pred
    )
    assert values.dtype == np.float64
    expected = reference_loss(residual, delta).mean(axis=-1)
    np.testing.assert_allclose(values, expected, rtol=1e-12, atol=1e-15)
    # One value per sample is the mean over the last axis, so each gradient is divided by 7.
    expected_grad = reference_grad(residual, delta) / y_pred.shape[-1]
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-12, atol=1e-15)


# keras.losses.huber takes its mean with ops.mean, which on the torch backend computes in
# float32 even for float64 inputs; companion.keras.huber keeps float64 there too.
FLOAT64_RTOL = 1e-13 if BACKEND == "tensorflow" else 1e-6


@pytest.mark.parametrize("dtype, rtol", [("float32", 1e-6), ("float64", FLOAT64_RTOL)])
@pytest.mark.parametrize("shape", [(8,), (4, 6), (3, 2, 5)])
@pytest.mark.parametrize("delta", [0.25, 1.0])
def test_huber_equals_keras_builtin(dtype, rtol, shape, delta):
    rng = np.random.default_rng(0)
    y_true = rng.normal(size=shape).astype(dtype)
    y_pred = (y_true + rng.normal(scale=2 * delta, size=shape)).astype(dtype)
    ours = to_numpy(huber(y_true, y_pred, delta=delta))
    builtin = to_numpy(keras.losses.huber(y_true, y_pred, delta=delta))
    assert ours.shape == shape[:-1]
    assert ours.dtype == dtype
    np.testing.assert_allclose(ours, builtin, rtol=rtol, atol=0.0)


@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "none"])
def test_huber_class_equals_keras_builtin_with_sample_weight(reduction):
    rng = np.random.default_rng(1)
    y_true, y_pred = rng.normal(size=(6, 3)), 3 * rng.normal(size=(6, 3))
    sample_weight = rng.uniform(size=6)
    ours = Huber(delta=0.5, reduction=reduction)(y_true, y_pred, sample_weight=sample_weight)
    builtin = keras.losses.Huber(delta=0.5, reduction=reduction)(
        y_true, y_pred, sample_weight=sample_weight
    )
    np.testing.assert_allclose(to_numpy(ours), to_numpy(builtin), rtol=1e-6, atol=0.0)
    per_sample = reference.huber(y_pred - y_true, 0.5).mean(axis=-1) * sample_weight
    expected = {
        "sum_over_batch_size": per_sample.mean(),
        "sum": per_sample.sum(),
        "none": per_sample,
    }
    np.testing.assert_allclose(to_numpy(ours), expected[reduction], rtol=1e-6, atol=0.0)


@pytest.mark.parametrize("name", LOSSES)
def test_huge_delta_is_half_squared_error(name):
    loss_fn = LOSSES[name][0]
    y_pred = np.linspace(-10.0, 10.0, 42).reshape(2, 21)
    values = to_numpy(loss_fn(np.zeros((2, 21)), y_pred, delta=1e8))
    np.testing.assert_allclose(values, (0.5 * y_pred**2).mean(axis=-1), rtol=1e-12, atol=0.0)


@pytest.mark.parametrize("delta", [1e-3, 1e-6, 1e-9])
def test_huber_over_small_delta_tends_to_absolute_error(delta):
    y_pred = np.array([[-3.0, -0.5, 0.01, 2.0]])
    values = to_numpy(huber(np.zeros((1, 4)), y_pred, delta=delta)) / delta
    # Off the quadratic piece, huber / delta = |r| - delta / 2 exactly.
    np.testing.assert_allclose(values, np.abs(y_pred).mean(axis=-1) - delta / 2, rtol=1e-14)


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision(name, dtype):
    loss_fn, _, reference_loss, _ = LOSSES[name]
    # |r| up to 1000: r**2 would overflow float16 (max 65504).
    residual = np.array([[-1000.0], [-30.0], [-1.0], [-0.25], [0.0], [0.5], [7.0], [1000.0]])
    y_pred = ops.cast(residual, dtype)
    values = loss_fn(ops.zeros_like(y_pred), y_pred, delta=1.0)
    assert keras.backend.standardize_dtype(values.dtype) == dtype
    values = to_numpy(ops.cast(values, "float64"))
    rtol = 1e-2 if dtype == "bfloat16" else 2e-3
    np.testing.assert_allclose(values, reference_loss(residual).mean(axis=-1), rtol=rtol)


@pytest.mark.parametrize("name", LOSSES)
def test_config_round_trip(name):
    _, loss_class, _, _ = LOSSES[name]
    loss = loss_class(delta=0.3, reduction="sum", name="robust", dtype="float64")
    config = loss.get_config()
    assert config == {"name": "robust", "reduction": "sum", "delta": 0.3, "dtype": "float64"}
    assert loss_class.from_config(config).get_config() == config

    assert keras.saving.get_registered_name(loss_class) == f"companion>{loss_class.__name__}"
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(restored) is loss_class
    assert restored.get_config() == config
    y_true, y_pred = np.zeros((3, 2)), np.array([[0.1, -2.0], [0.5, 0.0], [4.0, 0.2]])
    np.testing.assert_array_equal(
        to_numpy(restored(y_true, y_pred)), to_numpy(loss(y_true, y_pred))
    )


def test_model_trains_saves_and_loads_with_the_loss(tmp_path):
    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=(3,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=Huber(delta=0.5))
    rng = np.random.default_rng(2)
    x = rng.normal(size=(32, 3)).astype("float32")
    y = (x @ np.array([[1.0], [-2.0], [0.5]]) + rng.normal(scale=0.1, size=(32, 1))).astype(
        "float32"
    )
    history = model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    assert history.history["loss"][1] < history.history["loss"][0]
    expected = reference.huber(to_numpy(model(x)) - y, 0.5).mean()
    np.testing.assert_allclose(model.evaluate(x, y, batch_size=32, verbose=0), expected, rtol=1e-5)

    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored.loss, Huber)
    assert restored.loss.delta == 0.5


@pytest.mark.parametrize("name", LOSSES)
def test_shape_mismatch_names_both_shapes(name):
    loss_fn, loss_class, _, _ = LOSSES[name]
    with pytest.raises(ValueError, match=r"y_true \(4, 1\) and y_pred \(4,\)"):
        loss_fn(np.zeros((4, 1)), np.zeros(4))
    with pytest.raises(ValueError, match=r"y_true \(2, 3\) and y_pred \(3, 2\)"):
        loss_class()(np.zeros((2, 3)), np.zeros((3, 2)))


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("delta", [0.0, -1.0, float("inf"), float("nan")])
def test_invalid_delta(name, delta):
    loss_fn, loss_class, _, _ = LOSSES[name]
    with pytest.raises(ValueError, match="delta must be a finite number > 0"):
        loss_fn(np.zeros((2, 2)), np.zeros((2, 2)), delta=delta)
    with pytest.raises(ValueError, match="delta must be a finite number > 0"):
        loss_class(delta=delta)
