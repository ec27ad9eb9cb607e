"""NumPy float64 ground truth: losses and their closed-form gradients.

Every loss of the package's framework sides (:mod:`companion.torch`, :mod:`companion.keras`)
is tested against its twin here. The functions are plain NumPy, compute in float64 and are
written for clarity and accuracy, not speed; they never import a deep-learning framework.

Robust regression losses of a residual ``r`` (element-wise, any shape):

=========================  ==============================================================
``huber``                  ``0.5 r**2`` for ``|r| <= delta``, ``delta (|r| - delta/2)`` else
``huber_grad``             its derivative ``clip(r, -delta, delta)``
``pseudo_huber``           ``delta**2 (sqrt(1 + (r/delta)**2) - 1)``, smooth everywhere
``pseudo_huber_grad``      its derivative ``r / sqrt(1 + (r/delta)**2)``
=========================  ==============================================================
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["huber", "huber_grad", "pseudo_huber", "pseudo_huber_grad"]


def _check_delta(delta) -> float:
    delta = float(delta)
    if not 0.0 < delta < math.inf:
        raise ValueError(f"delta must be a finite number > 0, got {delta}")
    return delta


def huber(r, delta: float = 1.0) -> np.ndarray:
    """The Huber loss of a residual, element-wise (Huber, 1964).

    Formula::

        huber(r) = 0.5 * r**2                    if |r| <= delta
                   delta * (|r| - 0.5 * delta)   otherwise

    Quadratic near zero, linear in the tails, and continuously differentiable: both pieces
    have value ``0.5 delta**2`` and slope ``+-delta`` at ``|r| = delta``. As ``delta`` grows
    it tends to ``0.5 r**2``; ``huber(r) / delta`` tends to ``|r|`` as ``delta`` goes to 0.
    Equal to ``torch.nn.functional.huber_loss(..., reduction="none")``.

    Args:
        r: residuals, any shape.
        delta: the threshold between the quadratic and the linear piece, finite and > 0.

    Returns:
        The losses, float64, of the shape of ``r``.

    Raises:
        ValueError: if ``delta`` is not a finite number > 0.

    Example:
        >>> huber([-3.0, -1.0, 0.5, 2.0], delta=1.0).tolist()
        [2.5, 0.5, 0.125, 1.5]
    """
    delta = _check_delta(delta)
    r = np.asarray(r, dtype=np.float64)
    abs_r = np.abs(r)
    # Both pieces are finite for every finite r, so evaluating both is harmless here.
    return np.where(abs_r <= delta, 0.5 * r**2, delta * (abs_r - 0.5 * delta))


def huber_grad(r, delta: float = 1.0) -> np.ndarray:
    """The derivative of :func:`huber` with respect to ``r``, element-wise.

    Formula::

        d huber / dr = r                  if |r| <= delta
                       delta * sign(r)    otherwise
                     = clip(r, -delta, delta)

    The derivative is continuous (the pieces meet at ``|r| = delta``); the second derivative
    jumps from 1 to 0 there.

    Args:
        r: residuals, any shape.
        delta: the threshold between the quadratic and the linear piece, finite and > 0.

    Returns:
        The derivatives, float64, of the shape of ``r``.

    Raises:
        ValueError: if ``delta`` is not a finite number > 0.

    Example:
        >>> huber_grad([-3.0, -1.0, 0.5, 2.0], delta=1.0).tolist()
        [-1.0, -1.0, 0.5, 1.0]
    """
    delta = _check_delta(delta)
    return np.clip(np.asarray(r, dtype=np.float64), -delta, delta)


def pseudo_huber(r, delta: float = 1.0) -> np.ndarray:
    """The pseudo-Huber loss of a residual, element-wise (Hartley and Zisserman, 2004, appendix A6).

    Formula::

        pseudo_huber(r) = delta**2 * (sqrt(1 + (r / delta)**2) - 1)
                        = |r| * delta * a / (1 + hypot(1, a)),   a = |r| / delta

    A smooth (infinitely differentiable) approximation of :func:`huber`: ``0.5 r**2 + O(r**4)``
    near zero and ``delta |r| - delta**2 + O(1/|r|)`` in the tails. It lies below Huber
    everywhere. The second form is the one computed: it is algebraically equal, has no
    cancellation for small ``r`` and no overflow of ``r**2`` for large ``r``.

    Args:
        r: residuals, any shape.
        delta: the scale of the transition, finite and > 0.

    Returns:
        The losses, float64, of the shape of ``r``.

    Raises:
        ValueError: if ``delta`` is not a finite number > 0.

    Example:
        >>> pseudo_huber([0.0, 1.0, -3.0], delta=1.0).round(6).tolist()
        [0.0, 0.414214, 2.162278]
    """
    delta = _check_delta(delta)
    abs_r = np.abs(np.asarray(r, dtype=np.float64))
    scaled = abs_r / delta
    return abs_r * delta * (scaled / (1.0 + np.hypot(1.0, scaled)))


def pseudo_huber_grad(r, delta: float = 1.0) -> np.ndarray:
    """The derivative of :func:`pseudo_huber` with respect to ``r``, element-wise.

    Formula::

        d pseudo_huber / dr = r / sqrt(1 + (r / delta)**2)

    It is ``r`` near zero and tends to ``delta * sign(r)`` in the tails, like
    :func:`huber_grad`, but without a kink.

    Args:
        r: residuals, any shape.
        delta: the scale of the transition, finite and > 0.

    Returns:
        The derivatives, float64, of the shape of ``r``.

    Raises:
        ValueError: if ``delta`` is not a finite number > 0.

    Example:
        >>> pseudo_huber_grad([0.0, 1.0, -3.0], delta=1.0).round(6).tolist()
        [0.0, 0.707107, -0.948683]
    """
    delta = _check_delta(delta)
    r = np.asarray(r, dtype=np.float64)
    return r / np.hypot(1.0, r / delta)
