"""companion.reference segmentation losses against hand computation, mpmath and scikit-learn."""

import mpmath
import numpy as np
import pytest
from sklearn.metrics import log_loss

from companion import reference


def precise_sigmoid(x):
    return 1 / (1 + mpmath.exp(-mpmath.mpf(x)))


def precise_bce(x: float, t: float, pos_weight: float = 1.0) -> float:
    with mpmath.workdps(400):  # exp(-800) is 1e-348
        p = precise_sigmoid(x)
        return float(-(pos_weight * t * mpmath.log(p) + (1 - t) * mpmath.log(1 - p)))


def precise_focal(x: float, t: float, gamma: float, alpha) -> float:
    with mpmath.workdps(400):  # exp(-800) is 1e-348
        p = precise_sigmoid(x)
        p_t = p * t + (1 - p) * (1 - t)
        bce = -(t * mpmath.log(p) + (1 - t) * mpmath.log(1 - p))
        alpha_t = 1 if alpha is None else alpha * t + (1 - alpha) * (1 - t)
        return float(alpha_t * (1 - p_t) ** gamma * bce)


LOGITS = np.array([-800.0, -40.0, -3.0, -0.5, 0.0, 1e-9, 0.7, 5.0, 40.0, 800.0])


@pytest.mark.parametrize("target", [0.0, 1.0, 0.3])
@pytest.mark.parametrize("pos_weight", [1.0, 7.5])
def test_bce_matches_high_precision_at_any_logit(target, pos_weight):
    targets = np.full_like(LOGITS, target)
    expected = [precise_bce(x, target, pos_weight) for x in LOGITS]
    values = reference.binary_cross_entropy_with_logits(LOGITS, targets, pos_weight=pos_weight)
    np.testing.assert_allclose(values, expected, rtol=1e-14, atol=0.0)


def test_bce_from_probabilities_and_weights():
    probabilities = np.array([0.1, 0.5, 0.99])
    targets = np.array([1.0, 0.0, 0.25])
    expected = -(targets * np.log(probabilities) + (1 - targets) * np.log(1 - probabilities))
    values = reference.binary_cross_entropy_with_logits(probabilities, targets, from_logits=False)
    np.testing.assert_allclose(values, expected, rtol=1e-15)
    weighted = reference.binary_cross_entropy_with_logits(
        np.log(probabilities / (1 - probabilities)), targets, weight=[2.0, 0.0, 1.0]
    )
    np.testing.assert_allclose(weighted, expected * [2.0, 0.0, 1.0], rtol=1e-14)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 5.0])
@pytest.mark.parametrize("alpha", [None, 0.25])
@pytest.mark.parametrize("target", [0.0, 1.0, 0.6])
def test_focal_matches_high_precision(gamma, alpha, target):
    targets = np.full_like(LOGITS, target)
    expected = [precise_focal(x, target, gamma, alpha) for x in LOGITS]
    values = reference.focal_loss(LOGITS, targets, gamma=gamma, alpha=alpha)
    np.testing.assert_allclose(values, expected, rtol=1e-13, atol=0.0)


def test_focal_with_gamma_zero_is_bce_and_hard_targets_use_log_p_t():
    rng = np.random.default_rng(0)
    logits, targets = rng.normal(scale=3, size=50), rng.uniform(size=50)
    np.testing.assert_array_equal(
        reference.focal_loss(logits, targets, gamma=0.0),
        reference.binary_cross_entropy_with_logits(logits, targets),
    )
    hard = (targets > 0.5).astype(float)
    p = 1 / (1 + np.exp(-logits))
    p_t = np.where(hard == 1, p, 1 - p)
    np.testing.assert_allclose(
        reference.focal_loss(logits, hard, gamma=2.0, alpha=0.25),
        -np.where(hard == 1, 0.25, 0.75) * (1 - p_t) ** 2 * np.log(p_t),
        rtol=1e-12,
    )


