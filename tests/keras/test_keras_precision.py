"""companion.keras.precision on the current Keras backend, against hand values and PyTorch.

Run under KERAS_BACKEND=tensorflow and KERAS_BACKEND=torch.
"""

import math

import keras
import numpy as np
import pytest
import torch
from keras import ops

from companion.keras.precision import PrecisionAtRecall, SoftFBeta, soft_fbeta
from companion.torch.precision import PrecisionAtRecallLoss, soft_fbeta_loss

# The hand-checked case (see tests/torch/test_torch_precision.py for the soft counts):
# TP = 0.9 + 0.4 = 1.3, sum(p) = 2.2, sum(t) = 2, FN = 0.7, FP = 0.9.
T = np.array([1.0, 0.0, 1.0, 0.0, 0.0])
P = np.array([0.9, 0.6, 0.4, 0.2, 0.1])
F1_LOSS = 1.0 - 2.6 / (2.6 + 0.7 + 0.9)  # 1 - 2.6 / 4.2
F2_LOSS = 1.0 - 5 * 1.3 / (5 * 1.3 + 4 * 0.7 + 0.9)  # 1 - 6.5 / 10.2


def numpy(x):
    return np.asarray(ops.convert_to_numpy(ops.stop_gradient(x)))


def logit(p):
    return np.log(p) - np.log1p(-p)


def test_hand_checked_values():
    assert numpy(soft_fbeta(T, P, epsilon=0.0)) == pytest.approx(F1_LOSS, rel=1e-14)
    assert numpy(soft_fbeta(T, P, beta=2.0, epsilon=0.0)) == pytest.approx(F2_LOSS, rel=1e-14)
    # The default epsilon, keras.backend.epsilon(), enters the denominator.
    assert numpy(soft_fbeta(T, P)) == pytest.approx(1.0 - 2.6 / (4.2 + 1e-7), rel=1e-14)
    loss = SoftFBeta(beta=2.0, epsilon=0.0, dtype="float64")
    assert numpy(loss(T[:, None], P[:, None])) == pytest.approx(F2_LOSS, rel=1e-14)


def test_logits_and_probabilities_agree():
    from_logits = soft_fbeta(T, logit(P), from_logits=True)
    np.testing.assert_allclose(numpy(from_logits), numpy(soft_fbeta(T, P)), rtol=1e-14)


def test_beta_one_is_keras_dice():
    rng = np.random.default_rng(0)
    y_true = (rng.uniform(size=(8, 5)) < 0.3).astype("float32")
    y_pred = rng.uniform(size=(8, 5)).astype("float32")
    dice = keras.losses.Dice()(y_true, y_pred)
    np.testing.assert_allclose(numpy(soft_fbeta(y_true, y_pred)), numpy(dice), rtol=1e-6)


@pytest.mark.parametrize("beta", [0.5, 1.0, 3.0])
@pytest.mark.parametrize("from_logits", [False, True])
def test_soft_fbeta_equals_pytorch(beta, from_logits):
    rng = np.random.default_rng(int(10 * beta))
    logits = rng.normal(scale=2.0, size=(16, 3))
    y_true = (rng.uniform(size=(16, 3)) < 0.25).astype(float)
    y_pred = logits if from_logits else 1 / (1 + np.exp(-logits))
    ours = numpy(soft_fbeta(y_true, y_pred, beta=beta, from_logits=from_logits))
    theirs = soft_fbeta_loss(
        torch.tensor(y_pred), torch.tensor(y_true), beta=beta, from_logits=from_logits
    ).item()
    assert ours.dtype == np.float64
    np.testing.assert_allclose(ours, theirs, rtol=1e-13)


@pytest.mark.parametrize("from_logits", [False, True])
def test_soft_fbeta_class_index_equals_pytorch(from_logits):
    rng = np.random.default_rng(4)
    logits = rng.normal(scale=2.0, size=(30, 4))
    labels = rng.integers(0, 4, size=30)
    y_pred = logits if from_logits else np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    for class_index in range(4):
        ours = numpy(
            soft_fbeta(labels, y_pred, from_logits=from_logits, class_index=class_index, beta=2.0)
        )
        theirs = soft_fbeta_loss(
            torch.tensor(y_pred),
            torch.tensor(labels),
            from_logits=from_logits,
            class_index=class_index,
            beta=2.0,
        ).item()
        np.testing.assert_allclose(ours, theirs, rtol=1e-13)


