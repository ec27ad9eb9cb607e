"""NumPy optimizers that mirror ``torch.optim`` step for step.

Backpropagation computes gradients; an optimizer turns gradients into new weights.
These classes make the second half explicit. Each keeps its own state (momentum
buffers, moment estimates, the step count) and has one method::

    new_params = optimizer.step(params, grads)

``params`` and ``grads`` are lists of arrays of matching shapes; the inputs are not
modified. The arithmetic follows PyTorch's single-tensor code path operation by
operation, so in float64 the results agree with ``torch.optim`` to rounding error,
and the constructors reject exactly the option values that torch rejects.

Example:
    >>> import numpy as np
    >>> sgd = SGD(lr=0.05)
    >>> [w] = sgd.step([np.array([0.14, 0.15])], [np.array([-0.85, -0.48])])
    >>> w.round(4).tolist()
    [0.1825, 0.174]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["SGD", "Adam", "AdamW"]


class _Optimizer:
    """Shared bookkeeping: argument checks and one state dict per parameter."""

    def __init__(self) -> None:
        self.state: list[dict[str, np.ndarray]] = []
        self.shapes: list[tuple[int, ...]] | None = None

    def _check(self, params: Sequence, grads: Sequence) -> tuple[list, list]:
        params = [np.asarray(p, dtype=np.result_type(p, np.float32)) for p in params]
        grads = [np.asarray(g) for g in grads]
        if len(params) != len(grads):
            raise ValueError(f"got {len(params)} params but {len(grads)} grads")
        for index, (param, grad) in enumerate(zip(params, grads, strict=True)):
            if param.shape != grad.shape:
                raise ValueError(
                    f"param {index} has shape {param.shape} but its grad has shape {grad.shape}"
                )
        shapes = [p.shape for p in params]
        if self.shapes is None:
            self.shapes = shapes
            self.state = [{} for _ in params]
        elif shapes != self.shapes:
            raise ValueError(
                f"this optimizer was stepped with parameter shapes {self.shapes}, now {shapes}"
            )
        return params, grads

    def step(self, params: Sequence, grads: Sequence) -> list[np.ndarray]:
        """Return the parameters after one update; ``params`` and ``grads`` are unchanged."""
        params, grads = self._check(params, grads)
        return [
            np.asarray(self._update(param, grad.astype(param.dtype), state))
            for param, grad, state in zip(params, grads, self.state, strict=True)
        ]

    def _update(self, param: np.ndarray, grad: np.ndarray, state: dict) -> np.ndarray:
        raise NotImplementedError


def _check_non_negative(**values: float) -> None:
    for name, value in values.items():
        if not value >= 0.0:
            label = {"lr": "learning rate", "weight_decay": "weight_decay value"}.get(
                name, f"{name} value"
            )
            raise ValueError(f"Invalid {label}: {value}")


def _lerp(start: np.ndarray, end: np.ndarray, weight: float) -> np.ndarray:
    """``start + weight * (end - start)``, rounded as ``torch.lerp`` rounds it.

    torch switches formula at ``weight = 0.5`` so that ``weight = 1`` returns ``end``
    exactly; mirroring it keeps Adam with ``beta1 <= 0.5`` bit-compatible.
    """
    if abs(weight) < 0.5:
        return start + weight * (end - start)
    return end - (end - start) * (1 - weight)


class SGD(_Optimizer):
    """Stochastic gradient descent with optional momentum, as ``torch.optim.SGD``.

    Algorithm, for each parameter ``p`` with gradient ``g``, step ``t``::

        if maximize: g = -g
        if weight_decay != 0: g = g + weight_decay * p
        if momentum != 0:
            b = g                                   if t == 1
            b = momentum * b + (1 - dampening) * g  otherwise
            g = g + momentum * b   if nesterov else   b
        p = p - lr * g

    This differs from the textbook (Sutskever et al. 2013) and from Keras, which keep
    a velocity ``v = momentum * v - lr * g`` and add it to ``p``. Under a constant
    learning rate the two give the same weights (``v = -lr * b``); once ``lr`` changes
    between steps they do not, since PyTorch multiplies the whole buffer by the new
    rate. The first step copies the gradient into the buffer without dampening.

    Args:
        lr: learning rate, >= 0.
        momentum: momentum factor, >= 0.
        dampening: dampening of the momentum's new gradient term.
        nesterov: Nesterov momentum (needs ``momentum > 0`` and ``dampening == 0``).
        weight_decay: L2 penalty added to the gradient, >= 0.
        maximize: ascend the objective instead of descending it.

    Raises:
        ValueError: for the values ``torch.optim.SGD`` rejects.
    """

    def __init__(
        self,
        lr: float,
        momentum: float = 0.0,
        dampening: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        maximize: bool = False,
    ) -> None:
        super().__init__()
        _check_non_negative(lr=lr, momentum=momentum, weight_decay=weight_decay)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        self.lr = lr
        self.momentum = momentum
        self.dampening = dampening
        self.nesterov = nesterov
        self.weight_decay = weight_decay
        self.maximize = maximize

    def _update(self, param: np.ndarray, grad: np.ndarray, state: dict) -> np.ndarray:
        if self.maximize:
            grad = -grad
        if self.weight_decay != 0:
            grad = grad + self.weight_decay * param
        if self.momentum != 0:
            if "momentum_buffer" not in state:
                buffer = grad.copy()
            else:
                buffer = self.momentum * state["momentum_buffer"] + (1 - self.dampening) * grad
            state["momentum_buffer"] = buffer
            grad = grad + self.momentum * buffer if self.nesterov else buffer
        return param - self.lr * grad


class Adam(_Optimizer):
    """Adam (Kingma and Ba 2015), as ``torch.optim.Adam``.

    Algorithm, for each parameter ``p`` with gradient ``g``, step ``t = 1, 2, ...``::

        if maximize: g = -g
        if weight_decay != 0: g = g + weight_decay * p        # L2 in the gradient
        m = m + (1 - beta1) * (g - m)                         # = beta1 m + (1 - beta1) g
        v = beta2 * v + (1 - beta2) * g * g
        v_max = max(v_max, v) if amsgrad else v
        p = p - lr / (1 - beta1**t) * m / (sqrt(v_max) / sqrt(1 - beta2**t) + eps)

    As in PyTorch, ``eps`` is added after the bias correction of ``v``; the paper's
    form adds it to ``sqrt(v_hat)`` too, so the two agree. Weight decay here is an L2
    term in the gradient, which Adam then rescales; for decoupled decay use
    :class:`AdamW`. AMSGrad keeps the running maximum of ``v`` and bias-corrects it
    as PyTorch does.

    Args:
        lr: learning rate, >= 0.
        betas: decay rates of the first and second moment, each in [0, 1).
        eps: added to the denominator, >= 0.
        weight_decay: L2 penalty, >= 0.
        amsgrad: use the AMSGrad variant (Reddi et al. 2018).
        maximize: ascend the objective instead of descending it.

    Raises:
        ValueError: for the values ``torch.optim.Adam`` rejects.
    """

    decoupled_weight_decay = False

    def __init__(
        self,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        maximize: bool = False,
    ) -> None:
        super().__init__()
        _check_non_negative(lr=lr)
        if not eps >= 0.0:
            raise ValueError(f"Invalid epsilon value: {eps}")
        for index, beta in enumerate(betas):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"Invalid beta parameter at index {index}: {beta}")
        _check_non_negative(weight_decay=weight_decay)
        self.lr = lr
        self.betas = tuple(betas)
        self.eps = eps
        self.weight_decay = weight_decay
        self.amsgrad = amsgrad
        self.maximize = maximize

    def _update(self, param: np.ndarray, grad: np.ndarray, state: dict) -> np.ndarray:
        beta1, beta2 = self.betas
        if not state:
            state["step"] = 0
            state["exp_avg"] = np.zeros_like(param)
            state["exp_avg_sq"] = np.zeros_like(param)
            if self.amsgrad:
                state["max_exp_avg_sq"] = np.zeros_like(param)
        if self.maximize:
            grad = -grad
        state["step"] += 1
        step = state["step"]
        if self.weight_decay != 0:
            if self.decoupled_weight_decay:
                param = param * (1 - self.lr * self.weight_decay)
            else:
                grad = grad + self.weight_decay * param
        exp_avg = _lerp(state["exp_avg"], grad, 1 - beta1)
        exp_avg_sq = state["exp_avg_sq"] * beta2 + (1 - beta2) * grad * grad
        state["exp_avg"], state["exp_avg_sq"] = exp_avg, exp_avg_sq
        step_size = self.lr / (1 - beta1**step)
        bias_correction2_sqrt = (1 - beta2**step) ** 0.5
        if self.amsgrad:
            state["max_exp_avg_sq"] = np.maximum(state["max_exp_avg_sq"], exp_avg_sq)
            exp_avg_sq = state["max_exp_avg_sq"]
        denom = np.sqrt(exp_avg_sq) / bias_correction2_sqrt + self.eps
        return param - step_size * (exp_avg / denom)


class AdamW(Adam):
    """AdamW (Loshchilov and Hutter 2019), as ``torch.optim.AdamW``.

    Adam with decoupled weight decay: the weights shrink by ``lr * weight_decay``
    before the Adam update, instead of an L2 term entering the gradient::

        p = p * (1 - lr * weight_decay)
        ... then the Adam step of :class:`Adam`, with no L2 term in g

    The paper scales the decay by the schedule multiplier ``eta_t`` alone
    (``p -= eta_t * lambda * p``); PyTorch scales it by the whole learning rate
    ``lr = alpha * eta_t``, so torch's ``weight_decay`` is the paper's ``lambda / alpha``.
    The default ``weight_decay`` is 1e-2, as in torch.

    Raises:
        ValueError: for the values ``torch.optim.AdamW`` rejects.
    """

    decoupled_weight_decay = True

    def __init__(
        self,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        maximize: bool = False,
    ) -> None:
        super().__init__(lr, betas, eps, weight_decay, amsgrad, maximize)