def test_dice_by_hand():
    target = np.array([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    prediction = np.array([[1.0, 0.5, 0.0, 0.5], [0.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.5, 0.5]])
    # Sample 0: 1 - (2 * 1.5 + 1) / (2 + 2 + 1); sample 1 is empty and predicted empty: 0;
    # sample 2: 1 - (2 * 2 + 1) / (2 + 4 + 1).
    values = reference.dice_loss(prediction, target, from_logits=False)
    np.testing.assert_allclose(values, [1 - 4 / 5, 0.0, 1 - 5 / 7], rtol=1e-15)
    # Pooled over the batch: 1 - (2 * 3.5 + 1) / (4 + 6 + 1).
    pooled = reference.dice_loss(prediction, target, from_logits=False, batch=True)
    np.testing.assert_allclose(pooled, 1 - 8 / 11, rtol=1e-15)
    assert reference.dice_loss(target, target, from_logits=False, smooth=1e-9).max() == 0.0
    logits = np.log(prediction[2] / (1 - prediction[2]))[None]
    np.testing.assert_allclose(reference.dice_loss(logits, target[2:]), [1 - 5 / 7], rtol=1e-15)


def test_dice_bce_is_the_sum_of_its_parts():
    rng = np.random.default_rng(1)
    logits, targets = rng.normal(size=(3, 2, 4)), (rng.uniform(size=(3, 2, 4)) > 0.5) * 1.0
    dice = reference.dice_loss(logits, targets, smooth=0.5)
    bce = reference.binary_cross_entropy_with_logits(logits, targets, pos_weight=2.0)
    np.testing.assert_allclose(
        reference.dice_bce_loss(
            logits, targets, dice_weight=0.3, bce_weight=2.0, pos_weight=2.0, smooth=0.5
        ),
        0.3 * dice + 2.0 * bce.mean(axis=(1, 2)),
        rtol=1e-15,
    )


def test_tversky_special_cases():
    rng = np.random.default_rng(2)
    logits, targets = rng.normal(size=(4, 10)), rng.uniform(size=(4, 10))
    # alpha = beta = 1/2 with smoothing s is Dice with smoothing 2 s.
    np.testing.assert_allclose(
        reference.tversky_loss(logits, targets, smooth=0.25),
        reference.dice_loss(logits, targets, smooth=0.5),
        rtol=1e-14,
    )
    # alpha = beta = 1 is the soft Jaccard loss, 1 - (TP + s) / (P + T - TP + s).
    p = 1 / (1 + np.exp(-logits))
    overlap = (p * targets).sum(1)
    jaccard = 1 - (overlap + 1) / (p.sum(1) + targets.sum(1) - overlap + 1)
    np.testing.assert_allclose(
        reference.tversky_loss(logits, targets, alpha=1.0, beta=1.0), jaccard, rtol=1e-14
    )
    # alpha weighs false positives: predicting everything raises the loss with alpha only.
    everything, half = np.ones((1, 4)), np.array([[1.0, 1.0, 0.0, 0.0]])
    fp_heavy = reference.tversky_loss(everything, half, alpha=0.9, beta=0.1, from_logits=False)
    fn_heavy = reference.tversky_loss(everything, half, alpha=0.1, beta=0.9, from_logits=False)
    np.testing.assert_allclose([fp_heavy[0], fn_heavy[0]], [1 - 3 / 4.8, 1 - 3 / 3.2], rtol=1e-15)


def test_weighted_cross_entropy_equals_scikit_learn_weighted_log_loss():
    rng = np.random.default_rng(3)
    logits = rng.normal(scale=2, size=(2, 4, 3, 3))
    target = rng.integers(0, 4, size=(2, 3, 3))
    class_weights = np.array([0.5, 1.0, 2.0, 4.0])
    weight_map = rng.uniform(1, 5, size=target.shape)
    values = reference.weighted_cross_entropy(
        logits, target, class_weights=class_weights, weight_map=weight_map
    )
    weights = class_weights[target] * weight_map
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    expected = log_loss(
        target.ravel(),
        np.moveaxis(probabilities, 1, -1).reshape(-1, 4),
        sample_weight=weights.ravel(),
        labels=range(4),
    )
    np.testing.assert_allclose(values.sum() / weights.sum(), expected, rtol=1e-12)
    np.testing.assert_allclose(
        reference.weighted_cross_entropy(probabilities, target, from_logits=False),
        reference.weighted_cross_entropy(logits, target),
        rtol=1e-13,
    )


def test_cross_entropy_is_finite_for_huge_logits():
    logits = np.array([[1e4, -1e4, 0.0]]).T[None]  # (1, 3, 1)
    values = reference.weighted_cross_entropy(logits, np.array([[1]]))
    np.testing.assert_allclose(values, [[2e4]], rtol=1e-15)


def test_cost_sensitive_by_hand():
    logits = np.array([[[2.0], [0.0], [1.0]], [[0.0], [0.0], [3.0]]])  # (2, 3, 1)
    target = np.array([[1], [2]])
    cost_matrix = np.array([[0.0, 1.0, 2.0], [5.0, 0.0, 1.0], [9.0, 8.0, 0.5]])
    nll = reference.weighted_cross_entropy(logits, target)
    # Predicted classes: 0 and 2; costs cost[1, 0] = 5 and cost[2, 2] = 0.5.
    np.testing.assert_allclose(
        reference.cost_sensitive_cross_entropy(logits, target, cost_matrix),
        nll * [[5.0], [0.5]],
        rtol=1e-15,
    )
    # Ties go to the first class: cost[2, 0] = 9.
    tied = reference.cost_sensitive_cross_entropy(np.zeros((1, 3)), [2], cost_matrix)
    np.testing.assert_allclose(tied, [9.0 * np.log(3.0)], rtol=1e-15)


def test_expected_cost_by_hand():
    logits = np.log(np.array([[[0.5], [0.3], [0.2]], [[0.1], [0.1], [0.8]]]))  # (2, 3, 1)
    target = np.array([[1], [2]])
    cost_matrix = np.array([[0.0, 1.0, 2.0], [5.0, 0.0, 1.0], [9.0, 8.0, 0.5]])
    # Row 1 of the costs against p = (0.5, 0.3, 0.2); row 2 against (0.1, 0.1, 0.8).
    expected = [[5.0 * 0.5 + 1.0 * 0.2], [9.0 * 0.1 + 8.0 * 0.1 + 0.5 * 0.8]]
    np.testing.assert_allclose(
        reference.expected_cost(logits, target, cost_matrix), expected, rtol=1e-15
    )
    probabilities = np.exp(logits)
    np.testing.assert_allclose(
        reference.expected_cost(probabilities, target, cost_matrix, from_logits=False),
        expected,
        rtol=1e-15,
    )
    with pytest.raises(ValueError, match=r"cost_matrix must be \(3, 3\), got \(2, 2\)"):
        reference.expected_cost(logits, target, np.eye(2))


def test_invalid_input():
    with pytest.raises(ValueError, match=r"input \(2, 3\) and target \(3, 2\)"):
        reference.dice_loss(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="smooth must be a finite number > 0, got 0.0"):
        reference.tversky_loss(np.zeros((2, 3)), np.zeros((2, 3)), smooth=0.0)
    with pytest.raises(ValueError, match="batch axis"):
        reference.dice_loss(0.5, 1.0)
    with pytest.raises(ValueError, match=r"class indices \(integers\), got dtype float64"):
        reference.weighted_cross_entropy(np.zeros((2, 3)), np.zeros(2))
    with pytest.raises(ValueError, match=r"without its class axis 1, got input \(2, 3\)"):
        reference.cost_sensitive_cross_entropy(np.zeros((2, 3)), np.zeros(3, int), np.eye(3))
