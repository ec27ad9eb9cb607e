"""The options of every companion.keras loss class: one attribute each, which the loss and
``get_config()`` follow when it is assigned after construction, checked as the constructor
checks it."""

import json

import keras
import numpy as np
import pytest
from keras_helpers import to_numpy

from companion.keras import (
    CostSensitiveCategoricalCrossentropy,
    Dice,
    DiceBCE,
    ExpectedCost,
    Focal,
    Huber,
    PrecisionAtRecall,
    PseudoHuber,
    SoftFBeta,
    Tversky,
    WeightedBCE,
    WeightedCategoricalCrossentropy,
)


def scalar(value) -> float:
    return float(to_numpy(value))


def regression_data():
    y_true = np.zeros((3, 2))
    y_pred = np.array([[0.1, -2.0], [0.5, 0.0], [4.0, 0.2]])
    return y_true, y_pred


def binary_data():
    """0/1 targets and probabilities, (N, H, W, C) = (2, 3, 3, 2)."""
    rng = np.random.default_rng(0)
    y_true = (rng.uniform(size=(2, 3, 3, 2)) < 0.4).astype("float64")
    return y_true, rng.uniform(0.05, 0.95, size=y_true.shape)


def class_data():
    """One-hot labels and probabilities over C = 2 classes, (2, 3, 3, 2)."""
    rng = np.random.default_rng(1)
    y_true = np.eye(2)[rng.integers(0, 2, size=(2, 3, 3))]
    y_pred = rng.uniform(0.05, 0.95, size=y_true.shape)
    return y_true, y_pred / y_pred.sum(axis=-1, keepdims=True)


def fbeta_data():
    return np.array([1.0, 0.0, 1.0, 0.0, 0.0]), np.array([0.9, 0.6, 0.4, 0.2, 0.1])


# (class, constructor options, option assigned afterwards, its new value, the value the config
# then holds, data)
CASES = [
    (Huber, {}, "delta", 0.3, 0.3, regression_data),
    (PseudoHuber, {"delta": 1.0}, "delta", 2.5, 2.5, regression_data),
    (WeightedBCE, {"pos_weight": 2.0}, "pos_weight", np.array([1, 5]), [1.0, 5.0], binary_data),
    (WeightedBCE, {}, "from_logits", True, True, binary_data),
    (Dice, {"smooth": 1}, "smooth", 5, 5.0, binary_data),
    (DiceBCE, {}, "bce_weight", 0.25, 0.25, binary_data),
    (DiceBCE, {"pos_weight": 3.0}, "pos_weight", 0.5, 0.5, binary_data),
    (Focal, {}, "gamma", 0.5, 0.5, binary_data),
    (Focal, {}, "alpha", 0.25, 0.25, binary_data),
    (Tversky, {"alpha": 0.3, "beta": 0.7}, "alpha", 0.9, 0.9, binary_data),
    (Tversky, {}, "smooth", 0.01, 0.01, binary_data),
    (WeightedCategoricalCrossentropy, {}, "class_weights", (1, 4), [1.0, 4.0], class_data),
    (
        CostSensitiveCategoricalCrossentropy,
        {"cost_matrix": [[0.0, 1.0], [5.0, 0.0]]},
        "cost_matrix",
        np.array([[0.0, 3.0], [1.0, 0.5]]),
        [[0.0, 3.0], [1.0, 0.5]],
        class_data,
    ),
    (
        ExpectedCost,
        {"cost_matrix": [[0.0, 1.0], [5.0, 0.0]]},
        "cost_matrix",
        [[0, 2], [1, 0]],
        [[0.0, 2.0], [1.0, 0.0]],
        class_data,
    ),
    (SoftFBeta, {}, "beta", 2.0, 2.0, fbeta_data),
    (SoftFBeta, {}, "epsilon", 1.0, 1.0, fbeta_data),
    (PrecisionAtRecall, {"target_recall": 0.8}, "target_recall", 0.5, 0.5, fbeta_data),
    (PrecisionAtRecall, {"target_recall": 0.8}, "surrogate", "hinge", "hinge", fbeta_data),
]


