"""The segmentation losses as plain PyTorch expressions, differentiated by autograd.

What companion.torch's losses, with their hand-written backwards, are measured against:
segmentation_losses.py times these as contenders, and tests/torch compares companion.torch's
values and gradients with theirs. A helper module, not a benchmark (``make bench`` skips files
whose name starts with ``_``); the scripts import it from their own folder, the tests through
``pythonpath`` in pyproject.toml.

Each takes logits (N, C, ...) and returns the mean over the batch unless told otherwise:
``reduction="none"`` keeps one value per sample (Dice, Tversky) or per element (focal) or per
pixel (the Keras loop).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _reduce(values: torch.Tensor, reduction: str) -> torch.Tensor:
    return {"mean": torch.mean, "sum": torch.sum, "none": lambda values: values}[reduction](values)


def plain_dice(input, target, *, from_logits=True, smooth=1.0, batch=False, reduction="mean"):
    """The textbook Dice loss of each sample (or of the whole batch with ``batch=True``)."""
    prob = torch.sigmoid(input) if from_logits else input
    rows = 1 if batch else input.shape[0]
    prob, target = prob.reshape(rows, -1), target.reshape(rows, -1)
    numerator = 2 * (prob * target).sum(1) + smooth
    return _reduce(1 - numerator / (prob.sum(1) + target.sum(1) + smooth), reduction)


def plain_dice_bce(input, target, smooth=1.0):
    return plain_dice(input, target, smooth=smooth) + F.binary_cross_entropy_with_logits(
        input, target
    )


def plain_focal(input, target, *, gamma=2.0, alpha=0.25, reduction="mean"):
    """torchvision's ``sigmoid_focal_loss``, the usual composition; ``alpha=None``: no alpha."""
    prob = torch.sigmoid(input)
    bce = F.binary_cross_entropy_with_logits(input, target, reduction="none")
    p_t = prob * target + (1 - prob) * (1 - target)
    loss = bce * (1 - p_t) ** gamma
    if alpha is not None:
        loss = loss * (alpha * target + (1 - alpha) * (1 - target))
    return _reduce(loss, reduction)


def plain_tversky(input, target, alpha=0.3, beta=0.7, smooth=1.0):
    prob = torch.sigmoid(input).flatten(1)
    target = target.flatten(1)
    true_positives = (prob * target).sum(1)
    false_positives = (prob * (1 - target)).sum(1)
    false_negatives = ((1 - prob) * target).sum(1)
    denominator = true_positives + alpha * false_positives + beta * false_negatives + smooth
    return (1 - (true_positives + smooth) / denominator).mean()


def plain_weighted_cross_entropy(input, target, class_weights, weight_map):
    """Cross-entropy weighted by class and by pixel, normalised by the sum of the weights."""
    weights = class_weights[target] * weight_map
    return (F.cross_entropy(input, target, reduction="none") * weights).sum() / weights.sum()


def one_hot(classes: torch.Tensor, n_classes: int, dtype=torch.float32) -> torch.Tensor:
    """Class indices (N, ...) as one-hot targets (N, C, ...) of ``dtype``."""
    return F.one_hot(classes, n_classes).movedim(-1, 1).to(dtype)


def keras_answer_mask(input, one_hot, cost_matrix):
    """The widely copied Keras answer's weights: a C x C Python loop of whole-batch operations.

    Over every (true, predicted) class pair it adds ``cost_matrix[true, predicted]`` where the
    target is ``true`` and ``predicted`` ties for the largest logit: a pixel whose largest
    logit is shared by several classes gets the sum of their costs.
    """
    n_classes = cost_matrix.shape[0]
    is_max = (input == input.amax(1, keepdim=True)).to(input.dtype)
    final_mask = torch.zeros_like(input[:, 0])
    for true_class in range(n_classes):
        for predicted_class in range(n_classes):
            final_mask += (
                cost_matrix[true_class, predicted_class]
                * is_max[:, predicted_class]
                * one_hot[:, true_class]
            )
    return final_mask


def keras_answer_loop(input, one_hot, cost_matrix, *, reduction="mean"):
    """The Keras answer's loss in PyTorch: its weights times the cross-entropy of each pixel."""
    final_mask = keras_answer_mask(input, one_hot, cost_matrix)
    log_prob = F.log_softmax(input, 1)
    return _reduce(-(one_hot * log_prob).sum(1) * final_mask.detach(), reduction)
