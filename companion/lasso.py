"""The LASSO as a probability model: objective, Gaussian likelihood, Laplace prior, AIC/BIC.

scikit-learn's ``Lasso`` minimises::

    (1 / (2 n)) ||y - X w - b||_2^2 + alpha ||w||_1

Read as statistics, the first term is (up to constants and the factor ``n / sigma^2``)
the negative log-likelihood of Gaussian noise of variance ``sigma^2``, and the second
is the negative log-density of independent Laplace priors of scale ``s`` on the
coefficients. The Lasso solution at ``alpha = sigma^2 / (n s)`` is therefore the
maximum a posteriori (MAP) estimate under that prior (Tibshirani 1996; Park and Casella
2008), and the likelihood of the data at the fitted coefficients is a plain Gaussian
log-density of the residuals. This module writes each of those quantities once, in
float64, in log space (``exp`` of a log-likelihood of a few hundred samples underflows
to 0), and reproduces ``LassoLarsIC.criterion_`` exactly.

The intercept ``b`` gets a flat (improper) prior, as scikit-learn leaves it
unpenalised. Everything here is NumPy, SciPy and scikit-learn; no deep-learning
framework is imported.

Example:
    >>> import numpy as np
    >>> from sklearn.datasets import load_diabetes
    >>> from sklearn.linear_model import Lasso
    >>> X, y = load_diabetes(return_X_y=True)
    >>> noise_variance, scale = 3000.0, 50.0
    >>> alpha = alpha_from_laplace_scale(noise_variance, scale, n_samples=len(y))
    >>> round(alpha, 6)
    0.135747
    >>> fit = Lasso(alpha=alpha, tol=1e-12, max_iter=100_000).fit(X, y)
    >>> best = log_posterior(X, y, fit.coef_, fit.intercept_,
    ...                      noise_variance=noise_variance, scale=scale)
    >>> nudged = fit.coef_ + np.random.default_rng(0).normal(scale=0.5, size=fit.coef_.shape)
    >>> bool(best > log_posterior(X, y, nudged, fit.intercept_,
    ...                           noise_variance=noise_variance, scale=scale))
    True
"""

from __future__ import annotations

import math

import numpy as np
import scipy.linalg
from numpy.typing import ArrayLike

__all__ = [
    "lasso_objective",
    "gaussian_log_likelihood",
    "laplace_log_prior",
    "log_posterior",
    "alpha_from_laplace_scale",
    "laplace_scale_from_alpha",
    "ols_noise_variance",
    "information_criterion",
]

_CRITERIA = ("aic", "bic")