def case_id(case):
    return f"{case[0].__name__}.{case[2]}"


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_an_option_assigned_after_construction_is_what_the_loss_and_its_config_use(case):
    loss_class, options, option, value, stored, data = case
    y_true, y_pred = data()
    loss = loss_class(**options)
    before = scalar(loss(y_true, y_pred))
    setattr(loss, option, value)

    assert getattr(loss, option) == stored
    config = loss.get_config()
    assert config[option] == stored
    json.dumps(config)  # plain floats and lists, also for an assigned array
    fresh = loss_class(**{**options, option: value})
    assert config == fresh.get_config()
    value_after = scalar(loss(y_true, y_pred))
    assert value_after != pytest.approx(before)  # the case changes the loss
    assert value_after == pytest.approx(scalar(fresh(y_true, y_pred)), rel=1e-6)

    restored = loss_class.from_config(config)
    assert restored.get_config() == config
    assert scalar(restored(y_true, y_pred)) == pytest.approx(value_after, rel=1e-6)
    serialized = keras.saving.serialize_keras_object(loss)
    assert keras.saving.deserialize_keras_object(serialized).get_config() == config


@pytest.mark.parametrize(
    "loss, option, value, message",
    [
        (Huber(), "delta", 0.0, "delta must be a finite number > 0, got 0.0"),
        (PseudoHuber(), "delta", float("nan"), "delta must be a finite number > 0, got nan"),
        (Dice(), "smooth", -1, "smooth must be a finite number > 0, got -1.0"),
        (DiceBCE(), "dice_weight", -0.5, "dice_weight must be a finite number >= 0, got -0.5"),
        (Focal(), "alpha", 2.0, r"alpha must be None or a number in \[0, 1\], got 2.0"),
        (Tversky(), "beta", float("inf"), "beta must be a finite number >= 0, got inf"),
        (
            WeightedCategoricalCrossentropy(),
            "class_weights",
            np.ones((2, 2)),
            r"class_weights must be one weight per class, shape \(C,\), got shape \(2, 2\)",
        ),
        (ExpectedCost(np.eye(2)), "cost_matrix", np.ones((2, 3)), r"square matrix.*\(2, 3\)"),
        (SoftFBeta(), "epsilon", -1.0, "epsilon must be a finite number >= 0, got -1.0"),
        (SoftFBeta(), "class_index", -1, "class_index must be None or an int >= 0, got -1"),
        (PrecisionAtRecall(0.5), "surrogate", "xent", r"surrogate must be one of \("),
        (PrecisionAtRecall(0.5), "target_recall", 1.0, r"open interval \(0, 1\), got 1.0"),
        (PrecisionAtRecall(0.5), "multiplier_init", -2, "multiplier_init must be a finite"),
    ],
    ids=lambda x: type(x).__name__ if isinstance(x, keras.losses.Loss) else None,
)
def test_a_bad_option_is_refused_when_assigned_and_the_old_value_kept(loss, option, value, message):
    config = loss.get_config()
    with pytest.raises(ValueError, match=message):
        setattr(loss, option, value)
    assert loss.get_config() == config


def test_assigning_multiplier_init_leaves_the_multiplier_as_it_is():
    # multiplier_init is the constructor's initial value: it is what a rebuilt loss starts
    # from, while the multiplier itself is a trained variable.
    loss = PrecisionAtRecall(0.5, multiplier_init=2.0)
    loss.multiplier_init = 3.0
    assert loss.get_config()["multiplier_init"] == 3.0
    assert float(loss.multiplier.numpy()) == 2.0
    restored = PrecisionAtRecall.from_config(loss.get_config())
    assert float(restored.multiplier.numpy()) == 3.0
