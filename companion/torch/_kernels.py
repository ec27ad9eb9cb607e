"""The hand-written autograd Functions of the segmentation losses and their compiled paths.

Private: ``companion.torch.segmentation`` checks the arguments and calls the three entry points
here, :func:`overlap_loss` (Dice and Tversky), :func:`focal_elementwise` and
:func:`cost_sensitive_nll`. Changes that make a loss faster land in this file; changes to
what a loss computes or how it is called land in ``segmentation.py``.

Each Function has a hand-written backward, which autograd would treat as a constant if asked
for second derivatives; every backward therefore refuses ``create_graph=True``
(:func:`_refuse_double_backward`). The ``compile=True`` paths run a forward and a backward
function through ``torch.compile`` (backend :data:`COMPILE_BACKEND`), each compiled once per
function and backend (:func:`_compiled`) and specialized to the input shapes
(``dynamic=False``): the first call for a shape compiles, seconds to tens of seconds on CPU
(``benchmarks/segmentation_losses.py`` times both paths).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor

# ------------------------------------------------------------------------ torch.compile plumbing


@functools.cache
def _compiled(function, backend: str):
    return torch.compile(function, backend=backend, dynamic=False)


# The backend of the compile=True paths (dice_loss, tversky_loss, cost_sensitive_cross_entropy);
# the tests swap in "aot_eager", which traces the same graphs without generating and compiling
# C++ (5 to 30 s on two cores).
COMPILE_BACKEND = "inductor"


def _refuse_double_backward(names: str) -> None:
    # Autograd runs a backward with grad mode on only for create_graph=True. A hand-written
    # backward would then hand back a gradient that autograd treats as a constant: silently
    # wrong second derivatives. Refuse instead.
    if torch.is_grad_enabled():
        raise RuntimeError(
            f"the hand-written backward of {names} is not twice differentiable "
            "(create_graph=True); differentiate the plain expression instead"
        )


# ------------------------------------------------------------------------------ Dice and Tversky
#
# Eager (default), forward plus backward make about six passes over the data and keep one
# input-sized tensor (the probabilities) in between. Compiled, the forward (the three sums)
# and the backward (probabilities recomputed) are one generated loop each, and nothing
# input-sized is kept.


def dice_terms(true_positives: Tensor, prob_sum: Tensor, target_sum: Tensor, smooth: float):
    """The Dice loss of per-sample sums and its partial derivatives with respect to them."""
    numerator = 2.0 * true_positives + smooth
    denominator = prob_sum + target_sum + smooth
    loss = 1.0 - numerator / denominator
    d_sums = numerator / denominator**2
    return loss, -2.0 / denominator, d_sums, d_sums


def tversky_terms(
    true_positives: Tensor,
    prob_sum: Tensor,
    target_sum: Tensor,
    alpha: float,
    beta: float,
    smooth: float,
):
    """The Tversky loss of per-sample sums and its partial derivatives with respect to them."""
    # FP = sum(p (1 - t)) = sum(p) - TP and FN = sum((1 - p) t) = sum(t) - TP.
    numerator = true_positives + smooth
    denominator = (
        numerator + alpha * (prob_sum - true_positives) + beta * (target_sum - true_positives)
    )
    loss = 1.0 - numerator / denominator
    squared = denominator**2
    d_true_positives = -(denominator - numerator * (1.0 - alpha - beta)) / squared
    return loss, d_true_positives, numerator * alpha / squared, numerator * beta / squared


def _overlap_sums(input: Tensor, target: Tensor, from_logits: bool):
    """Per-row TP = sum(p t), sum(p) and sum(t) of ``(N, M)`` tensors; compiled only."""
    if not from_logits:
        return (input * target).sum(1), input.sum(1), target.sum(1)
    # sigmoid written once per sum, on purpose: on CPU, inductor stores a reused sigmoid (an
    # "expensive" op) to an input-sized buffer and reads it back, a second pass over the data
    # (1.6 ms against 0.85 ms for 16 MiB on two cores). Computed twice, each sum recomputes it
    # in registers, in one loop.
    return (torch.sigmoid(input) * target).sum(1), torch.sigmoid(input).sum(1), target.sum(1)


def _overlap_forward(input: Tensor, target: Tensor, from_logits: bool, terms, params: tuple):
    """The per-sample loss and its partial derivatives; compiled: one loop over the data."""
    return terms(*_overlap_sums(input, target, from_logits), *params)


def _overlap_grad(
    input: Tensor,
    target: Tensor,
    grad_loss: Tensor,
    d_true_positives: Tensor,
    d_prob_sum: Tensor,
    from_logits: bool,
) -> Tensor:
    """``dL/dx`` from ``dL/dp = dL/dTP * t + dL/dsum(p)`` (per-row factors); compiled: one loop."""
    grad = target * (grad_loss * d_true_positives).unsqueeze(1)
    grad = grad + (grad_loss * d_prob_sum).unsqueeze(1)
    if from_logits:
        prob = torch.sigmoid(input)
        grad = grad * prob * (1.0 - prob)
    return grad


class _OverlapLoss(torch.autograd.Function):
    """A loss of the per-sample sums TP = sum(p t), sum(p) and sum(t), with a fused backward.

    ``input`` and ``target`` are ``(N, M)``; ``terms(TP, sum(p), sum(t), *params)`` maps the
    sums to the per-sample loss and its partial derivatives. Eager (default): the forward keeps
    one input-sized tensor (``p``) for the backward; the backward writes ``dL/dp = dL/dTP * t
    + dL/dsum(p)`` into a new tensor (the gradient) and turns it into ``dL/dx`` in place with
    ``sigmoid_backward``. Compiled: the forward (sums and terms, nothing input-sized kept) and
    the backward (``p`` recomputed) are each one ``torch.compile``-generated graph, whose
    generated code makes one loop over the data.
    """

    @staticmethod
    def forward(
        ctx,
        input: Tensor,
        target: Tensor,
        from_logits: bool,
        terms,
        params: tuple,
        compiled: bool,
    ) -> Tensor:
        if compiled:
            forward = _compiled(_overlap_forward, COMPILE_BACKEND)
            loss, *partials = forward(input, target, from_logits, terms, params)
            saved = input
        else:
            prob = torch.sigmoid(input) if from_logits else input
            # sum(p * t) with a transient product: on CPU several times faster than a batched
            # dot product (bmm), and summed pairwise, so more accurate than BLAS dot in float32.
            sums = (prob * target).sum(1), prob.sum(1), target.sum(1)
            loss, *partials = terms(*sums, *params)
            saved = prob
        ctx.save_for_backward(saved, target, *partials)
        ctx.from_logits, ctx.compiled = from_logits, compiled
        return loss

    @staticmethod
    def backward(ctx, grad_loss: Tensor):
        _refuse_double_backward("dice_loss and tversky_loss")
        saved, target, d_true_positives, d_prob_sum, d_target_sum = ctx.saved_tensors
        grad_input = grad_target = None
        if ctx.needs_input_grad[0] and ctx.compiled:
            grad_input = _compiled(_overlap_grad, COMPILE_BACKEND)(
                saved, target, grad_loss, d_true_positives, d_prob_sum, ctx.from_logits
            )
        elif ctx.needs_input_grad[0]:
            # mul then add_, not addcmul: on CPU, addcmul with per-row (N, 1) operands is
            # about twice as slow as the two operations.
            grad_input = (target * (grad_loss * d_true_positives).unsqueeze(1)).add_(
                (grad_loss * d_prob_sum).unsqueeze(1)
            )
            if ctx.from_logits:
                # dp/dx = p (1 - p), applied in place: no second input-sized tensor.
                torch.ops.aten.sigmoid_backward.grad_input(grad_input, saved, grad_input=grad_input)
        if ctx.needs_input_grad[1]:
            prob = torch.sigmoid(saved) if ctx.compiled and ctx.from_logits else saved
            grad_target = (prob * (grad_loss * d_true_positives).unsqueeze(1)).add_(
                (grad_loss * d_target_sum).unsqueeze(1)
            )
        return grad_input, grad_target, None, None, None, None


def overlap_loss(
    input: Tensor, target: Tensor, from_logits: bool, terms, params: tuple, compiled: bool
) -> Tensor:
    """The per-sample loss ``terms(TP, sum(p), sum(t), *params)[0]`` of ``(N, M)`` tensors.

    ``terms`` is :func:`dice_terms` or :func:`tversky_terms`, ``params`` their parameters
    after the three sums; ``compiled`` selects the ``torch.compile`` path. Returns ``(N,)``.
    """
    return _OverlapLoss.apply(input, target, from_logits, terms, params, compiled)


# ------------------------------------------------------------------------------------- focal


def _alpha_t(target: Tensor, alpha: float) -> Tensor:
    # alpha t + (1 - alpha) (1 - t): exactly 1 - alpha at t = 0, alpha up to rounding at t = 1.
    return torch.mul(target, 2.0 * alpha - 1.0).add_(1.0 - alpha)


class _FocalLoss(torch.autograd.Function):
    """The element-wise focal loss with a hand-written backward.

    Autograd of the composed expression keeps about six input-sized tensors from the forward
    for the backward; this keeps none (the backward recomputes ``bce``, ``p`` and ``1 - p_t``
    from ``input`` and ``target``) and makes about as many passes over the data.
    """

    @staticmethod
    def _parts(input: Tensor, target: Tensor):
        # bce from the fused log-space kernel; 1 - p_t = p (1 - 2 t) + t with one addcmul.
        bce = F.binary_cross_entropy_with_logits(input, target, reduction="none")
        prob = torch.sigmoid(input)
        sign = torch.mul(target, -2.0).add_(1.0)
        return bce, prob, sign, torch.addcmul(target, prob, sign)

    @staticmethod
    def forward(ctx, input: Tensor, target: Tensor, gamma: float, alpha: float | None):
        if gamma == 0.0:
            loss = F.binary_cross_entropy_with_logits(input, target, reduction="none")
        else:
            bce, _, _, one_minus_p_t = _FocalLoss._parts(input, target)
            loss = one_minus_p_t.pow_(gamma).mul_(bce)
        if alpha is not None:
            loss = loss.mul_(_alpha_t(target, alpha))
        ctx.save_for_backward(input, target)
        ctx.gamma, ctx.alpha = gamma, alpha
        return loss

    @staticmethod
    def backward(ctx, grad_loss: Tensor):
        _refuse_double_backward("focal_loss")
        input, target = ctx.saved_tensors
        gamma, alpha = ctx.gamma, ctx.alpha
        if gamma == 0.0:
            grad = torch.sigmoid(input).sub_(target)  # d bce / dx = p - t
        else:
            bce, prob, slope, one_minus_p_t = _FocalLoss._parts(input, target)
            # d(1 - p_t)/dx = (1 - 2 t) p (1 - p), in one kernel, written over 1 - 2 t.
            torch.ops.aten.sigmoid_backward.grad_input(slope, prob, grad_input=slope)
            # gamma bce (1 - p_t)**(gamma - 1) d(1 - p_t)/dx, as gamma bce slope / (1 - p_t)
            # times (1 - p_t)**gamma: finite where 1 - p_t underflows to 0 (slope is 0 there
            # too, so the clamp changes no value that matters).
            one_minus_p_t.clamp_min_(torch.finfo(one_minus_p_t.dtype).tiny)
            ratio = slope.mul_(bce).div_(one_minus_p_t)
            del bce  # every input-sized tensor is freed as soon as it is used up
            grad = prob.sub_(target).add_(ratio, alpha=gamma)
            del ratio, slope
            grad.mul_(one_minus_p_t.pow_(gamma))
            del one_minus_p_t
        if alpha is not None:
            grad.mul_(_alpha_t(target, alpha))
        return grad.mul_(grad_loss), None, None, None


def focal_elementwise(input: Tensor, target: Tensor, gamma: float, alpha: float | None) -> Tensor:
    """The element-wise focal loss of logits ``input`` (float32 or float64), unreduced."""
    return _FocalLoss.apply(input, target, gamma, alpha)


# ------------------------------------------------------------------ cost-sensitive cross-entropy
#
# Eager (default): one exponential per element; the probabilities are kept (one input-sized
# tensor, as F.cross_entropy keeps the log-probabilities) and the backward writes the gradient
# in one pass. Compiled: the forward (maximum, first argmax, log-sum-exp, costs) and the
# backward (probabilities recomputed) are one generated graph each, and nothing input-sized is
# kept.


def _cost_sensitive_forward(input: Tensor, target: Tensor, cost_matrix: Tensor):
    """Per-pixel loss, maximum, log of the shifted sum and cost, ``(N, 1, *)``; compiled."""
    largest = input.amax(1, keepdim=True)
    predicted = input.argmax(1, keepdim=True)  # the first of tied maxima, as in eager
    # log(sum(exp(x - max))) is in [0, log C]: kept apart from the maximum, the probabilities
    # recomputed in the backward stay accurate for logits of any size.
    log_sum = torch.exp(input - largest).sum(1, keepdim=True).log()
    index = target.unsqueeze(1)
    cost = cost_matrix[index, predicted]
    return ((largest - input.gather(1, index)) + log_sum) * cost, largest, log_sum, cost


def _cost_sensitive_grad(
    input: Tensor, target: Tensor, largest: Tensor, log_sum: Tensor, scale: Tensor
) -> Tensor:
    """``scale * (softmax(input) - onehot(target))``, probabilities recomputed; compiled."""
    classes = torch.arange(input.shape[1], device=input.device).view(
        (1, -1) + (1,) * (input.ndim - 2)
    )
    prob = torch.exp((input - largest) - log_sum)
    return torch.where(classes == target.unsqueeze(1), prob - 1.0, prob) * scale


class _CompiledCostSensitiveNLL(torch.autograd.Function):
    """:class:`_CostSensitiveNLL` as two ``torch.compile``-generated graphs."""

    @staticmethod
    def forward(ctx, input: Tensor, target: Tensor, cost_matrix: Tensor) -> Tensor:
        forward = _compiled(_cost_sensitive_forward, COMPILE_BACKEND)
        loss, largest, log_sum, cost = forward(input, target, cost_matrix)
        ctx.save_for_backward(input, target, largest, log_sum, cost)
        return loss.squeeze(1)

    @staticmethod
    def backward(ctx, grad_loss: Tensor):
        _refuse_double_backward("cost_sensitive_cross_entropy")
        input, target, largest, log_sum, cost = ctx.saved_tensors
        grad_input = None
        if ctx.needs_input_grad[0]:
            scale = grad_loss.unsqueeze(1) * cost
            grad = _compiled(_cost_sensitive_grad, COMPILE_BACKEND)
            grad_input = grad(input, target, largest, log_sum, scale)
        return grad_input, None, None


class _CostSensitiveNLL(torch.autograd.Function):
    """Per-pixel ``cost[y, argmax(x)] * -log_softmax(x)[y]`` with a fused backward.

    One exponential pass: the forward computes the probabilities ``p = softmax(x)`` and reads
    the log-sum-exp off the most probable class ``m``, ``logsumexp(x) = x[m] - log(p[m])``
    (``p[m] >= 1 / C`` never underflows), so ``-log_softmax(x)[y] = x[m] - x[y] - log(p[m])``,
    a sum of two non-negative terms, finite for logits of any size. The backward writes the
    gradient ``cost * (p - onehot(y))`` from the saved ``p`` with one multiplication and one
    scatter. It keeps one input-sized tensor (``p``), as ``F.cross_entropy`` does.
    """

    @staticmethod
    def forward(ctx, input: Tensor, target: Tensor, cost_matrix: Tensor) -> Tensor:
        prob = torch.softmax(input, 1)
        largest, predicted = first_max(input)
        index = target.unsqueeze(1)
        # p[m] is the largest probability: a reduction, faster than a gather on CPU.
        nll = (largest - input.gather(1, index)).sub_(prob.amax(1, keepdim=True).log_())
        n_classes = cost_matrix.shape[0]
        pairs = (index * n_classes).add_(predicted)
        # index_select on the flat matrix: on CPU about twice as fast as advanced indexing.
        cost = cost_matrix.reshape(-1).index_select(0, pairs.reshape(-1)).view(pairs.shape)
        ctx.save_for_backward(prob, index, cost)
        return nll.mul_(cost).squeeze(1)

    @staticmethod
    def backward(ctx, grad_loss: Tensor):
        _refuse_double_backward("cost_sensitive_cross_entropy")
        prob, index, cost = ctx.saved_tensors
        grad_input = None
        if ctx.needs_input_grad[0]:
            scale = grad_loss.unsqueeze(1) * cost
            grad_input = (prob * scale).scatter_add_(1, index, scale.neg())
        return grad_input, None, None


def first_max(input: Tensor) -> tuple[Tensor, Tensor]:
    """The maxima over axis 1 and the first index of each, both shaped ``(N, 1, *)``.

    The index is ``input.argmax(1, keepdim=True)``. On CPU, ``argmax`` over a non-innermost
    axis of ``(N, C, H, W)`` is about ten times slower than these operations, which find the
    largest of ``C - k`` over the maximal ``k`` in 8-bit integers (16-bit or 32-bit beyond
    255 classes).
    """
    n_classes = input.shape[1]
    dtype = torch.uint8 if n_classes < 256 else torch.int16 if n_classes < 2**15 else torch.int32
    largest = input.amax(1, keepdim=True)
    # >= rather than ==: the same where largest is the maximum, and faster on CPU.
    is_max = input >= largest
    # bool and uint8 have the same layout: a view, not a copy.
    is_max = is_max.view(dtype) if dtype == torch.uint8 else is_max.to(dtype)
    shape = (1, n_classes) + (1,) * (input.ndim - 2)
    countdown = torch.arange(n_classes, 0, -1, dtype=dtype, device=input.device)
    first = is_max.mul_(countdown.view(shape)).amax(1, keepdim=True)
    # With a NaN score no class is maximal: clamp to a valid index (the loss is NaN anyway).
    return largest, (n_classes - first.long()).clamp_(max=n_classes - 1)


def cost_sensitive_nll(
    input: Tensor, target: Tensor, cost_matrix: Tensor, compiled: bool
) -> Tensor:
    """Per-pixel ``cost_matrix[y, argmax(x)] * -log_softmax(x)[y]``, shape ``(N, *)``.

    ``input`` is ``(N, C, *)``, ``target`` int64 ``(N, *)``, ``cost_matrix`` a ``(C, C)``
    tensor without gradient; ``compiled`` selects the ``torch.compile`` path.
    """
    function = _CompiledCostSensitiveNLL if compiled else _CostSensitiveNLL
    return function.apply(input, target, cost_matrix)