def _check_data(
    X: ArrayLike, y: ArrayLike, coef: ArrayLike | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Float64 copies of X (2-D), y (n_samples,) and coef (n_features,); nothing broadcasts."""
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (n_samples, n_features), got shape {X.shape}")
    if y.shape != (X.shape[0],):
        raise ValueError(
            f"X has shape {X.shape} but y has shape {y.shape}; "
            f"y must have shape (n_samples,) = ({X.shape[0]},)"
        )
    if coef is not None:
        coef = np.asarray(coef, dtype=np.float64)
        if coef.shape != (X.shape[1],):
            raise ValueError(
                f"X has shape {X.shape} but coef has shape {coef.shape}; "
                f"coef must have shape (n_features,) = ({X.shape[1]},)"
            )
    return X, y, coef


def _check_intercept(intercept: float) -> float:
    if np.ndim(intercept) != 0:
        raise ValueError(f"intercept must be a scalar, got shape {np.shape(intercept)}")
    return float(intercept)


def _check_positive(name: str, value: float) -> float:
    # `not value > 0` also rejects NaN.
    if np.ndim(value) != 0 or not value > 0:
        raise ValueError(f"{name} must be a positive scalar, got {value!r}")
    return float(value)


def _residual_sum_of_squares(X: np.ndarray, y: np.ndarray, coef: np.ndarray, intercept: float):
    residuals = y - X @ coef - intercept
    return float(residuals @ residuals)


def lasso_objective(
    X: ArrayLike, y: ArrayLike, coef: ArrayLike, alpha: float, intercept: float = 0.0
) -> float:
    """The objective that ``sklearn.linear_model.Lasso`` minimises.

    Formula::

        (1 / (2 n)) * ||y - X coef - intercept||_2^2 + alpha * ||coef||_1

    The intercept is not penalised. Multiplied by ``n`` this is ``RSS / 2 + n alpha
    ||coef||_1``; it is a negative log-posterior (up to constants) only after dividing
    the RSS by a noise variance, see :func:`log_posterior`.

    Args:
        X: design matrix, shape (n_samples, n_features).
        y: targets, shape (n_samples,).
        coef: coefficients, shape (n_features,).
        alpha: L1 penalty strength, >= 0 (``Lasso(alpha=...)``).
        intercept: the constant term ``b`` (``Lasso.intercept_``).

    Returns:
        The objective, a Python float.

    Raises:
        ValueError: if X is not 2-D, if y or coef do not match X's shape (the message
            names both shapes), if alpha is negative or NaN, or if intercept is not a scalar.

    Example:
        >>> X = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]
        >>> y = [1.0, 2.0, 2.5]
        >>> round(lasso_objective(X, y, [0.5, 1.5], alpha=0.1), 6)
        0.325
    """
    X, y, coef = _check_data(X, y, coef)
    intercept = _check_intercept(intercept)
    if np.ndim(alpha) != 0 or not alpha >= 0:
        raise ValueError(f"alpha must be a non-negative scalar, got {alpha!r}")
    rss = _residual_sum_of_squares(X, y, coef, intercept)
    return rss / (2 * X.shape[0]) + float(alpha) * float(np.abs(coef).sum())


def gaussian_log_likelihood(
    X: ArrayLike,
    y: ArrayLike,
    coef: ArrayLike,
    intercept: float = 0.0,
    noise_variance: float | None = None,
) -> float:
    """Log-likelihood of the data under ``y = X coef + intercept + N(0, noise_variance)``.

    Formula, with ``RSS = ||y - X coef - intercept||_2^2``::

        log L = -(n / 2) log(2 pi sigma^2) - RSS / (2 sigma^2)

    the sum of ``scipy.stats.norm.logpdf`` over the residuals. With
    ``noise_variance=None``, ``sigma^2`` is its maximum-likelihood estimate
    ``RSS / n`` at these coefficients, and the formula becomes
    ``-(n / 2) (log(2 pi RSS / n) + 1)``: the profile log-likelihood, which is what a
    "likelihood at the fitted parameters" means when the noise level was not given.

    Args:
        X: design matrix, shape (n_samples, n_features).
        y: targets, shape (n_samples,).
        coef: coefficients, shape (n_features,).
        intercept: the constant term.
        noise_variance: ``sigma^2 > 0``, or None for the maximum-likelihood ``RSS / n``.

    Returns:
        The log-likelihood (natural log), a Python float. Work with it, not with its
        exponential: for a few hundred samples ``exp`` of it is 0.0 in float64.

    Raises:
        ValueError: on a shape mismatch (naming both shapes), a non-positive or NaN
            noise_variance, or, with ``noise_variance=None``, residuals that are all zero
            (the maximum-likelihood variance is 0 and the likelihood unbounded).

    Example:
        >>> X = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]
        >>> y = [1.0, 2.0, 2.5]
        >>> round(gaussian_log_likelihood(X, y, [0.5, 1.5], noise_variance=1.0), 6)
        -3.131816
        >>> round(gaussian_log_likelihood(X, y, [0.5, 1.5]), 6)  # sigma^2 = RSS / n = 0.25
        -2.177374
    """
    X, y, coef = _check_data(X, y, coef)
    intercept = _check_intercept(intercept)
    n_samples = X.shape[0]
    rss = _residual_sum_of_squares(X, y, coef, intercept)
    if noise_variance is None:
        if rss == 0.0:
            raise ValueError(
                "the residuals are all zero, so the maximum-likelihood noise variance is 0 "
                "and the likelihood is unbounded; pass noise_variance explicitly"
            )
        return -0.5 * n_samples * (math.log(2 * math.pi * rss / n_samples) + 1.0)
    noise_variance = _check_positive("noise_variance", noise_variance)
    return -0.5 * n_samples * math.log(2 * math.pi * noise_variance) - rss / (2 * noise_variance)


def laplace_log_prior(coef: ArrayLike, scale: float) -> float:
    """Log-density of independent Laplace(0, scale) priors on the coefficients.

    Formula, for ``p`` coefficients::

        log p(coef) = sum_j log( exp(-|coef_j| / scale) / (2 scale) )
                    = -p log(2 scale) - ||coef||_1 / scale

    a sum over coefficients (the log of a product of densities), equal to
    ``scipy.stats.laplace.logpdf(coef, scale=scale).sum()``. Its maximum is at
    ``coef = 0``; the prior puts probability 0 on any coefficient being exactly 0.

    Args:
        coef: coefficients, any shape (usually (n_features,)).
        scale: the Laplace scale ``s > 0``; the prior's variance is ``2 s^2``.

    Returns:
        The log prior density, a Python float.

    Raises:
        ValueError: if scale is not positive (or NaN).

    Example:
        >>> round(laplace_log_prior([0.5, -1.5, 0.0], scale=2.0), 6)
        -5.158883
    """
    scale = _check_positive("scale", scale)
    coef = np.asarray(coef, dtype=np.float64)
    return -coef.size * math.log(2 * scale) - float(np.abs(coef).sum()) / scale


def log_posterior(
    X: ArrayLike,
    y: ArrayLike,
    coef: ArrayLike,
    intercept: float,
    *,
    noise_variance: float,
    scale: float,
) -> float:
    """Unnormalised log-posterior: Gaussian log-likelihood plus Laplace log-prior.

    Formula::

        log p(coef, b | X, y) = gaussian_log_likelihood(X, y, coef, b, sigma^2)
                              + laplace_log_prior(coef, s) + const

    with a flat prior on the intercept ``b``; the constant (the log evidence) is
    omitted. Expanding both terms,
    ``-log p = (n / sigma^2) * lasso_objective(X, y, coef, alpha, b) + const`` with
    ``alpha = sigma^2 / (n s)`` (:func:`alpha_from_laplace_scale`), so the Lasso
    solution at that alpha maximises this function: it is the MAP estimate.

    Args:
        X: design matrix, shape (n_samples, n_features).
        y: targets, shape (n_samples,).
        coef: coefficients, shape (n_features,).
        intercept: the constant term (flat prior).
        noise_variance: Gaussian noise variance ``sigma^2 > 0`` (required: with it
            estimated at each coef, the maximiser is no longer the Lasso solution).
        scale: Laplace prior scale ``s > 0``.

    Returns:
        The log-posterior up to an additive constant, a Python float.

    Raises:
        ValueError: on a shape mismatch (naming both shapes) or a non-positive
            noise_variance or scale.

    Example:
        >>> X = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]
        >>> y = [1.0, 2.0, 2.5]
        >>> round(log_posterior(X, y, [0.5, 1.5], 0.0, noise_variance=0.25, scale=2.0), 6)
        -5.949963
    """
    noise_variance = _check_positive("noise_variance", noise_variance)
    log_likelihood = gaussian_log_likelihood(X, y, coef, intercept, noise_variance=noise_variance)
    return log_likelihood + laplace_log_prior(coef, scale)


def _check_n_samples(n_samples: int) -> int:
    if isinstance(n_samples, bool) or int(n_samples) != n_samples or n_samples < 1:
        raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
    return int(n_samples)


def alpha_from_laplace_scale(noise_variance: float, scale: float, n_samples: int) -> float:
    """The Lasso ``alpha`` whose solution is the MAP estimate under a Laplace(0, scale) prior.

    Formula::

        alpha = sigma^2 / (n s)

    from dividing the negative log-posterior ``RSS / (2 sigma^2) + ||w||_1 / s`` by
    ``n / sigma^2`` to reach scikit-learn's ``RSS / (2 n) + alpha ||w||_1``.

    Args:
        noise_variance: Gaussian noise variance ``sigma^2 > 0``.
        scale: Laplace prior scale ``s > 0``.
        n_samples: number of samples ``n >= 1``.

    Returns:
        alpha, a Python float.

    Raises:
        ValueError: if noise_variance or scale is not positive, or n_samples is not a
            positive integer.

    Example:
        >>> alpha_from_laplace_scale(noise_variance=4.0, scale=0.5, n_samples=100)
        0.08
    """
    noise_variance = _check_positive("noise_variance", noise_variance)
    scale = _check_positive("scale", scale)
    return noise_variance / (_check_n_samples(n_samples) * scale)


def laplace_scale_from_alpha(noise_variance: float, alpha: float, n_samples: int) -> float:
    """The Laplace prior scale under which ``Lasso(alpha)`` is the MAP estimate.

    Formula, the inverse of :func:`alpha_from_laplace_scale`::

        s = sigma^2 / (n alpha)

    ``alpha = 0`` (least squares) corresponds to an infinitely wide prior and is
    rejected.

    Args:
        noise_variance: Gaussian noise variance ``sigma^2 > 0``.
        alpha: Lasso penalty strength, > 0.
        n_samples: number of samples ``n >= 1``.

    Returns:
        The scale ``s``, a Python float.

    Raises:
        ValueError: if noise_variance or alpha is not positive, or n_samples is not a
            positive integer.

    Example:
        >>> laplace_scale_from_alpha(noise_variance=4.0, alpha=0.08, n_samples=100)
        0.5
    """
    noise_variance = _check_positive("noise_variance", noise_variance)
    alpha = _check_positive("alpha", alpha)
    return noise_variance / (_check_n_samples(n_samples) * alpha)


def ols_noise_variance(X: ArrayLike, y: ArrayLike, fit_intercept: bool = True) -> float:
    """Unbiased noise variance of the full least-squares fit, as ``LassoLarsIC`` estimates it.

    Formula, with ``RSS_ols`` the residual sum of squares of ordinary least squares on
    all features (with an intercept when ``fit_intercept``)::

        sigma^2 = RSS_ols / (n - p - fit_intercept)

    Args:
        X: design matrix, shape (n_samples, n_features).
        y: targets, shape (n_samples,).
        fit_intercept: whether the least-squares fit has an intercept (scikit-learn
            centres X and y and fits without one, which gives the same residuals).

    Returns:
        The estimate, a Python float.

    Raises:
        ValueError: if y does not match X's shape, or if ``n <= p + fit_intercept``
            (no degrees of freedom are left for the noise).

    Example:
        >>> X = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 1.0]]
        >>> y = [1.0, 2.0, 2.5, 4.0]
        >>> round(ols_noise_variance(X, y, fit_intercept=False), 6)
        0.083333
    """
    X, y, _ = _check_data(X, y)
    n_samples, n_features = X.shape
    dof = n_samples - n_features - int(bool(fit_intercept))
    if dof <= 0:
        raise ValueError(
            f"X has shape {X.shape}: with fit_intercept={bool(fit_intercept)} no degrees of "
            "freedom are left to estimate the noise variance (need n_samples > n_features "
            "+ fit_intercept); pass noise_variance explicitly"
        )
    if fit_intercept:
        X = X - X.mean(axis=0)
        y = y - y.mean()
    solution, *_ = scipy.linalg.lstsq(X, y)
    residuals = y - X @ solution
    return float(residuals @ residuals) / dof


def information_criterion(
    X: ArrayLike,
    y: ArrayLike,
    coef: ArrayLike,
    intercept: float = 0.0,
    *,
    criterion: str = "aic",
    noise_variance: float | None = None,
    fit_intercept: bool = True,
) -> float:
    """AIC or BIC of a linear fit, exactly as ``sklearn.linear_model.LassoLarsIC.criterion_``.

    Formula, with ``RSS = ||y - X coef - intercept||_2^2``::

        IC = n log(2 pi sigma^2) + RSS / sigma^2 + K df
           = -2 * gaussian_log_likelihood(X, y, coef, intercept, sigma^2) + K df

    with ``K = 2`` (AIC) or ``K = log n`` (BIC) and ``df`` the number of coefficients
    with ``|coef_j| > eps`` (float64 machine epsilon), the unbiased estimate of the
    Lasso's degrees of freedom (Zou, Hastie and Tibshirani 2007). With
    ``noise_variance=None``, ``sigma^2`` is :func:`ols_noise_variance`, the residual
    variance of the least-squares fit of the full model, the same for every ``coef``.

    How this follows scikit-learn, and where that differs from textbook AIC/BIC:

    - ``LassoLarsIC`` centres X and y when ``fit_intercept=True`` and evaluates the
      residuals of the centred data, which equal ``y - X coef - intercept`` with
      ``intercept = mean(y) - mean(X, axis=0) @ coef`` (its ``intercept_``). Pass that
      intercept to reproduce ``criterion_``. Here ``fit_intercept`` only changes the
      noise-variance estimate; it has no effect when ``noise_variance`` is given.
    - ``df`` counts neither the intercept nor ``sigma^2``; statistics packages that
      fit ``sigma^2`` by maximum likelihood and count both report different values.
    - ``sigma^2`` is held fixed along the path rather than re-estimated for each
      ``coef``, so all criteria on a path share the ``n log(2 pi sigma^2)`` term.
    - ``LassoLarsIC`` accepts ``noise_variance=0``, and its ``criterion_`` is then NaN at
      every knot (it silently selects the first); here a non-positive variance is an error.

    Args:
        X: design matrix, shape (n_samples, n_features).
        y: targets, shape (n_samples,).
        coef: coefficients, shape (n_features,).
        intercept: the constant term.
        criterion: ``"aic"`` or ``"bic"``.
        noise_variance: ``sigma^2 > 0``, or None to estimate it as ``LassoLarsIC`` does.
        fit_intercept: whether the noise-variance estimate fits an intercept
            (``LassoLarsIC(fit_intercept=...)``).

    Returns:
        The criterion (lower is better), a Python float.

    Raises:
        ValueError: on a shape mismatch (naming both shapes), an unknown criterion, a
            non-positive noise_variance, or too few samples to estimate it.

    Example:
        >>> from sklearn.datasets import load_diabetes
        >>> from sklearn.linear_model import LassoLarsIC
        >>> X, y = load_diabetes(return_X_y=True)
        >>> model = LassoLarsIC(criterion="bic").fit(X, y)
        >>> bic = information_criterion(X, y, model.coef_, model.intercept_, criterion="bic")
        >>> round(bic, 4), round(float(model.criterion_.min()), 4)
        (4818.6415, 4818.6415)
    """
    if criterion not in _CRITERIA:
        raise ValueError(f"criterion must be one of {_CRITERIA}, got {criterion!r}")
    X, y, coef = _check_data(X, y, coef)
    intercept = _check_intercept(intercept)
    if noise_variance is None:
        noise_variance = ols_noise_variance(X, y, fit_intercept=fit_intercept)
    noise_variance = _check_positive("noise_variance", noise_variance)
    n_samples = X.shape[0]
    penalty_per_df = 2.0 if criterion == "aic" else math.log(n_samples)
    degrees_of_freedom = int(np.count_nonzero(np.abs(coef) > np.finfo(np.float64).eps))
    log_likelihood = gaussian_log_likelihood(X, y, coef, intercept, noise_variance=noise_variance)
    return -2.0 * log_likelihood + penalty_per_df * degrees_of_freedom