@pytest.mark.parametrize("surrogate", ["cross_entropy", "hinge"])
@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("class_index", [None, 2])
def test_precision_at_recall_equals_pytorch(surrogate, from_logits, class_index):
    rng = np.random.default_rng(11)
    if class_index is None:
        logits = rng.normal(scale=2.0, size=(24, 1))
        y_true = (rng.uniform(size=(24, 1)) < 0.3).astype(float)
        y_pred = logits if from_logits else 1 / (1 + np.exp(-logits))
    else:
        logits = rng.normal(scale=2.0, size=(24, 3))
        y_true = rng.integers(0, 3, size=24).astype(float)
        y_pred = logits if from_logits else np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    kwargs = {
        "surrogate": surrogate,
        "from_logits": from_logits,
        "class_index": class_index,
        "multiplier_init": 2.5,
    }
    keras_loss = PrecisionAtRecall(0.75, dtype="float64", **kwargs)
    torch_loss = PrecisionAtRecallLoss(0.75, reduction="none", **kwargs).double()
    target = torch.tensor(y_true if class_index is None else y_true.astype(int))
    expected = torch_loss(torch.tensor(y_pred), target).detach().numpy()
    np.testing.assert_allclose(numpy(keras_loss.call(y_true, y_pred)), expected, rtol=1e-12)
    # Keras 3.15's reduction divides with ops.divide_no_nan, which returns float32 for float64
    # input on the torch backend; the per-element values above are float64 on both.
    rtol = 1e-6 if keras.backend.backend() == "torch" else 1e-12
    np.testing.assert_allclose(numpy(keras_loss(y_true, y_pred)), expected.mean(), rtol=rtol)
    weights = rng.uniform(size=24)
    weighted = keras_loss(y_true, y_pred, sample_weight=weights)
    expected_weighted = (weights * expected.reshape(24)).mean()
    np.testing.assert_allclose(numpy(weighted), expected_weighted, rtol=rtol)


