"""companion.torch segmentation losses against companion.reference, torch.nn and MONAI."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _plain_losses import (
    keras_answer_loop,
    keras_answer_mask,
    one_hot,
    plain_dice,
    plain_dice_bce,
    plain_focal,
    plain_tversky,
    plain_weighted_cross_entropy,
)
from helpers import binary_data, class_data, reduce
from torch import nn

from companion import reference
from companion.torch import (
    CostSensitiveCrossEntropyLoss,
    DiceBCELoss,
    DiceLoss,
    ExpectedCostLoss,
    FocalLoss,
    TverskyLoss,
    WeightedBCELoss,
    WeightedCrossEntropyLoss,
    _kernels,
    cost_sensitive_cross_entropy,
    dice_bce_loss,
    dice_loss,
    expected_cost_loss,
    focal_loss,
    tversky_loss,
    weighted_bce_loss,
    weighted_cross_entropy,
)

REDUCTIONS = ("mean", "sum", "none")
RTOL = 1e-12  # float64 against the NumPy reference
BINARY_SHAPE = (3, 1, 5, 6)  # of binary_data unless a test says otherwise: N, C, H, W
CLASS_SHAPE = (2, 4, 3, 5)  # of class_data's logits unless a test says otherwise


def tensors(*arrays):
    return [torch.tensor(array) for array in arrays]


def assert_matches(actual: torch.Tensor, expected, rtol=RTOL, atol=1e-15):
    assert actual.dtype == torch.float64
    np.testing.assert_allclose(actual.detach().numpy(), expected, rtol=rtol, atol=atol)


# -------------------------------------------------------------------------------- reference


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("pos_weight", [None, 4.0])
def test_weighted_bce_matches_reference_and_builtin(reduction, weighted, pos_weight):
    logits, target = binary_data(0, BINARY_SHAPE)
    weight = np.random.default_rng(1).uniform(0.0, 3.0, size=logits.shape) if weighted else None
    input, target_t = tensors(logits, target)
    weight_t = None if weight is None else torch.tensor(weight)
    ours = weighted_bce_loss(
        input, target_t, pos_weight=pos_weight, weight=weight_t, reduction=reduction
    )
    expected = reference.binary_cross_entropy_with_logits(
        logits, target, pos_weight=pos_weight, weight=weight
    )
    assert_matches(ours, reduce(expected, reduction))
    builtin = F.binary_cross_entropy_with_logits(
        input,
        target_t,
        weight=weight_t,
        pos_weight=None if pos_weight is None else torch.tensor(pos_weight, dtype=torch.float64),
        reduction=reduction,
    )
    assert torch.equal(ours, builtin)


def test_weighted_bce_per_channel_pos_weight_broadcasts():
    logits, target = binary_data(2, shape=(2, 3, 4, 4))
    pos_weight = np.array([1.0, 2.0, 5.0]).reshape(3, 1, 1)
    ours = weighted_bce_loss(
        *tensors(logits, target), pos_weight=torch.tensor(pos_weight), reduction="none"
    )
    expected = reference.binary_cross_entropy_with_logits(logits, target, pos_weight=pos_weight)
    assert_matches(ours, expected)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("from_logits", [True, False])
@pytest.mark.parametrize("batch", [False, True])
@pytest.mark.parametrize("smooth", [1.0, 1e-5])
def test_dice_matches_reference_and_plain_autograd(reduction, from_logits, batch, smooth):
    logits, target = binary_data(3, BINARY_SHAPE)
    values = logits if from_logits else 1 / (1 + np.exp(-logits))
    input, target_t = tensors(values, target)
    input.requires_grad_()
    loss = dice_loss(
        input, target_t, from_logits=from_logits, smooth=smooth, batch=batch, reduction=reduction
    )
    expected = reference.dice_loss(
        values, target, from_logits=from_logits, smooth=smooth, batch=batch
    )
    assert loss.shape == ((3,) if reduction == "none" and not batch else ())
    assert_matches(loss, expected if batch else reduce(expected, reduction))

    (grad,) = torch.autograd.grad(loss.sum(), input)
    plain = plain_dice(
        input, target_t, from_logits=from_logits, smooth=smooth, batch=batch, reduction=reduction
    )
    (expected_grad,) = torch.autograd.grad(plain.sum(), input)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-12, atol=1e-16)


@pytest.mark.parametrize(
    "alpha, beta", [(0.5, 0.5), (0.3, 0.7), (0.7, 0.3), (1.0, 1.0), (0.0, 2.0)]
)
@pytest.mark.parametrize("from_logits", [True, False])
@pytest.mark.parametrize("batch", [False, True])
def test_tversky_matches_reference(alpha, beta, from_logits, batch):
    logits, target = binary_data(4, BINARY_SHAPE, soft=True)
    values = logits if from_logits else 1 / (1 + np.exp(-logits))
    loss = tversky_loss(
        *tensors(values, target),
        alpha=alpha,
        beta=beta,
        from_logits=from_logits,
        batch=batch,
        reduction="none",
    )
    expected = reference.tversky_loss(
        values, target, alpha=alpha, beta=beta, from_logits=from_logits, batch=batch
    )
    assert_matches(loss, expected)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("pos_weight", [None, 3.0])
@pytest.mark.parametrize("dice_weight, bce_weight", [(1.0, 1.0), (0.3, 2.0)])
def test_dice_bce_matches_reference(reduction, pos_weight, dice_weight, bce_weight):
    logits, target = binary_data(5, BINARY_SHAPE)
    loss = dice_bce_loss(
        *tensors(logits, target),
        dice_weight=dice_weight,
        bce_weight=bce_weight,
        pos_weight=pos_weight,
        smooth=0.5,
        reduction=reduction,
    )
    expected = reference.dice_bce_loss(
        logits,
        target,
        dice_weight=dice_weight,
        bce_weight=bce_weight,
        pos_weight=pos_weight,
        smooth=0.5,
    )
    assert_matches(loss, reduce(expected, reduction))


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.0, 3.5])
@pytest.mark.parametrize("alpha", [None, 0.25, 0.9])
@pytest.mark.parametrize("soft", [False, True])
def test_focal_matches_reference_and_plain_autograd(gamma, alpha, soft):
    logits, target = binary_data(6, BINARY_SHAPE, soft=soft)
    input, target_t = tensors(logits, target)
    input.requires_grad_()
    loss = focal_loss(input, target_t, gamma=gamma, alpha=alpha, reduction="none")
    assert_matches(loss, reference.focal_loss(logits, target, gamma=gamma, alpha=alpha))
    (grad,) = torch.autograd.grad(loss.sum(), input)
    plain = plain_focal(input, target_t, gamma=gamma, alpha=alpha, reduction="none")
    (expected,) = torch.autograd.grad(plain.sum(), input)
    torch.testing.assert_close(grad, expected, rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("with_class_weights", [False, True])
@pytest.mark.parametrize("with_weight_map", [False, True])
def test_weighted_cross_entropy_matches_reference(reduction, with_class_weights, with_weight_map):
    logits, target = class_data(7, CLASS_SHAPE)
    rng = np.random.default_rng(8)
    class_weights = rng.uniform(0.2, 3.0, size=4) if with_class_weights else None
    weight_map = rng.uniform(1.0, 10.0, size=target.shape) if with_weight_map else None
    loss = weighted_cross_entropy(
        *tensors(logits, target),
        class_weights=None if class_weights is None else torch.tensor(class_weights),
        weight_map=None if weight_map is None else torch.tensor(weight_map),
        reduction=reduction,
    )
    values = reference.weighted_cross_entropy(
        logits, target, class_weights=class_weights, weight_map=weight_map
    )
    weights = np.ones(target.shape)
    if class_weights is not None:
        weights = weights * class_weights[target]
    if weight_map is not None:
        weights = weights * weight_map
    expected = values.sum() / weights.sum() if reduction == "mean" else reduce(values, reduction)
    assert_matches(loss, expected)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_weighted_cross_entropy_with_class_weights_is_torch_builtin(reduction):
    logits, target = class_data(9, CLASS_SHAPE)
    input, target_t = tensors(logits, target)
    class_weights = torch.tensor([0.5, 1.0, 4.0, 2.0], dtype=torch.float64)
    ours = weighted_cross_entropy(input, target_t, class_weights=class_weights, reduction=reduction)
    builtin = F.cross_entropy(input, target_t, weight=class_weights, reduction=reduction)
    assert torch.equal(ours, builtin)
    module = WeightedCrossEntropyLoss(class_weights.tolist(), reduction=reduction)
    torch.testing.assert_close(module(input, target_t), builtin, rtol=1e-15, atol=0.0)


def keras_answer_per_pixel(logits, target, cost_matrix):
    """The widely copied Keras loss per pixel: the double loop's weights, in float64, times
    the reference cross-entropy."""
    classes = torch.tensor(target)
    final_mask = keras_answer_mask(
        torch.tensor(logits),
        one_hot(classes, logits.shape[1], torch.float64),
        torch.tensor(cost_matrix),
    )
    return final_mask.numpy() * reference.weighted_cross_entropy(logits, target)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cost_sensitive_matches_reference_and_the_loop(reduction):
    logits, target = class_data(10, shape=(2, 5, 4, 4))
    cost_matrix = np.random.default_rng(11).uniform(0.0, 5.0, size=(5, 5))
    loss = cost_sensitive_cross_entropy(
        *tensors(logits, target), torch.tensor(cost_matrix), reduction=reduction
    )
    expected = reference.cost_sensitive_cross_entropy(logits, target, cost_matrix)
    assert_matches(loss, reduce(expected, reduction))
    loop = keras_answer_per_pixel(logits, target, cost_matrix)
    np.testing.assert_allclose(expected, loop, rtol=1e-14)


def test_cost_sensitive_ties_take_the_first_class_where_the_loop_sums():
    # All-equal logits: every class ties for the maximum.
    logits, target = np.zeros((1, 3, 1, 2)), np.array([[[2, 1]]])
    cost_matrix = np.array([[0.0, 1.0, 2.0], [3.0, 0.0, 4.0], [5.0, 6.0, 0.0]])
    loss = cost_sensitive_cross_entropy(
        *tensors(logits, target), cost_matrix.tolist(), reduction="none"
    )
    assert_matches(loss, (cost_matrix[[2, 1], 0] * np.log(3.0)).reshape(1, 1, 2))
    loop = keras_answer_per_pixel(logits, target, cost_matrix)
    np.testing.assert_allclose(
        loop.ravel(), cost_matrix[[2, 1]].sum(axis=1) * np.log(3.0), rtol=1e-15
    )


def test_the_benchmarks_plain_expressions_match_the_reference():
    # benchmarks/segmentation_losses.py times these beside companion.torch's losses, with
    # their default options: each must compute the loss it stands for.
    logits, target = binary_data(27, BINARY_SHAPE)
    input, target_t = tensors(logits, target)
    class_logits, classes = class_data(28, CLASS_SHAPE)
    rng = np.random.default_rng(29)
    class_weights, weight_map = rng.uniform(0.5, 5.0, size=4), rng.uniform(1.0, 10.0, classes.shape)
    cost_matrix = rng.uniform(1.0, 2.0, size=(4, 4))
    class_input, classes_t = tensors(class_logits, classes)
    weights = class_weights[classes] * weight_map
    pairs = [
        (plain_dice(input, target_t), reference.dice_loss(logits, target).mean()),
        (plain_dice_bce(input, target_t), reference.dice_bce_loss(logits, target).mean()),
        (plain_focal(input, target_t), reference.focal_loss(logits, target, alpha=0.25).mean()),
        (
            plain_tversky(input, target_t),
            reference.tversky_loss(logits, target, alpha=0.3, beta=0.7).mean(),
        ),
        (
            plain_weighted_cross_entropy(
                class_input, classes_t, torch.tensor(class_weights), torch.tensor(weight_map)
            ),
            (reference.weighted_cross_entropy(class_logits, classes) * weights).sum()
            / weights.sum(),
        ),
        (
            keras_answer_loop(
                class_input, one_hot(classes_t, 4, torch.float64), torch.tensor(cost_matrix)
            ),
            reference.cost_sensitive_cross_entropy(class_logits, classes, cost_matrix).mean(),
        ),
    ]
    for plain, expected in pairs:
        assert_matches(plain, expected)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_expected_cost_matches_reference_and_its_closed_form_gradient(reduction):
    logits, target = class_data(14, shape=(2, 5, 3, 4))
    cost_matrix = np.random.default_rng(15).uniform(0.0, 5.0, size=(5, 5))
    input = torch.tensor(logits, requires_grad=True)
    loss = expected_cost_loss(input, torch.tensor(target), cost_matrix, reduction=reduction)
    expected = reference.expected_cost(logits, target, cost_matrix)
    assert_matches(loss, reduce(expected, reduction))
    # d loss_i / d x_ij = p_ij (cost[y_i, j] - loss_i), summed over pixels.
    loss.sum().backward()
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    rows = np.moveaxis(cost_matrix[target], -1, 1)
    grad = p * (rows - expected[:, None])
    scale = 1.0 / target.size if reduction == "mean" else 1.0
    np.testing.assert_allclose(input.grad.numpy(), scale * grad, rtol=1e-12, atol=1e-15)


def test_expected_cost_limits():
    logits, target = tensors(*class_data(16, shape=(2, 3, 4, 4)))
    logits.requires_grad_()
    # Equal costs: the loss is that cost everywhere and the gradient vanishes.
    flat = expected_cost_loss(logits, target, torch.full((3, 3), 2.0, dtype=torch.float64))
    (grad,) = torch.autograd.grad(flat, logits)
    assert flat.item() == pytest.approx(2.0, rel=1e-15)
    assert grad.abs().max().item() < 1e-16
    # 0-1 costs: the expected error 1 - p_y.
    zero_one = expected_cost_loss(logits, target, 1.0 - torch.eye(3), reduction="none")
    p_true = torch.softmax(logits, 1).gather(1, target.unsqueeze(1)).squeeze(1)
    torch.testing.assert_close(zero_one, 1.0 - p_true, rtol=1e-14, atol=1e-15)
    # No argmax involved: ties are smooth, and huge logits stay finite.
    tied = expected_cost_loss(torch.zeros(1, 3, 1), torch.tensor([[2]]), torch.eye(3) * 3)
    assert tied.item() == pytest.approx(1.0, rel=1e-7)


# ------------------------------------------------------------------------ limits and invariances


def test_limits_and_invariances():
    logits, target = binary_data(12, BINARY_SHAPE)
    input, target_t = tensors(logits, target)
    # A perfect prediction has Dice and Tversky loss 0.
    assert torch.all(dice_loss(target_t, target_t, from_logits=False, reduction="none") == 0)
    perfect = tversky_loss(target_t, target_t, alpha=0.3, beta=0.7, from_logits=False)
    assert perfect.item() == 0.0
    # Focal with gamma 0 and no alpha is BCE; alpha 0.5 halves it.
    bce = F.binary_cross_entropy_with_logits(input, target_t, reduction="none")
    torch.testing.assert_close(
        focal_loss(input, target_t, gamma=0.0, reduction="none"), bce, rtol=1e-13, atol=0.0
    )
    torch.testing.assert_close(
        focal_loss(input, target_t, gamma=0.0, alpha=0.5, reduction="none"),
        bce / 2,
        rtol=1e-13,
        atol=0.0,
    )
    # Tversky with alpha = beta = 1/2 and smoothing s is Dice with smoothing 2 s.
    torch.testing.assert_close(
        tversky_loss(input, target_t, smooth=0.25, reduction="none"),
        dice_loss(input, target_t, smooth=0.5, reduction="none"),
        rtol=1e-14,
        atol=1e-16,
    )
    # Weights of ones change nothing.
    ones = torch.ones_like(input)
    torch.testing.assert_close(
        weighted_bce_loss(input, target_t, pos_weight=1.0, weight=ones),
        F.binary_cross_entropy_with_logits(input, target_t),
        rtol=1e-15,
        atol=0.0,
    )
    class_logits, classes = tensors(*class_data(13, CLASS_SHAPE))
    plain_ce = F.cross_entropy(class_logits, classes)
    torch.testing.assert_close(
        weighted_cross_entropy(
            class_logits,
            classes,
            class_weights=torch.ones(4, dtype=torch.float64),
            weight_map=torch.ones(classes.shape, dtype=torch.float64),
        ),
        plain_ce,
        rtol=1e-14,
        atol=0.0,
    )
    ones_cost = torch.ones(4, 4, dtype=torch.float64)
    torch.testing.assert_close(
        cost_sensitive_cross_entropy(class_logits, classes, ones_cost),
        plain_ce,
        rtol=1e-14,
        atol=0.0,
    )
    # Dice + BCE with one weight at 0 is the other loss.
    torch.testing.assert_close(
        dice_bce_loss(input, target_t, dice_weight=0.0),
        F.binary_cross_entropy_with_logits(input, target_t),
        rtol=1e-15,
        atol=0.0,
    )
    torch.testing.assert_close(
        dice_bce_loss(input, target_t, bce_weight=0.0), dice_loss(input, target_t)
    )


def test_weight_map_scales_the_mean_as_a_weighted_average():
    class_logits, classes = tensors(*class_data(14, CLASS_SHAPE))
    constant = torch.full(classes.shape, 7.0, dtype=torch.float64)
    plain = weighted_cross_entropy(class_logits, classes)
    weighted = weighted_cross_entropy(class_logits, classes, weight_map=constant)
    torch.testing.assert_close(weighted, plain, rtol=1e-14, atol=0.0)
    summed = weighted_cross_entropy(class_logits, classes, weight_map=constant, reduction="sum")
    torch.testing.assert_close(summed, 7 * plain * classes.numel(), rtol=1e-14, atol=0.0)


def test_empty_and_full_masks_have_the_documented_values():
    shape = (2, 1, 4, 4)
    empty, full = torch.zeros(shape), torch.ones(shape)
    certain_no, certain_yes = torch.full(shape, -1e4), torch.full(shape, 1e4)
    # Empty target with an empty prediction: 0 (keras.losses.Dice gives 1 here).
    assert dice_loss(certain_no, empty).item() == 0.0
    assert dice_loss(empty, empty, from_logits=False).item() == 0.0
    assert tversky_loss(certain_no, empty).item() == 0.0
    # Empty target, p = 0.5 everywhere: sum(p) / (sum(p) + smooth) = 8 / 9.
    torch.testing.assert_close(dice_loss(torch.zeros(shape), empty), torch.tensor(8 / 9))
    # All-positive target predicted positive: 0.
    assert dice_loss(certain_yes, full).item() == 0.0
    assert tversky_loss(full, full, from_logits=False).item() == 0.0
    # All-positive target, p = 0.5: 1 - (2 * 8 + 1) / (8 + 16 + 1).
    torch.testing.assert_close(dice_loss(torch.zeros(shape), full), torch.tensor(1 - 17 / 25))
    for loss in (
        weighted_bce_loss(certain_no, empty),
        focal_loss(certain_yes, full),
        dice_bce_loss(certain_no, empty),
    ):
        assert loss.item() == 0.0
    assert torch.isfinite(dice_bce_loss(torch.zeros(shape), full))


# --------------------------------------------------------------------------------- gradients


def gradcheck_cases():
    generator = torch.Generator().manual_seed(15)
    input = (2 * torch.randn(2, 1, 3, 3, generator=generator, dtype=torch.float64)).requires_grad_()
    soft = torch.rand(2, 1, 3, 3, generator=generator, dtype=torch.float64).requires_grad_()
    hard = (soft.detach() > 0.5).double()
    weight = torch.rand(2, 1, 3, 3, generator=generator, dtype=torch.float64)
    class_input = torch.randn(2, 3, 2, 2, generator=generator, dtype=torch.float64)
    classes = torch.randint(0, 3, (2, 2, 2), generator=generator)
    class_weights = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64, requires_grad=True)
    weight_map = 1 + torch.rand(2, 2, 2, generator=generator, dtype=torch.float64)
    cost = torch.tensor([[0.0, 1.0, 2.0], [3.0, 0.5, 1.0], [2.0, 2.0, 0.1]], dtype=torch.float64)
    return {
        "weighted_bce": (
            lambda x: weighted_bce_loss(x, hard, pos_weight=2.0, weight=weight),
            (input,),
        ),
        "dice": (lambda x, t: dice_loss(x, t, reduction="none"), (input, soft)),
        "dice_probabilities": (
            lambda p, t: dice_loss(p, t, from_logits=False, batch=True),
            (soft, weight.clone().requires_grad_()),
        ),
        "dice_bce": (lambda x: dice_bce_loss(x, hard, pos_weight=3.0, reduction="none"), (input,)),
        "focal": (lambda x: focal_loss(x, soft.detach(), gamma=2.0, alpha=0.25), (input,)),
        "focal_small_gamma": (lambda x: focal_loss(x, hard, gamma=0.5), (input,)),
        "tversky": (
            lambda x, t: tversky_loss(x, t, alpha=0.3, beta=0.7, reduction="sum"),
            (input, soft),
        ),
        "weighted_cross_entropy": (
            lambda x, cw: weighted_cross_entropy(
                x, classes, class_weights=cw, weight_map=weight_map
            ),
            (class_input.clone().requires_grad_(), class_weights),
        ),
        "cost_sensitive": (
            lambda x: cost_sensitive_cross_entropy(x, classes, cost, reduction="sum"),
            (class_input.clone().requires_grad_(),),
        ),
        "expected_cost": (
            lambda x: expected_cost_loss(x, classes, cost, reduction="none"),
            (class_input.clone().requires_grad_(),),
        ),
    }


@pytest.mark.parametrize("name", list(gradcheck_cases()))
def test_gradcheck(name):
    function, inputs = gradcheck_cases()[name]
    assert torch.autograd.gradcheck(function, inputs)


def test_hand_written_backwards_are_not_twice_differentiable():
    input = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    target = torch.ones(2, 4, dtype=torch.float64)
    classes = torch.tensor([0, 3])
    losses = (
        ("dice_loss", lambda: dice_loss(input, target)),
        ("focal_loss", lambda: focal_loss(input, target)),
        (
            "cost_sensitive_cross_entropy",
            lambda: cost_sensitive_cross_entropy(
                input, classes, torch.ones(4, 4, dtype=torch.float64)
            ),
        ),
    )
    for name, loss_fn in losses:
        with pytest.raises(RuntimeError, match=f"backward of {name}.* not twice differentiable"):
            torch.autograd.grad(loss_fn(), input, create_graph=True)
        # The first derivative alone is fine.
        (grad,) = torch.autograd.grad(loss_fn(), input)
        assert torch.all(torch.isfinite(grad))


# ---------------------------------------------------------------- extreme and low precision


def every_binary_loss(input, target):
    return {
        "weighted_bce": weighted_bce_loss(input, target, pos_weight=5.0),
        "dice": dice_loss(input, target),
        "dice_batch": dice_loss(input, target, batch=True),
        "dice_bce": dice_bce_loss(input, target),
        "focal": focal_loss(input, target),
        "focal_small_gamma": focal_loss(input, target, gamma=0.3, alpha=0.25),
        "tversky": tversky_loss(input, target, alpha=0.3, beta=0.7),
    }


def every_class_loss(input, target):
    return {
        "weighted_cross_entropy": weighted_cross_entropy(
            input, target, class_weights=[1.0, 2.0, 3.0], weight_map=torch.ones(target.shape)
        ),
        "cost_sensitive": cost_sensitive_cross_entropy(
            input, target, [[0.0, 1.0, 1.0], [2.0, 0.0, 1.0], [5.0, 1.0, 0.0]]
        ),
        "expected_cost": expected_cost_loss(
            input, target, [[0.0, 1.0, 1.0], [2.0, 0.0, 1.0], [5.0, 1.0, 0.0]]
        ),
    }


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_huge_logits_give_finite_losses_and_gradients(dtype):
    # Right and wrong predictions with |logit| = 1e4, both signs, both targets.
    input = torch.tensor([[1e4, -1e4, 1e4, -1e4, 0.0, 3.0]], dtype=dtype, requires_grad=True)
    target = torch.tensor([[1.0, 0.0, 0.0, 1.0, 1.0, 0.0]], dtype=dtype)
    for name, loss in every_binary_loss(input, target).items():
        (grad,) = torch.autograd.grad(loss, input)
        assert torch.isfinite(loss), name
        assert torch.all(torch.isfinite(grad)), name
    class_input = torch.tensor([[[1e4], [-1e4], [0.0]], [[-1e4], [1e4], [-1e4]]], dtype=dtype)
    class_input.requires_grad_()
    for name, loss in every_class_loss(class_input, torch.tensor([[0], [2]])).items():
        (grad,) = torch.autograd.grad(loss, class_input)
        assert torch.isfinite(loss), name
        assert torch.all(torch.isfinite(grad)), name
    # The wrong predictions cost about 1e4 each in BCE.
    bce = weighted_bce_loss(input, target, reduction="none")
    torch.testing.assert_close(bce[0, 2:4], torch.full((2,), 1e4, dtype=dtype))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs(dtype):
    logits, target = binary_data(16, shape=(2, 1, 64, 64))
    input = torch.tensor(logits, dtype=dtype, requires_grad=True)
    expected = {
        "weighted_bce": reference.binary_cross_entropy_with_logits(
            logits, target, pos_weight=5.0
        ).mean(),
        "dice": reference.dice_loss(logits, target).mean(),
        "dice_batch": reference.dice_loss(logits, target, batch=True),
        "dice_bce": reference.dice_bce_loss(logits, target).mean(),
        "focal": reference.focal_loss(logits, target).mean(),
        "focal_small_gamma": reference.focal_loss(logits, target, gamma=0.3, alpha=0.25).mean(),
        "tversky": reference.tversky_loss(logits, target, alpha=0.3, beta=0.7).mean(),
    }
    # Logits rounded to the half format are the input: compare with the reference at those.
    rounded = input.detach().double().numpy()
    rtol = 2e-2 if dtype == torch.bfloat16 else 3e-3
    for name, loss in every_binary_loss(input, torch.tensor(target, dtype=dtype)).items():
        assert loss.dtype == dtype, name
        (grad,) = torch.autograd.grad(loss, input)
        assert grad.dtype == dtype and torch.all(torch.isfinite(grad)), name
        np.testing.assert_allclose(loss.double().item(), expected[name], rtol=rtol, err_msg=name)
    np.testing.assert_allclose(rounded, logits, rtol=1e-2, atol=1e-2)

    class_logits, classes = class_data(17, shape=(2, 3, 32, 32))
    class_input = torch.tensor(class_logits, dtype=dtype)
    for name, loss in every_class_loss(class_input, torch.tensor(classes)).items():
        assert loss.dtype == dtype and torch.isfinite(loss), name


def test_a_half_precision_target_does_not_lower_the_precision():
    # F.binary_cross_entropy_with_logits alone returns bfloat16 for a float64 input here.
    logits, target = binary_data(18, shape=(2, 1, 16, 16))
    input = torch.tensor(logits, requires_grad=True)
    half_target = torch.tensor(target, dtype=torch.bfloat16)  # 0 and 1: exact
    for name, loss in every_binary_loss(input, half_target).items():
        exact = every_binary_loss(input, torch.tensor(target))[name]
        assert loss.dtype == torch.float64, name
        torch.testing.assert_close(loss, exact, rtol=1e-12, atol=0.0, msg=name)


def test_half_precision_weighted_mean_does_not_overflow():
    # 2 * 3 * 256 * 256 pixels with loss ~ 2: the float16 sum would overflow (max 65504).
    class_logits = torch.zeros(2, 3, 256, 256, dtype=torch.float16)
    classes = torch.zeros(2, 256, 256, dtype=torch.long)
    loss = weighted_cross_entropy(class_logits, classes, weight_map=torch.ones(2, 256, 256).half())
    assert loss.dtype == torch.float16
    torch.testing.assert_close(
        loss.float(), torch.tensor(np.log(3.0), dtype=torch.float32), rtol=1e-3, atol=0.0
    )


# ------------------------------------------------------------------------------ fused paths


def test_compiled_cost_sensitive_equals_the_default_path(monkeypatch):
    monkeypatch.setattr(_kernels, "COMPILE_BACKEND", "aot_eager")
    generator = torch.Generator().manual_seed(24)
    logits = torch.randn(3, 4, 5, 6, generator=generator, dtype=torch.float64)
    logits[0, :, 0, 0] = 1.0  # a four-way tie: the first class is the prediction
    logits[1, :, 1, 1] = torch.tensor([-1e4, 1e4, 0.0, 1e4])  # huge logits, a two-way tie
    classes = torch.randint(0, 4, (3, 5, 6), generator=generator)
    cost = torch.rand(4, 4, generator=generator, dtype=torch.float64) + 0.5
    # float32 too: with logits of 1e4, probabilities recomputed from a rounded log-sum-exp
    # would be off by 2e-4.
    for dtype, rtol in ((torch.float64, 1e-12), (torch.float32, 1e-6)):
        for reduction in ("mean", "none"):
            input = logits.to(dtype).requires_grad_()
            compiled = cost_sensitive_cross_entropy(
                input, classes, cost.to(dtype), reduction=reduction, compile=True
            )
            default = cost_sensitive_cross_entropy(
                input, classes, cost.to(dtype), reduction=reduction
            )
            torch.testing.assert_close(compiled, default, rtol=rtol, atol=0.0)
            (grad_compiled,) = torch.autograd.grad(compiled.sum(), input)
            (grad_default,) = torch.autograd.grad(default.sum(), input)
            torch.testing.assert_close(grad_compiled, grad_default, rtol=rtol, atol=rtol * 1e-3)
    module = CostSensitiveCrossEntropyLoss(cost, compile=True)
    torch.testing.assert_close(
        module(logits, classes), cost_sensitive_cross_entropy(logits, classes, cost)
    )
    with pytest.raises(RuntimeError, match="not twice differentiable"):
        input = logits.clone().requires_grad_()
        loss = cost_sensitive_cross_entropy(input, classes, cost, compile=True)
        torch.autograd.grad(loss, input, create_graph=True)


def test_compiled_dice_equals_the_default_path(monkeypatch):
    # aot_eager traces the same graphs as inductor without compiling C++ (slow on two cores);
    # benchmarks/segmentation_losses.py times the inductor path and checks it there.
    monkeypatch.setattr(_kernels, "COMPILE_BACKEND", "aot_eager")
    logits, target = binary_data(18, shape=(4, 1, 16, 16))
    for from_logits, reduction in ((True, "mean"), (False, "none")):
        values = logits if from_logits else 1 / (1 + np.exp(-logits))
        input = torch.tensor(values, dtype=torch.float32, requires_grad=True)
        target_t = torch.tensor(target, dtype=torch.float32)
        kwargs = {"from_logits": from_logits, "reduction": reduction}
        compiled = dice_loss(input, target_t, compile=True, **kwargs)
        default = dice_loss(input, target_t, **kwargs)
        torch.testing.assert_close(compiled, default, rtol=1e-6, atol=1e-7)
        (grad_compiled,) = torch.autograd.grad(compiled.sum(), input)
        (grad_default,) = torch.autograd.grad(default.sum(), input)
        torch.testing.assert_close(grad_compiled, grad_default, rtol=1e-5, atol=1e-9)
    # Gradients with respect to logits and soft targets, in float64, on both sides of the
    # compiled path.
    generator = torch.Generator().manual_seed(23)
    input = torch.randn(2, 1, 3, 3, generator=generator, dtype=torch.float64, requires_grad=True)
    soft = torch.rand(2, 1, 3, 3, generator=generator, dtype=torch.float64, requires_grad=True)
    for from_logits in (True, False):
        values = input if from_logits else torch.sigmoid(input.detach()).requires_grad_()
        assert torch.autograd.gradcheck(
            lambda x, t, from_logits=from_logits: dice_loss(
                x, t, from_logits=from_logits, compile=True, reduction="none"
            ),
            (values, soft),
        )


def test_compiled_tversky_equals_the_default_path(monkeypatch):
    # The kernel of test_compiled_dice_equals_the_default_path with the Tversky terms; the
    # target requires a gradient too, which the compiled backward recomputes p for.
    monkeypatch.setattr(_kernels, "COMPILE_BACKEND", "aot_eager")
    logits, target = binary_data(19, shape=(4, 1, 16, 16), soft=True)
    input = torch.tensor(logits, dtype=torch.float32, requires_grad=True)
    soft = torch.tensor(target, dtype=torch.float32, requires_grad=True)
    kwargs = {"alpha": 0.3, "beta": 0.7, "reduction": "none"}
    compiled = tversky_loss(input, soft, compile=True, **kwargs)
    default = tversky_loss(input, soft, **kwargs)
    torch.testing.assert_close(compiled, default, rtol=1e-6, atol=1e-7)
    grads_compiled = torch.autograd.grad(compiled.sum(), (input, soft))
    grads_default = torch.autograd.grad(default.sum(), (input, soft))
    for grad_compiled, grad_default in zip(grads_compiled, grads_default, strict=True):
        torch.testing.assert_close(grad_compiled, grad_default, rtol=1e-5, atol=1e-9)
    module = TverskyLoss(alpha=0.3, beta=0.7, compile=True)
    torch.testing.assert_close(module(input, soft), default.mean(), rtol=1e-6, atol=1e-7)


def test_the_compile_option_leaves_nn_module_compile_alone():
    # compile=... is stored as use_compile: compile() stays nn.Module.compile (it compiles
    # the whole module, lazily), and the option shows in the repr.
    logits, target = binary_data(25, shape=(2, 1, 3, 3))
    input, target_t = tensors(logits, target)
    class_input, classes = tensors(*class_data(26, shape=(2, 3, 2, 2)))
    cases = [
        (DiceLoss, {}, (input, target_t), dice_loss(input, target_t)),
        (TverskyLoss, {}, (input, target_t), tversky_loss(input, target_t)),
        (
            CostSensitiveCrossEntropyLoss,
            {"cost_matrix": torch.ones(3, 3)},
            (class_input, classes),
            F.cross_entropy(class_input, classes),
        ),
    ]
    for cls, kwargs, args, expected in cases:
        assert cls.compile is nn.Module.compile
        assert "compile=True" in repr(cls(**kwargs, compile=True))
        module = cls(**kwargs)
        assert module.use_compile is False and repr(module).endswith("compile=False)")
        assert module.compile(backend="eager") is None
        torch.testing.assert_close(module(*args), expected)


# -------------------------------------------------------------------------------- MONAI


def test_dice_tversky_focal_agree_with_monai():
    from monai import losses  # a test dependency (the test extra)

    logits, target = binary_data(19, BINARY_SHAPE)
    input, target_t = tensors(logits, target)
    monai_dice = losses.DiceLoss(sigmoid=True, smooth_nr=0.5, smooth_dr=0.5, reduction="none")
    torch.testing.assert_close(
        dice_loss(input, target_t, smooth=0.5, reduction="none"),
        monai_dice(input, target_t).reshape(-1),
        rtol=1e-13,
        atol=1e-15,
    )
    # MONAI's TverskyLoss follows the paper too: alpha weighs false positives.
    monai_tversky = losses.TverskyLoss(
        sigmoid=True, alpha=0.3, beta=0.7, smooth_nr=1.0, smooth_dr=1.0, reduction="none"
    )
    torch.testing.assert_close(
        tversky_loss(input, target_t, alpha=0.3, beta=0.7, reduction="none"),
        monai_tversky(input, target_t).reshape(-1),
        rtol=1e-13,
        atol=1e-15,
    )
    # MONAI's FocalLoss returns float32 for float64 input (MONAI 1.6): float32 tolerances.
    monai_focal = losses.FocalLoss(gamma=2.0, alpha=0.25, use_softmax=False, reduction="none")
    torch.testing.assert_close(
        focal_loss(input, target_t, gamma=2.0, alpha=0.25, reduction="none").float(),
        monai_focal(input, target_t).float(),
        rtol=1e-6,
        atol=1e-7,
    )


# ---------------------------------------------------------------------------------- modules


def test_modules_match_functions():
    logits, target = binary_data(20, BINARY_SHAPE)
    input, target_t = tensors(logits, target)
    weight = torch.rand(input.shape, dtype=torch.float64)
    for reduction in REDUCTIONS:
        pairs = [
            (
                WeightedBCELoss(pos_weight=2.0, reduction=reduction)(input, target_t, weight),
                weighted_bce_loss(
                    input, target_t, pos_weight=2.0, weight=weight, reduction=reduction
                ),
            ),
            (
                DiceLoss(smooth=0.5, batch=True, reduction=reduction)(input, target_t),
                dice_loss(input, target_t, smooth=0.5, batch=True, reduction=reduction),
            ),
            (
                DiceBCELoss(dice_weight=0.5, pos_weight=3.0, reduction=reduction)(input, target_t),
                dice_bce_loss(
                    input, target_t, dice_weight=0.5, pos_weight=3.0, reduction=reduction
                ),
            ),
            (
                FocalLoss(gamma=1.5, alpha=0.25, reduction=reduction)(input, target_t),
                focal_loss(input, target_t, gamma=1.5, alpha=0.25, reduction=reduction),
            ),
            (
                TverskyLoss(alpha=0.2, beta=0.8, reduction=reduction)(input, target_t),
                tversky_loss(input, target_t, alpha=0.2, beta=0.8, reduction=reduction),
            ),
        ]
        class_input, classes = tensors(*class_data(21, CLASS_SHAPE))
        weight_map = torch.rand(classes.shape, dtype=torch.float64)
        cost = torch.rand(4, 4, dtype=torch.float64)
        pairs += [
            (
                WeightedCrossEntropyLoss([1.0, 2.0, 3.0, 4.0], reduction=reduction)(
                    class_input, classes, weight_map
                ),
                weighted_cross_entropy(
                    class_input,
                    classes,
                    class_weights=[1.0, 2.0, 3.0, 4.0],
                    weight_map=weight_map,
                    reduction=reduction,
                ),
            ),
            (
                CostSensitiveCrossEntropyLoss(cost, reduction=reduction)(class_input, classes),
                cost_sensitive_cross_entropy(class_input, classes, cost, reduction=reduction),
            ),
            (
                ExpectedCostLoss(cost, reduction=reduction)(class_input, classes),
                expected_cost_loss(class_input, classes, cost, reduction=reduction),
            ),
        ]
        for module_value, function_value in pairs:
            # Buffers are float32 until they meet the input: float32-rounded weights.
            torch.testing.assert_close(module_value, function_value, rtol=1e-6, atol=0.0)
    assert "alpha=0.2, beta=0.8" in repr(TverskyLoss(alpha=0.2, beta=0.8))
    assert "n_classes=4" in repr(CostSensitiveCrossEntropyLoss(torch.eye(4)))
    assert "n_classes=4, reduction='sum'" in repr(ExpectedCostLoss(torch.eye(4), reduction="sum"))


def test_module_buffers_follow_the_module():
    module = WeightedCrossEntropyLoss([1.0, 2.0]).double()
    assert module.class_weights.dtype == torch.float64
    assert set(dict(module.named_buffers())) == {"class_weights"}
    assert set(dict(WeightedBCELoss(pos_weight=2.0).named_buffers())) == {"pos_weight"}
    assert set(dict(CostSensitiveCrossEntropyLoss(torch.eye(2)).named_buffers())) == {"cost_matrix"}
    assert set(dict(ExpectedCostLoss(torch.eye(2)).named_buffers())) == {"cost_matrix"}


# -------------------------------------------------------------------------------- bad input


def test_shape_mismatch_names_both_shapes():
    input, target = torch.zeros(2, 1, 4, 4), torch.zeros(2, 4, 4)
    for function in (weighted_bce_loss, dice_loss, dice_bce_loss, focal_loss, tversky_loss):
        with pytest.raises(ValueError, match=r"input \(2, 1, 4, 4\) and target \(2, 4, 4\)"):
            function(input, target)
    with pytest.raises(ValueError, match=r"weight \(2, 4, 4\) and input \(2, 1, 4, 4\)"):
        weighted_bce_loss(input, input, weight=torch.ones(2, 4, 4))
    with pytest.raises(ValueError, match=r"pos_weight \(3, 1, 1\) and input \(2, 1, 4, 4\)"):
        weighted_bce_loss(input, input, pos_weight=torch.ones(3, 1, 1))
    classes = torch.zeros(2, 4, 5, dtype=torch.long)
    for function in (
        weighted_cross_entropy,
        CostSensitiveCrossEntropyLoss(torch.eye(3)),
        ExpectedCostLoss(torch.eye(3)),
    ):
        with pytest.raises(
            ValueError, match=r"without its class axis 1, got input \(2, 3, 4, 4\) and target"
        ):
            function(torch.zeros(2, 3, 4, 4), classes)
    with pytest.raises(ValueError, match=r"weight_map \(2, 4\) and target \(2, 4, 4\)"):
        weighted_cross_entropy(
            torch.zeros(2, 3, 4, 4), classes[:, :, :4], weight_map=torch.ones(2, 4)
        )


def test_integer_and_float_targets_where_the_other_is_needed():
    with pytest.raises(ValueError, match=r"target must be a floating-point tensor.*torch.int64"):
        dice_loss(torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"target must be a floating-point tensor.*torch.bool"):
        weighted_bce_loss(torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"input must be a floating-point tensor.*torch.int64"):
        focal_loss(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"class indices \(an integer dtype\).*torch.float32"):
        weighted_cross_entropy(torch.zeros(2, 3, 4), torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"class indices \(an integer dtype\).*torch.bool"):
        cost_sensitive_cross_entropy(
            torch.zeros(2, 2), torch.zeros(2, dtype=torch.bool), torch.eye(2)
        )
    # uint8 and int32 masks are class indices too.
    logits = torch.randn(2, 3, 4)
    classes = torch.randint(0, 3, (2, 4))
    expected = F.cross_entropy(logits, classes)
    for dtype in (torch.uint8, torch.int32):
        assert torch.equal(weighted_cross_entropy(logits, classes.to(dtype)), expected)


def test_class_weight_and_cost_matrix_sizes():
    logits, classes = torch.zeros(2, 3, 4), torch.zeros(2, 4, dtype=torch.long)
    with pytest.raises(
        ValueError,
        match=r"shape \(3,\) for input \(2, 3, 4\), got class_weights "
        r"\(2,\)",
    ):
        weighted_cross_entropy(logits, classes, class_weights=[1.0, 2.0])
    with pytest.raises(ValueError, match=r"class_weights must be one weight per class.*\(2, 2\)"):
        WeightedCrossEntropyLoss(torch.ones(2, 2))
    with pytest.raises(
        ValueError, match=r"cost_matrix must be a square matrix.*got shape \(3, 2\)"
    ):
        cost_sensitive_cross_entropy(logits, classes, torch.ones(3, 2))
    with pytest.raises(ValueError, match=r"cost_matrix must be a square matrix.*got shape \(3,\)"):
        CostSensitiveCrossEntropyLoss(torch.ones(3))
    with pytest.raises(ValueError, match=r"must be \(3, 3\) for the 3 classes.*\(2, 2\)"):
        cost_sensitive_cross_entropy(logits, classes, torch.eye(2))
    with pytest.raises(
        ValueError, match=r"cost_matrix must be a square matrix.*got shape \(3, 2\)"
    ):
        expected_cost_loss(logits, classes, torch.ones(3, 2))
    with pytest.raises(ValueError, match=r"must be \(3, 3\) for the 3 classes.*\(2, 2\)"):
        expected_cost_loss(logits, classes, torch.eye(2))
    with pytest.raises(ValueError, match=r"cost_matrix must be a square matrix.*got shape \(3,\)"):
        ExpectedCostLoss(torch.ones(3))


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda x: dice_loss(x, x, smooth=0.0), "smooth must be a finite number > 0, got 0.0"),
        (lambda x: DiceLoss(smooth=float("nan")), "smooth must be a finite number > 0, got nan"),
        (lambda x: tversky_loss(x, x, smooth=-1.0), "smooth must be a finite number > 0"),
        (lambda x: tversky_loss(x, x, alpha=-0.1), "alpha must be a finite number >= 0"),
        (lambda x: TverskyLoss(beta=float("inf")), "beta must be a finite number >= 0, got inf"),
        (lambda x: focal_loss(x, x, gamma=-1.0), "gamma must be a finite number >= 0"),
        (lambda x: FocalLoss(alpha=1.5), r"alpha must be None or a number in \[0, 1\], got 1.5"),
        (lambda x: dice_bce_loss(x, x, dice_weight=-1.0), "dice_weight must be a finite number"),
        (lambda x: DiceBCELoss(bce_weight=float("nan")), "bce_weight must be a finite number"),
        (
            lambda x: dice_loss(x, x, reduction="batchmean"),
            r"reduction must be one of .*"
            "'batchmean'",
        ),
        (lambda x: WeightedBCELoss(reduction="avg"), r"reduction must be one of .*'avg'"),
        (lambda x: dice_loss(x[0, 0], x[0, 0]), r"batch axis, shape \(N, \*\), got a scalar"),
    ],
)
def test_invalid_options(call, message):
    with pytest.raises(ValueError, match=message):
        call(torch.zeros(2, 3))


def test_first_max_is_max_and_argmax_with_ties_to_the_first():
    def check(scores):
        largest, index = _kernels.first_max(scores)
        assert torch.equal(index, scores.argmax(1, keepdim=True))
        assert torch.equal(largest, scores.amax(1, keepdim=True))

    generator = torch.Generator().manual_seed(22)
    scores = torch.randint(0, 3, (3, 5, 4, 6), generator=generator).float()  # many ties
    check(scores)
    check(scores[:, :, 0, 0])
    with_nan = torch.tensor([[float("nan"), 1.0, 2.0]])
    assert _kernels.first_max(with_nan)[1].item() in range(3)
    # Beyond 255 classes the countdown needs more than 8 bits.
    for n_classes in (255, 256, 300):
        check(torch.randint(0, 4, (6, n_classes, 3), generator=generator).float())
