"""companion.torch.precision: soft precision, recall, F-beta and precision-at-recall training."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from companion.torch.precision import (
    PrecisionAtRecallLoss,
    SoftFBetaLoss,
    soft_fbeta_loss,
    soft_precision,
    soft_recall,
)

# The hand-checked case: two positives (probabilities 0.9 and 0.4) among five.
T = [1.0, 0.0, 1.0, 0.0, 0.0]
P = [0.9, 0.6, 0.4, 0.2, 0.1]
# Soft counts, by hand: TP = 0.9 + 0.4 = 1.3, sum(p) = 0.9 + 0.6 + 0.4 + 0.2 + 0.1 = 2.2,
# sum(t) = 2, FN = 0.1 + 0.6 = 0.7, FP = 0.6 + 0.2 + 0.1 = 0.9.
HAND = {
    "precision": 1.3 / 2.2,  # 0.590909...
    "recall": 1.3 / 2.0,  # 0.65
    # 1 - (1 + b^2) TP / ((1 + b^2) TP + b^2 FN + FP)
    "f1_loss": 1.0 - 2.6 / (2.6 + 0.7 + 0.9),  # 1 - 2.6 / 4.2 = 0.380952...
    "f2_loss": 1.0 - 5 * 1.3 / (5 * 1.3 + 4 * 0.7 + 0.9),  # 1 - 6.5 / 10.2 = 0.362745...
    "f05_loss": 1.0 - 1.25 * 1.3 / (1.25 * 1.3 + 0.25 * 0.7 + 0.9),  # 1 - 1.625 / 2.7
}


def hand_tensors():
    return torch.tensor(P, dtype=torch.float64), torch.tensor(T, dtype=torch.float64)


def logit(p):
    return torch.log(p) - torch.log1p(-p)


def test_hand_checked_values():
    p, t = hand_tensors()
    kwargs = {"from_logits": False, "eps": 0.0}
    assert soft_precision(p, t, **kwargs).item() == pytest.approx(HAND["precision"], rel=1e-15)
    assert soft_recall(p, t, **kwargs).item() == pytest.approx(HAND["recall"], rel=1e-15)
    assert soft_fbeta_loss(p, t, **kwargs).item() == pytest.approx(HAND["f1_loss"], rel=1e-14)
    f2 = soft_fbeta_loss(p, t, beta=2.0, **kwargs).item()
    assert f2 == pytest.approx(HAND["f2_loss"], rel=1e-14)
    f05 = soft_fbeta_loss(p, t, beta=0.5, **kwargs).item()
    assert f05 == pytest.approx(HAND["f05_loss"], rel=1e-14)


def test_default_eps_enters_each_denominator():
    p, t = hand_tensors()
    eps = 1e-7
    assert soft_precision(p, t, from_logits=False).item() == pytest.approx(
        1.3 / (2.2 + eps), rel=1e-14
    )
    assert soft_recall(p, t, from_logits=False).item() == pytest.approx(
        1.3 / (2.0 + eps), rel=1e-14
    )
    assert soft_fbeta_loss(p, t, from_logits=False).item() == pytest.approx(
        1.0 - 2.6 / (4.2 + eps), rel=1e-14
    )


@pytest.mark.parametrize("beta", [0.5, 1.0, 2.0])
def test_fbeta_is_the_harmonic_form_of_soft_precision_and_recall(beta):
    rng = np.random.default_rng(int(10 * beta))
    p = torch.tensor(rng.uniform(size=50))
    t = torch.tensor((rng.uniform(size=50) < 0.3).astype(float))
    precision = soft_precision(p, t, from_logits=False, eps=0.0)
    recall = soft_recall(p, t, from_logits=False, eps=0.0)
    expected = 1 - (1 + beta**2) * precision * recall / (beta**2 * precision + recall)
    loss = soft_fbeta_loss(p, t, beta=beta, from_logits=False, eps=0.0)
    torch.testing.assert_close(loss, expected, rtol=1e-13, atol=0.0)


@pytest.mark.parametrize("fn", [soft_precision, soft_recall, soft_fbeta_loss])
def test_logits_and_probabilities_agree(fn):
    p, t = hand_tensors()
    from_probabilities = fn(p, t, from_logits=False)
    from_logits = fn(logit(p), t)
    torch.testing.assert_close(from_logits, from_probabilities, rtol=1e-14, atol=0.0)


@pytest.mark.parametrize("fn", [soft_precision, soft_recall, soft_fbeta_loss])
def test_class_index_is_that_class_against_the_rest(fn):
    generator = torch.Generator().manual_seed(3)
    logits = 3 * torch.randn(40, 4, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 4, (40,), generator=generator)
    for class_index in range(4):
        ours = fn(logits, labels, class_index=class_index)
        probability = torch.softmax(logits, dim=1)[:, class_index]
        binary = fn(probability, (labels == class_index).double(), from_logits=False)
        torch.testing.assert_close(ours, binary, rtol=1e-14, atol=0.0)
        probabilities = fn(
            torch.softmax(logits, dim=1), labels, class_index=class_index, from_logits=False
        )
        torch.testing.assert_close(probabilities, binary, rtol=1e-14, atol=0.0)


def test_hand_checked_values_with_class_index():
    # Column 2 holds the hand-checked probabilities; class 2 is the positive class.
    p, _ = hand_tensors()
    rest = 1.0 - p
    probabilities = torch.stack([0.25 * rest, 0.75 * rest, p], dim=1)
    labels = torch.tensor([2, 0, 2, 1, 0])
    kwargs = {"from_logits": False, "class_index": 2, "eps": 0.0}
    assert soft_precision(probabilities, labels, **kwargs).item() == pytest.approx(
        HAND["precision"], rel=1e-15
    )
    assert soft_fbeta_loss(probabilities, labels, **kwargs).item() == pytest.approx(
        HAND["f1_loss"], rel=1e-14
    )
    logits = torch.log(probabilities)
    assert soft_recall(logits, labels, class_index=2, eps=0.0).item() == pytest.approx(
        HAND["recall"], rel=1e-14
    )


def test_limits():
    t = torch.tensor(T, dtype=torch.float64)
    # Perfect hard predictions: precision and recall 1, F-beta loss 0 (to eps).
    assert soft_precision(t, t, from_logits=False, eps=0.0).item() == 1.0
    assert soft_recall(t, t, from_logits=False, eps=0.0).item() == 1.0
    assert soft_fbeta_loss(t, t, beta=3.0, from_logits=False, eps=0.0).item() == 0.0
    # Nothing predicted, or no positives: finite zeros thanks to eps, and loss 1.
    zeros = torch.zeros(5, dtype=torch.float64)
    assert soft_precision(zeros, t, from_logits=False).item() == 0.0
    assert soft_recall(t, zeros, from_logits=False).item() == 0.0
    assert soft_fbeta_loss(zeros, zeros, from_logits=False).item() == 1.0
    # beta -> 0 gives precision, beta -> infinity recall.
    p, t = hand_tensors()
    small = soft_fbeta_loss(p, t, beta=1e-6, from_logits=False, eps=0.0).item()
    large = soft_fbeta_loss(p, t, beta=1e6, from_logits=False, eps=0.0).item()
    assert small == pytest.approx(1 - HAND["precision"], rel=1e-10)
    assert large == pytest.approx(1 - HAND["recall"], rel=1e-10)


def test_soft_fbeta_module_is_the_function():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, generator=generator)
    target = (torch.rand(3, 5, generator=generator) < 0.4).float()
    criterion = SoftFBetaLoss(beta=2.0)
    assert torch.equal(criterion(logits, target), soft_fbeta_loss(logits, target, beta=2.0))
    assert (
        repr(criterion) == "SoftFBetaLoss(beta=2.0, from_logits=True, class_index=None, eps=1e-07)"
    )


@pytest.mark.parametrize("fn", [soft_precision, soft_recall, soft_fbeta_loss])
@pytest.mark.parametrize("class_index", [None, 1])
def test_gradcheck(fn, class_index):
    generator = torch.Generator().manual_seed(1)
    if class_index is None:
        input = torch.randn(4, 3, generator=generator, dtype=torch.float64, requires_grad=True)
        target = (torch.rand(4, 3, generator=generator) < 0.5).double()
    else:
        input = torch.randn(6, 3, generator=generator, dtype=torch.float64, requires_grad=True)
        target = torch.tensor([1, 0, 2, 1, 1, 0])
    assert torch.autograd.gradcheck(lambda x: fn(x, target, class_index=class_index), (input,))
    probabilities = torch.rand(4, 3, generator=generator, dtype=torch.float64) * 0.8 + 0.1
    probabilities.requires_grad_()
    if class_index is None:
        target = (torch.rand(4, 3, generator=generator) < 0.5).double()
    else:
        target = torch.tensor([1, 0, 2, 1])
    assert torch.autograd.gradcheck(
        lambda x: fn(x, target, class_index=class_index, from_logits=False), (probabilities,)
    )


def test_gradient_of_soft_precision_by_hand():
    # d/dp_i [sum(p t) / sum(p)] = (t_i - precision) / sum(p).
    p, t = hand_tensors()
    p.requires_grad_()
    soft_precision(p, t, from_logits=False, eps=0.0).backward()
    expected = (t - 1.3 / 2.2) / 2.2
    torch.testing.assert_close(p.grad, expected, rtol=1e-14, atol=1e-16)


def precision_at_recall_by_hand(logits, target, target_recall, multiplier, surrogate):
    """NumPy twin of the Lagrangian, written from the formula."""
    z = np.asarray(logits, dtype=np.float64)
    t = np.asarray(target, dtype=np.float64)
    if surrogate == "hinge":
        bound = lambda v: np.maximum(0.0, 1.0 - v)  # noqa: E731
    else:
        bound = lambda v: np.logaddexp(0.0, -v) / np.log(2.0)  # noqa: E731
    negatives = np.sum((1 - t) * bound(-z))
    violation = np.sum(t * bound(z)) - (1 - target_recall) * np.sum(t)
    return (negatives + multiplier * violation) / z.size, violation / z.size


def test_precision_at_recall_hand_checked():
    # Logits of the hand-checked probabilities, hinge surrogate, alpha = 0.5, lambda = 2:
    # negatives' hinge max(0, 1 + z) at z = logit(0.6), logit(0.2), logit(0.1);
    # positives' hinge max(0, 1 - z) at z = logit(0.9) = 2.197 (0) and logit(0.4) = -0.405.
    p, t = hand_tensors()
    z = logit(p)
    criterion = PrecisionAtRecallLoss(0.5, surrogate="hinge", multiplier_init=2.0).double()
    loss = criterion(z, t)
    logit06, logit02, logit01 = math.log(1.5), math.log(0.25), math.log(1 / 9)
    negatives = (1 + logit06) + max(0.0, 1 + logit02) + max(0.0, 1 + logit01)
    positives = 0.0 + (1 - math.log(0.4 / 0.6))
    expected = (negatives + 2.0 * (positives - 0.5 * 2)) / 5
    assert loss.item() == pytest.approx(expected, rel=1e-14)


@pytest.mark.parametrize("surrogate", ["cross_entropy", "hinge"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_precision_at_recall_matches_formula_and_flips_the_multiplier_gradient(
    surrogate, reduction
):
    rng = np.random.default_rng(7)
    logits = rng.normal(scale=2.0, size=30)
    target = (rng.uniform(size=30) < 0.3).astype(float)
    criterion = PrecisionAtRecallLoss(
        0.7, surrogate=surrogate, multiplier_init=1.5, reduction=reduction
    ).double()
    input = torch.tensor(logits, requires_grad=True)
    loss = criterion(input, torch.tensor(target))
    expected, violation = precision_at_recall_by_hand(logits, target, 0.7, 1.5, surrogate)
    scale = {"mean": 1.0, "sum": logits.size, "none": logits.size}[reduction]
    assert loss.sum().item() == pytest.approx(scale * expected, rel=1e-13)
    assert loss.shape == ((30,) if reduction == "none" else ())
    loss.sum().backward()
    # The multiplier's gradient is minus dL/dlambda, so optimizer.step() ascends in lambda.
    assert criterion.multiplier.grad.item() == pytest.approx(-scale * violation, rel=1e-13)


@pytest.mark.parametrize("surrogate", ["cross_entropy", "hinge"])
@pytest.mark.parametrize("class_index", [None, 2])
def test_precision_at_recall_gradcheck_in_the_input(surrogate, class_index):
    generator = torch.Generator().manual_seed(5)
    if class_index is None:
        # Logits away from the hinge's kinks at +-1.
        input = torch.tensor([2.3, -0.4, 0.3, -1.7, 1.4, 0.1], dtype=torch.float64)
        target = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0, 1.0], dtype=torch.float64)
    else:
        input = torch.randn(6, 3, generator=generator, dtype=torch.float64)
        target = torch.tensor([2, 0, 2, 1, 0, 1])
    input.requires_grad_()
    criterion = PrecisionAtRecallLoss(0.8, surrogate=surrogate, class_index=class_index).double()
    assert torch.autograd.gradcheck(lambda x: criterion(x, target), (input,))


def test_precision_at_recall_class_index_and_probabilities():
    generator = torch.Generator().manual_seed(2)
    logits = torch.randn(20, 3, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 3, (20,), generator=generator)
    criterion = PrecisionAtRecallLoss(0.6, class_index=1, reduction="none").double()
    probability = torch.softmax(logits, dim=1)[:, 1]
    binary = PrecisionAtRecallLoss(0.6, reduction="none").double()
    expected = binary(logit(probability), (labels == 1).double())
    torch.testing.assert_close(criterion(logits, labels), expected, rtol=1e-12, atol=1e-14)
    from_probabilities = PrecisionAtRecallLoss(0.6, from_logits=False, reduction="none").double()
    torch.testing.assert_close(
        from_probabilities(probability, (labels == 1).double()), expected, rtol=1e-12, atol=1e-14
    )


def test_multiplier_is_projected_onto_nonnegative_values():
    criterion = PrecisionAtRecallLoss(0.5)
    with torch.no_grad():
        criterion.multiplier.fill_(-0.3)
    logits, target = torch.tensor([1.0, -1.0]), torch.tensor([1.0, 0.0])
    loss = criterion(logits, target)
    assert criterion.multiplier.item() == 0.0
    assert loss.item() == pytest.approx(F.softplus(torch.tensor(-1.0)).item() / math.log(2) / 2)


@pytest.mark.parametrize(
    "fn",
    [
        soft_precision,
        soft_recall,
        soft_fbeta_loss,
        PrecisionAtRecallLoss(0.8),
        PrecisionAtRecallLoss(0.8, surrogate="hinge"),
    ],
    ids=["precision", "recall", "fbeta", "par_xent", "par_hinge"],
)
@pytest.mark.parametrize("class_index", [None, 0])
def test_huge_logits_give_finite_values_and_gradients(fn, class_index):
    values = torch.tensor([1e4, -1e4, 1e4, -1e4], dtype=torch.float32)
    if class_index is None:
        input, target = values.clone(), torch.tensor([1.0, 1.0, 0.0, 0.0])
    else:
        input, target = torch.stack([values, -values], dim=1), torch.tensor([0, 0, 1, 1])
    input.requires_grad_()
    kwargs = {} if isinstance(fn, PrecisionAtRecallLoss) else {"class_index": class_index}
    if class_index is not None and isinstance(fn, PrecisionAtRecallLoss):
        fn = PrecisionAtRecallLoss(0.8, surrogate=fn.surrogate, class_index=class_index)
    loss = fn(input, target, **kwargs)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(input.grad).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs(dtype):
    p, t = hand_tensors()
    z = logit(p)
    for fn, expected in [
        (soft_precision, HAND["precision"]),
        (soft_recall, HAND["recall"]),
        (soft_fbeta_loss, HAND["f1_loss"]),
    ]:
        value = fn(z.to(dtype), t.to(dtype))
        assert value.dtype == dtype
        assert value.item() == pytest.approx(expected, rel=1e-2)


@pytest.mark.parametrize("surrogate", ["cross_entropy", "hinge"])
def test_precision_at_recall_reaches_the_target_recall(surrogate):
    """A linear model trained with the loss meets recall >= 0.9 on its training data.

    Data: 400 points in 2-D, 10% positives shifted by (1.5, 1.5), seeded, so that the
    classes overlap a little. Plain BCE gives a recall of only 0.45 at probability 0.5;
    Adam with learning rate 0.05 for the weights and 0.5 for the multiplier (its own
    parameter group), 200 full-batch steps, float64.
    """
    generator = torch.Generator().manual_seed(0)
    target = (torch.rand(400, generator=generator) < 0.1).double()
    features = torch.randn(400, 2, generator=generator, dtype=torch.float64)
    features = features + 1.5 * target[:, None]

    def train(loss_fn, extra_params=(), steps=200):
        torch.manual_seed(0)
        model = torch.nn.Linear(2, 1).double()
        groups = [{"params": model.parameters()}]
        if extra_params:
            groups.append({"params": extra_params, "lr": 0.5})
        optimizer = torch.optim.Adam(groups, lr=0.05)
        for _ in range(steps):
            optimizer.zero_grad()
            loss_fn(model(features).squeeze(1), target).backward()
            optimizer.step()
        logits = model(features).squeeze(1).detach()
        return ((logits > 0) & (target > 0)).sum().item() / target.sum().item()

    assert train(F.binary_cross_entropy_with_logits) < 0.5
    criterion = PrecisionAtRecallLoss(0.9, surrogate=surrogate).double()
    assert train(criterion, list(criterion.parameters())) >= 0.9
    assert criterion.multiplier.item() > 5.0  # the ascent raised lambda from 1


def test_shape_mismatch_names_both_shapes():
    input, target = torch.zeros(4), torch.zeros(4, 1)
    for fn in (soft_precision, soft_recall, soft_fbeta_loss, PrecisionAtRecallLoss(0.5)):
        with pytest.raises(ValueError, match=r"input \(4,\) and target \(4, 1\)"):
            fn(input, target)
    with pytest.raises(
        ValueError, match=r"class indices \(N, \*\), got input \(4, 3\) and target \(4, 3\)"
    ):
        soft_precision(torch.zeros(4, 3), torch.zeros(4, 3), class_index=0)
    with pytest.raises(ValueError, match=r"class_index must be < C = 3 for input \(4, 3\), got 3"):
        soft_fbeta_loss(torch.zeros(4, 3), torch.zeros(4), class_index=3)
    with pytest.raises(ValueError, match=r"needs C >= 2 classes, got input \(4, 1\)"):
        soft_recall(torch.zeros(4, 1), torch.zeros(4), class_index=0)


@pytest.mark.parametrize("beta", [0.0, -1.0, math.inf, math.nan])
def test_bad_beta(beta):
    with pytest.raises(ValueError, match=r"beta must be a finite number > 0, got"):
        soft_fbeta_loss(torch.zeros(2), torch.zeros(2), beta=beta)
    with pytest.raises(ValueError, match=r"beta must be a finite number > 0, got"):
        SoftFBetaLoss(beta=beta)


@pytest.mark.parametrize("target_recall", [0.0, 1.0, -0.2, 1.5, math.nan])
def test_bad_target_recall(target_recall):
    with pytest.raises(ValueError, match=r"target_recall must lie in the open interval \(0, 1\)"):
        PrecisionAtRecallLoss(target_recall)


def test_other_bad_arguments():
    with pytest.raises(ValueError, match=r"surrogate must be one of \('cross_entropy', 'hinge'\)"):
        PrecisionAtRecallLoss(0.5, surrogate="logistic")
    with pytest.raises(ValueError, match=r"reduction must be one of \('mean', 'sum', 'none'\)"):
        PrecisionAtRecallLoss(0.5, reduction="batchmean")
    with pytest.raises(ValueError, match=r"multiplier_init must be a finite number >= 0, got -1.0"):
        PrecisionAtRecallLoss(0.5, multiplier_init=-1.0)
    with pytest.raises(ValueError, match=r"eps must be a finite number >= 0, got -1e-07"):
        soft_precision(torch.zeros(2), torch.zeros(2), eps=-1e-7)
    with pytest.raises(ValueError, match=r"class_index must be None or an int >= 0, got 1.0"):
        soft_recall(torch.zeros(2, 2), torch.zeros(2), class_index=1.0)
    with pytest.raises(ValueError, match=r"class_index must be None or an int >= 0, got -1"):
        SoftFBetaLoss(class_index=-1)