def value_and_gradient(fn, x):
    """fn(x) and its gradient with respect to x, float64, on the current backend."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        x = tf.Variable(x)
        with tf.GradientTape() as tape:
            value = fn(x)
        return value.numpy(), tape.gradient(value, x).numpy()
    x = torch.tensor(x, requires_grad=True)
    value = fn(x)
    value.backward()
    return value.detach().numpy(), x.grad.numpy()


@pytest.mark.parametrize("loss_name", ["fbeta", "par_xent", "par_hinge"])
@pytest.mark.parametrize("class_index", [None, 1])
def test_gradients_equal_pytorch(loss_name, class_index):
    rng = np.random.default_rng(8)
    if class_index is None:
        logits, labels = rng.normal(scale=2.0, size=20), (rng.uniform(size=20) < 0.3) * 1.0
    else:
        logits, labels = rng.normal(scale=2.0, size=(20, 3)), rng.integers(0, 3, size=20)
    kwargs = {"from_logits": True, "class_index": class_index}
    if loss_name == "fbeta":
        keras_fn = lambda x: soft_fbeta(labels, x, beta=2.0, **kwargs)  # noqa: E731
        torch_fn = lambda x: soft_fbeta_loss(x, torch.tensor(labels), beta=2.0, **kwargs)  # noqa: E731
    else:
        surrogate = "hinge" if loss_name == "par_hinge" else "cross_entropy"
        criterion = PrecisionAtRecall(0.8, surrogate=surrogate, dtype="float64", **kwargs)
        keras_fn = lambda x: ops.sum(criterion.call(labels * 1.0, x))  # noqa: E731
        torch_loss = PrecisionAtRecallLoss(0.8, surrogate=surrogate, reduction="sum", **kwargs)
        torch_fn = lambda x: torch_loss.double()(x, torch.tensor(labels))  # noqa: E731
    value, gradient = value_and_gradient(keras_fn, logits)
    x = torch.tensor(logits, requires_grad=True)
    expected = torch_fn(x)
    expected.backward()
    np.testing.assert_allclose(value, expected.item(), rtol=1e-12)
    np.testing.assert_allclose(gradient, x.grad.numpy(), rtol=1e-11, atol=1e-15)


def test_huge_logits_give_finite_values_and_gradients():
    values = np.array([1e4, -1e4, 1e4, -1e4])
    y_true = np.array([1.0, 1.0, 0.0, 0.0])
    assert np.isfinite(numpy(soft_fbeta(y_true, values, from_logits=True)))
    two_classes = np.stack([values, -values], axis=1)
    labels = np.array([0, 0, 1, 1])
    assert np.isfinite(numpy(soft_fbeta(labels, two_classes, from_logits=True, class_index=0)))
    for surrogate in ("cross_entropy", "hinge"):
        loss = PrecisionAtRecall(0.8, surrogate=surrogate, from_logits=True, class_index=1)
        assert np.isfinite(numpy(loss(labels, two_classes)))
        value, gradient = value_and_gradient(
            lambda x, loss=loss: ops.sum(loss.call(labels, x)), two_classes
        )
        assert np.isfinite(value) and np.isfinite(gradient).all()
    value, gradient = value_and_gradient(
        lambda x: soft_fbeta(labels, x, from_logits=True, class_index=0), two_classes
    )
    assert np.isfinite(value) and np.isfinite(gradient).all()


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_inputs(dtype):
    y_pred = ops.cast(ops.convert_to_tensor(P), dtype)
    value = soft_fbeta(T, y_pred, epsilon=0.0)
    assert numpy(value) == pytest.approx(F1_LOSS, rel=1e-2)


def test_config_round_trip():
    soft = SoftFBeta(beta=2.0, from_logits=True, class_index=1, epsilon=1e-6, name="f2")
    restored = keras.losses.deserialize(keras.losses.serialize(soft))
    assert isinstance(restored, SoftFBeta)
    assert restored.get_config() == soft.get_config()
    assert soft.get_config()["beta"] == 2.0
    par = PrecisionAtRecall(0.9, surrogate="hinge", multiplier_init=3.0, reduction="sum")
    restored = keras.losses.deserialize(keras.losses.serialize(par))
    assert isinstance(restored, PrecisionAtRecall)
    assert restored.get_config() == par.get_config()
    assert float(numpy(restored.multiplier)) == 3.0
    assert keras.saving.get_registered_name(PrecisionAtRecall) == "companion>PrecisionAtRecall"


def toy_data():
    """400 points in 2-D, 10% positives shifted by (1.5, 1.5): the classes overlap a little."""
    rng = np.random.default_rng(0)
    y = (rng.uniform(size=400) < 0.1).astype("float32")
    x = (rng.normal(size=(400, 2)) + 1.5 * y[:, None]).astype("float32")
    return x, y[:, None]


def linear_model():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, activation="sigmoid")])


def full_batch_fit(model, x, y, steps, **kwargs):
    """``steps`` full-batch gradient steps as one epoch: Keras's per-epoch overhead paid once."""
    repeated_x, repeated_y = np.tile(x, (steps, 1)), np.tile(y, (steps, 1))
    return model.fit(
        repeated_x, repeated_y, batch_size=len(x), epochs=1, shuffle=False, verbose=0, **kwargs
    )


def recall_at_half(model, x, y):
    predicted = model.predict(x, verbose=0, batch_size=len(x)) > 0.5
    return float((predicted & (y > 0)).sum() / y.sum())


def test_precision_at_recall_trains_inside_fit():
    """Under fit, the tracked multiplier rises and the model reaches recall >= 0.9.

    Adam, learning rate 0.1 for the weights and the multiplier alike, 300 full-batch
    steps; binary cross-entropy gives a recall of 0.57 (24 of 42) on the same data.
    """
    x, y = toy_data()
    model = linear_model()
    model.compile(optimizer=keras.optimizers.Adam(0.1), loss="binary_crossentropy")
    full_batch_fit(model, x, y, steps=100)
    assert recall_at_half(model, x, y) < 0.7

    criterion = PrecisionAtRecall(0.9)
    model = linear_model()
    model.lagrange_multiplier = criterion.multiplier
    assert any(v is criterion.multiplier for v in model.trainable_variables)
    model.compile(optimizer=keras.optimizers.Adam(0.1), loss=criterion)
    full_batch_fit(model, x, y, steps=300)
    assert recall_at_half(model, x, y) >= 0.9
    assert float(numpy(criterion.multiplier)) > 5.0


def test_untracked_multiplier_stays_put_and_slack_constraint_projects_to_zero():
    x, y = toy_data()
    criterion = PrecisionAtRecall(0.9, multiplier_init=2.0)
    model = linear_model()
    model.compile(optimizer=keras.optimizers.Adam(0.1), loss=criterion)
    full_batch_fit(model, x, y, steps=5)
    assert float(numpy(criterion.multiplier)) == 2.0

    # Separated classes, a model that puts every positive beyond the hinge's margin: the
    # constraint is slack, dL/dlambda = -(1 - alpha) |Y+| / N < 0, so lambda descends, by
    # 0.5 * 0.1 = 0.05 per SGD step (learning rate 1), and the NonNeg constraint stops it at 0.
    y_separated = (np.arange(400) % 10 == 0).astype("float32")[:, None]
    x_separated = np.where(y_separated > 0, 3.0, -3.0) * np.ones((1, 2), dtype="float32")
    criterion = PrecisionAtRecall(0.5, multiplier_init=0.3, surrogate="hinge")
    model = keras.Sequential(
        [keras.Input((2,)), keras.layers.Dense(1, activation="sigmoid", kernel_initializer="ones")]
    )
    model.lagrange_multiplier = criterion.multiplier
    model.compile(optimizer=keras.optimizers.SGD(1.0), loss=criterion)
    history = model.fit(x_separated, y_separated, epochs=10, batch_size=400, verbose=0)
    assert float(numpy(criterion.multiplier)) == 0.0
    # The first loss is lambda_0 (0 - 0.5) * 0.1 = -0.015: only the constraint term is nonzero.
    assert history.history["loss"][0] == pytest.approx(-0.015, rel=1e-5)


def test_soft_fbeta_trains_inside_fit_and_refuses_sample_weights():
    x, y = toy_data()
    model = linear_model()
    model.compile(optimizer=keras.optimizers.Adam(0.1), loss=SoftFBeta())
    history = model.fit(x, y, epochs=30, batch_size=400, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0] - 0.1
    with pytest.raises(ValueError, match=r"takes no sample_weight \(nor class_weight in fit\)"):
        model.fit(x, y, epochs=1, batch_size=400, verbose=0, class_weight={0: 1.0, 1: 9.0})


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"y_true \(5,\) and y_pred \(5, 1\)"):
        soft_fbeta(T, P[:, None])
    with pytest.raises(ValueError, match=r"y_true \(5,\) and y_pred \(5, 1\)"):
        PrecisionAtRecall(0.5)(T, P[:, None])
    with pytest.raises(ValueError, match=r"class indices \(\.\.\.\), got y_true \(4, 3\)"):
        soft_fbeta(np.zeros((4, 3)), np.zeros((4, 3)), class_index=0)
    with pytest.raises(ValueError, match=r"class_index must be < C = 3 for y_pred \(4, 3\), got 5"):
        soft_fbeta(np.zeros(4), np.zeros((4, 3)), class_index=5)


@pytest.mark.parametrize("beta", [0.0, -2.0, math.inf])
def test_bad_beta(beta):
    with pytest.raises(ValueError, match=r"beta must be a finite number > 0, got"):
        soft_fbeta(T, P, beta=beta)
    with pytest.raises(ValueError, match=r"beta must be a finite number > 0, got"):
        SoftFBeta(beta=beta)


@pytest.mark.parametrize("target_recall", [0.0, 1.0, 1.2, -0.5])
def test_bad_target_recall(target_recall):
    with pytest.raises(ValueError, match=r"target_recall must lie in the open interval \(0, 1\)"):
        PrecisionAtRecall(target_recall)


def test_other_bad_arguments():
    with pytest.raises(ValueError, match=r"surrogate must be one of \('cross_entropy', 'hinge'\)"):
        PrecisionAtRecall(0.5, surrogate="xent")
    with pytest.raises(ValueError, match=r"multiplier_init must be a finite number >= 0, got -2.0"):
        PrecisionAtRecall(0.5, multiplier_init=-2.0)
    with pytest.raises(ValueError, match=r"epsilon must be a finite number >= 0, got -1.0"):
        SoftFBeta(epsilon=-1.0)
    with pytest.raises(ValueError, match=r"class_index must be None or an int >= 0, got -1"):
        soft_fbeta(T, P, class_index=-1)
