"""companion.lasso against SciPy's densities, scikit-learn's Lasso and LassoLarsIC, in float64."""

import math

import numpy as np
import pytest
import scipy.optimize
import scipy.stats
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Lasso, LassoLarsIC, LinearRegression, lars_path
from sklearn.metrics import mean_squared_error

from companion import lasso

X_DIABETES, Y_DIABETES = load_diabetes(return_X_y=True)
N_SAMPLES, N_FEATURES = X_DIABETES.shape
# sigma^2 near the least-squares residual variance, and a prior scale that zeros some coefs.
NOISE_VARIANCE = 3000.0
SCALE = 50.0


def small_problem(seed=0, n_samples=30, n_features=4):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_samples, n_features))
    coef = rng.normal(size=n_features)
    y = X @ coef + 0.7 + rng.normal(scale=0.5, size=n_samples)
    return X, y, coef


def fit_lasso(alpha, X=X_DIABETES, y=Y_DIABETES):
    return Lasso(alpha=alpha, tol=1e-14, max_iter=1_000_000).fit(X, y)


def split_lbfgs(X, y, alpha):
    """Minimise (1/(2n)) RSS + alpha * sum(u + v), w = u - v, u, v >= 0: smooth, bounded.

    An optimiser independent of coordinate descent, on a smooth reformulation whose
    minimum equals the Lasso's (at the optimum min(u_j, v_j) = 0, so u + v = |w|).
    """
    n_samples, n_features = X.shape

    def objective(params):
        u, v, intercept = params[:n_features], params[n_features:-1], params[-1]
        residuals = y - X @ (u - v) - intercept
        grad_w = -(X.T @ residuals) / n_samples
        value = residuals @ residuals / (2 * n_samples) + alpha * (u.sum() + v.sum())
        grad = np.concatenate([grad_w + alpha, -grad_w + alpha, [-residuals.mean()]])
        return value, grad

    start = np.concatenate([np.zeros(2 * n_features), [y.mean()]])
    bounds = [(0.0, None)] * (2 * n_features) + [(None, None)]
    result = scipy.optimize.minimize(
        objective,
        start,
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 100_000, "maxcor": 30},
    )
    params = result.x
    return params[:n_features] - params[n_features:-1], params[-1]


# ---------------------------------------------------------------------------- objective


def test_objective_without_penalty_is_half_the_mean_squared_error():
    X, y, coef = small_problem()
    expected = mean_squared_error(y, X @ coef + 0.7) / 2
    actual = lasso.lasso_objective(X, y, coef, alpha=0.0, intercept=0.7)
    np.testing.assert_allclose(actual, expected, rtol=1e-13)


def test_objective_adds_alpha_times_l1_norm_and_leaves_intercept_unpenalised():
    X, y, coef = small_problem()
    base = lasso.lasso_objective(X, y, coef, alpha=0.0, intercept=0.7)
    penalised = lasso.lasso_objective(X, y, coef, alpha=0.3, intercept=0.7)
    np.testing.assert_allclose(penalised - base, 0.3 * np.abs(coef).sum(), rtol=1e-12)
    # Moving the intercept changes the data term only.
    shifted = lasso.lasso_objective(X, y + 5.0, coef, alpha=0.3, intercept=5.7)
    np.testing.assert_allclose(shifted, penalised, rtol=1e-13)


def test_objective_scales_quadratically_with_y_coef_intercept_and_linearly_alpha():
    X, y, coef = small_problem()
    factor = 3.0
    base = lasso.lasso_objective(X, y, coef, alpha=0.2, intercept=0.7)
    scaled = lasso.lasso_objective(
        X, factor * y, factor * coef, alpha=factor * 0.2, intercept=factor * 0.7
    )
    np.testing.assert_allclose(scaled, factor**2 * base, rtol=1e-13)


@pytest.mark.parametrize("alpha", [0.05, 0.5, 2.0])
def test_fitted_lasso_satisfies_the_optimality_conditions_of_the_objective(alpha):
    """Directional derivatives of lasso_objective at Lasso's solution are all >= 0."""
    fit = fit_lasso(alpha)
    coef, intercept = fit.coef_, fit.intercept_
    objective = lasso.lasso_objective(X_DIABETES, Y_DIABETES, coef, alpha, intercept)
    step = 1e-3
    assert np.any(coef == 0.0) and np.any(coef != 0.0)
    for j in range(N_FEATURES):
        unit = np.zeros(N_FEATURES)
        unit[j] = step
        up = lasso.lasso_objective(X_DIABETES, Y_DIABETES, coef + unit, alpha, intercept)
        down = lasso.lasso_objective(X_DIABETES, Y_DIABETES, coef - unit, alpha, intercept)
        if coef[j] != 0.0:
            # Smooth there: the central difference of a quadratic plus a linear term is exact.
            assert abs(up - down) / (2 * step) < 1e-7
        else:
            # The kink: both one-sided slopes are alpha - |gradient_j| > 0 at a strict zero.
            assert (up - objective) / step > 1e-6
            assert (down - objective) / step > 1e-6
    for delta in (step, -step):
        moved = lasso.lasso_objective(X_DIABETES, Y_DIABETES, coef, alpha, intercept + delta)
        assert moved > objective


@pytest.mark.parametrize("alpha", [0.05, 0.5])
def test_objective_at_fitted_lasso_is_minimal_against_random_perturbations(alpha):
    fit = fit_lasso(alpha)
    best = lasso.lasso_objective(X_DIABETES, Y_DIABETES, fit.coef_, alpha, fit.intercept_)
    rng = np.random.default_rng(1)
    for size in (1e-2, 1e-1, 1.0, 10.0):
        for _ in range(50):
            coef = fit.coef_ + rng.normal(scale=size, size=N_FEATURES)
            intercept = fit.intercept_ + rng.normal(scale=size)
            assert lasso.lasso_objective(X_DIABETES, Y_DIABETES, coef, alpha, intercept) > best


@pytest.mark.parametrize("alpha", [0.05, 0.5])
def test_objective_minimum_agrees_with_an_independent_solver(alpha):
    fit = fit_lasso(alpha)
    coef, intercept = split_lbfgs(X_DIABETES, Y_DIABETES, alpha)
    ours = lasso.lasso_objective(X_DIABETES, Y_DIABETES, fit.coef_, alpha, fit.intercept_)
    theirs = lasso.lasso_objective(X_DIABETES, Y_DIABETES, coef, alpha, intercept)
    assert ours <= theirs + 1e-9
    np.testing.assert_allclose(ours, theirs, rtol=1e-10)
    np.testing.assert_allclose(coef, fit.coef_, atol=1e-3)


# ---------------------------------------------------------------------------- likelihood


@pytest.mark.parametrize("noise_variance", [0.01, 0.25, 1.0, 40.0])
def test_gaussian_log_likelihood_is_the_sum_of_normal_log_densities(noise_variance):
    X, y, coef = small_problem(seed=2)
    expected = scipy.stats.norm.logpdf(y, loc=X @ coef + 0.7, scale=math.sqrt(noise_variance))
    actual = lasso.gaussian_log_likelihood(X, y, coef, 0.7, noise_variance=noise_variance)
    np.testing.assert_allclose(actual, expected.sum(), rtol=1e-12)


def test_gaussian_log_likelihood_without_variance_uses_and_maximises_at_rss_over_n():
    X, y, coef = small_problem(seed=3)
    residuals = y - X @ coef - 0.7
    ml_variance = residuals @ residuals / len(y)
    expected = scipy.stats.norm.logpdf(residuals, scale=math.sqrt(ml_variance)).sum()
    profile = lasso.gaussian_log_likelihood(X, y, coef, 0.7)
    np.testing.assert_allclose(profile, expected, rtol=1e-12)
    result = scipy.optimize.minimize_scalar(
        lambda log_variance: (
            -lasso.gaussian_log_likelihood(X, y, coef, 0.7, noise_variance=math.exp(log_variance))
        ),
        bracket=(-5.0, 5.0),
        tol=1e-12,
    )
    np.testing.assert_allclose(math.exp(result.x), ml_variance, rtol=1e-6)
    np.testing.assert_allclose(-result.fun, profile, rtol=1e-12)


def test_gaussian_log_likelihood_is_invariant_to_the_order_of_samples():
    X, y, coef = small_problem(seed=4)
    order = np.random.default_rng(0).permutation(len(y))
    np.testing.assert_allclose(
        lasso.gaussian_log_likelihood(X[order], y[order], coef, 0.7, noise_variance=0.3),
        lasso.gaussian_log_likelihood(X, y, coef, 0.7, noise_variance=0.3),
        rtol=1e-13,
    )


def test_likelihood_of_the_diabetes_data_underflows_only_after_exp():
    fit = fit_lasso(0.1)
    log_likelihood = lasso.gaussian_log_likelihood(
        X_DIABETES, Y_DIABETES, fit.coef_, fit.intercept_, noise_variance=NOISE_VARIANCE
    )
    assert np.isfinite(log_likelihood) and log_likelihood < -2000.0
    assert np.exp(log_likelihood) == 0.0


# ---------------------------------------------------------------------------- prior


@pytest.mark.parametrize("scale", [0.1, 1.0, 50.0])
@pytest.mark.parametrize("shape", [(5,), (2, 3), ()])
def test_laplace_log_prior_is_the_sum_of_laplace_log_densities(scale, shape):
    coef = np.random.default_rng(5).laplace(scale=2.0, size=shape)
    expected = scipy.stats.laplace.logpdf(coef, scale=scale).sum()
    np.testing.assert_allclose(lasso.laplace_log_prior(coef, scale), expected, rtol=1e-13)


def test_laplace_log_prior_is_symmetric_and_peaks_at_zero():
    coef = np.array([0.3, -1.2, 2.0])
    value = lasso.laplace_log_prior(coef, 0.5)
    np.testing.assert_allclose(lasso.laplace_log_prior(-coef, 0.5), value, rtol=1e-15)
    np.testing.assert_allclose(
        lasso.laplace_log_prior(np.zeros(3), 0.5), -3 * math.log(2 * 0.5), rtol=1e-15
    )
    assert lasso.laplace_log_prior(np.zeros(3), 0.5) > value


def test_log_posterior_is_likelihood_plus_prior_from_scipy():
    X, y, coef = small_problem(seed=6)
    expected = (
        scipy.stats.norm.logpdf(y, loc=X @ coef + 0.7, scale=math.sqrt(0.4)).sum()
        + scipy.stats.laplace.logpdf(coef, scale=1.5).sum()
    )
    actual = lasso.log_posterior(X, y, coef, 0.7, noise_variance=0.4, scale=1.5)
    np.testing.assert_allclose(actual, expected, rtol=1e-12)


# ---------------------------------------------------------------------------- MAP


def test_alpha_and_scale_conversions_are_inverse():
    alpha = lasso.alpha_from_laplace_scale(NOISE_VARIANCE, SCALE, N_SAMPLES)
    np.testing.assert_allclose(alpha, NOISE_VARIANCE / (N_SAMPLES * SCALE), rtol=1e-15)
    scale = lasso.laplace_scale_from_alpha(NOISE_VARIANCE, alpha, N_SAMPLES)
    np.testing.assert_allclose(scale, SCALE, rtol=1e-14)


def test_negative_log_posterior_is_n_over_sigma2_times_the_objective_plus_a_constant():
    alpha = lasso.alpha_from_laplace_scale(NOISE_VARIANCE, SCALE, N_SAMPLES)
    rng = np.random.default_rng(7)
    differences = []
    for _ in range(5):
        coef = rng.normal(scale=100.0, size=N_FEATURES)
        intercept = rng.normal(loc=150.0, scale=10.0)
        posterior = lasso.log_posterior(
            X_DIABETES, Y_DIABETES, coef, intercept, noise_variance=NOISE_VARIANCE, scale=SCALE
        )
        objective = lasso.lasso_objective(X_DIABETES, Y_DIABETES, coef, alpha, intercept)
        differences.append(-posterior - N_SAMPLES / NOISE_VARIANCE * objective)
    constant = 0.5 * N_SAMPLES * math.log(2 * math.pi * NOISE_VARIANCE) + N_FEATURES * math.log(
        2 * SCALE
    )
    np.testing.assert_allclose(differences, constant, rtol=1e-12)


def test_lasso_at_the_matching_alpha_maximises_the_log_posterior():
    alpha = lasso.alpha_from_laplace_scale(NOISE_VARIANCE, SCALE, N_SAMPLES)
    fit = fit_lasso(alpha)
    assert np.any(fit.coef_ == 0.0)

    def posterior(coef, intercept):
        return lasso.log_posterior(
            X_DIABETES, Y_DIABETES, coef, intercept, noise_variance=NOISE_VARIANCE, scale=SCALE
        )

    best = posterior(fit.coef_, fit.intercept_)
    rng = np.random.default_rng(8)
    for size in (1e-2, 1e-1, 1.0, 10.0):
        for _ in range(50):
            coef = fit.coef_ + rng.normal(scale=size, size=N_FEATURES)
            assert posterior(coef, fit.intercept_ + rng.normal(scale=size)) < best

    # An independent optimiser on the smooth split form of -log posterior / (n / sigma^2).
    map_coef, map_intercept = split_lbfgs(X_DIABETES, Y_DIABETES, alpha)
    np.testing.assert_allclose(posterior(map_coef, map_intercept), best, rtol=1e-12)
    np.testing.assert_allclose(map_coef, fit.coef_, atol=1e-3)
    # A derivative-free optimiser on -log_posterior itself, started at least squares and
    # restarted from its own result: Powell's line searches stall at the kinks otherwise.
    start = LinearRegression().fit(X_DIABETES, Y_DIABETES)
    params = np.append(start.coef_, start.intercept_)
    value = -posterior(params[:-1], params[-1])
    for _ in range(10):
        result = scipy.optimize.minimize(
            lambda params: -posterior(params[:-1], params[-1]),
            params,
            method="Powell",
            options={"xtol": 1e-10, "ftol": 1e-15, "maxfev": 100_000},
        )
        improvement, value, params = value - result.fun, result.fun, result.x
        if improvement < 1e-12:
            break
    assert -value <= best + 1e-9
    np.testing.assert_allclose(-value, best, rtol=1e-13)
    np.testing.assert_allclose(params[:-1], fit.coef_, atol=1e-3)


# ---------------------------------------------------------------------------- AIC / BIC


def reference_path(fit_intercept):
    """The Lasso-LARS path exactly as LassoLarsIC computes it (centred data if intercept)."""
    X, y = X_DIABETES, Y_DIABETES
    x_mean = X.mean(axis=0) if fit_intercept else np.zeros(N_FEATURES)
    y_mean = y.mean() if fit_intercept else 0.0
    alphas, _, coef_path = lars_path(
        X - x_mean, y - y_mean, Gram="auto", alpha_min=0.0, method="lasso", max_iter=500
    )
    intercepts = y_mean - x_mean @ coef_path
    return alphas, coef_path.T, intercepts


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("noise_variance", [None, 2500.0])
@pytest.mark.parametrize("criterion", ["aic", "bic"])
def test_information_criterion_reproduces_lasso_lars_ic(criterion, noise_variance, fit_intercept):
    model = LassoLarsIC(
        criterion=criterion, noise_variance=noise_variance, fit_intercept=fit_intercept
    ).fit(X_DIABETES, Y_DIABETES)
    alphas, coefs, intercepts = reference_path(fit_intercept)
    np.testing.assert_allclose(alphas, model.alphas_, rtol=1e-12)
    ours = [
        lasso.information_criterion(
            X_DIABETES,
            Y_DIABETES,
            coef,
            intercept,
            criterion=criterion,
            noise_variance=noise_variance,
            fit_intercept=fit_intercept,
        )
        for coef, intercept in zip(coefs, intercepts, strict=True)
    ]
    np.testing.assert_allclose(ours, model.criterion_, rtol=1e-10)
    assert alphas[np.argmin(ours)] == model.alpha_
    # At the chosen model, sklearn's own coef_ and intercept_ give the minimum.
    chosen = lasso.information_criterion(
        X_DIABETES,
        Y_DIABETES,
        model.coef_,
        model.intercept_,
        criterion=criterion,
        noise_variance=noise_variance,
        fit_intercept=fit_intercept,
    )
    np.testing.assert_allclose(chosen, model.criterion_.min(), rtol=1e-10)


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_ols_noise_variance_matches_lasso_lars_ic(fit_intercept):
    model = LassoLarsIC(fit_intercept=fit_intercept).fit(X_DIABETES, Y_DIABETES)
    np.testing.assert_allclose(
        lasso.ols_noise_variance(X_DIABETES, Y_DIABETES, fit_intercept=fit_intercept),
        model.noise_variance_,
        rtol=1e-10,
    )


def test_information_criterion_is_minus_twice_log_likelihood_plus_penalty():
    fit = fit_lasso(0.3)
    n_nonzero = np.count_nonzero(fit.coef_)
    assert 0 < n_nonzero < N_FEATURES
    args = (X_DIABETES, Y_DIABETES, fit.coef_, fit.intercept_)
    log_likelihood = lasso.gaussian_log_likelihood(*args, noise_variance=NOISE_VARIANCE)
    aic = lasso.information_criterion(*args, criterion="aic", noise_variance=NOISE_VARIANCE)
    bic = lasso.information_criterion(*args, criterion="bic", noise_variance=NOISE_VARIANCE)
    np.testing.assert_allclose(aic, -2 * log_likelihood + 2 * n_nonzero, rtol=1e-13)
    np.testing.assert_allclose(bic - aic, (math.log(N_SAMPLES) - 2) * n_nonzero, rtol=1e-10)


def test_degrees_of_freedom_ignore_coefficients_below_machine_epsilon():
    X, y, coef = small_problem(seed=9)
    tiny = coef.copy()
    tiny[1] = 1e-17
    zero = coef.copy()
    zero[1] = 0.0
    kwargs = dict(criterion="aic", noise_variance=0.3)
    with_tiny = lasso.information_criterion(X, y, tiny, 0.7, **kwargs)
    with_zero = lasso.information_criterion(X, y, zero, 0.7, **kwargs)
    with_full = lasso.information_criterion(X, y, coef, 0.7, **kwargs)
    np.testing.assert_allclose(with_tiny, with_zero, rtol=1e-13)
    residual_change = -2 * lasso.gaussian_log_likelihood(
        X, y, coef, 0.7, noise_variance=0.3
    ) - -2 * lasso.gaussian_log_likelihood(X, y, zero, 0.7, noise_variance=0.3)
    np.testing.assert_allclose(with_full - with_zero, residual_change + 2.0, rtol=1e-10)


def test_given_noise_variance_ignores_fit_intercept():
    X, y, coef = small_problem(seed=10)
    with_intercept = lasso.information_criterion(X, y, coef, 0.7, noise_variance=0.3)
    without = lasso.information_criterion(X, y, coef, 0.7, noise_variance=0.3, fit_intercept=False)
    assert with_intercept == without


# ---------------------------------------------------------------------------- bad input


X_BAD = np.ones((5, 3))
Y_BAD = np.ones(5)
COEF_BAD = np.ones(3)

BAD_CALLS = [
    (
        "y rows",
        lambda: lasso.lasso_objective(X_BAD, np.ones(4), COEF_BAD, 0.1),
        r"X has shape \(5, 3\) but y has shape \(4,\)",
    ),
    (
        "y column",
        lambda: lasso.gaussian_log_likelihood(X_BAD, np.ones((5, 1)), COEF_BAD),
        r"X has shape \(5, 3\) but y has shape \(5, 1\)",
    ),
    (
        "coef length",
        lambda: lasso.log_posterior(X_BAD, Y_BAD, np.ones(4), 0.0, noise_variance=1.0, scale=1.0),
        r"X has shape \(5, 3\) but coef has shape \(4,\)",
    ),
    (
        "coef 2-D",
        lambda: lasso.information_criterion(X_BAD, Y_BAD, np.ones((3, 1))),
        r"X has shape \(5, 3\) but coef has shape \(3, 1\)",
    ),
    (
        "X 1-D",
        lambda: lasso.lasso_objective(np.ones(5), Y_BAD, COEF_BAD, 0.1),
        r"X must be 2-D .* got shape \(5,\)",
    ),
    (
        "negative alpha",
        lambda: lasso.lasso_objective(X_BAD, Y_BAD, COEF_BAD, -0.1),
        r"alpha must be a non-negative scalar, got -0\.1",
    ),
    (
        "intercept array",
        lambda: lasso.lasso_objective(X_BAD, Y_BAD, COEF_BAD, 0.1, np.ones(5)),
        r"intercept must be a scalar, got shape \(5,\)",
    ),
    (
        "negative variance",
        lambda: lasso.gaussian_log_likelihood(X_BAD, Y_BAD, COEF_BAD, noise_variance=-1.0),
        r"noise_variance must be a positive scalar, got -1\.0",
    ),
    (
        "zero variance",
        lambda: lasso.information_criterion(X_BAD, Y_BAD, COEF_BAD, noise_variance=0.0),
        r"noise_variance must be a positive scalar, got 0\.0",
    ),
    (
        "nan variance",
        lambda: lasso.log_posterior(
            X_BAD, Y_BAD, COEF_BAD, 0.0, noise_variance=float("nan"), scale=1.0
        ),
        r"noise_variance must be a positive scalar, got nan",
    ),
    (
        "exact fit",
        lambda: lasso.gaussian_log_likelihood(X_BAD, Y_BAD * 3, COEF_BAD),
        r"residuals are all zero",
    ),
    (
        "negative scale",
        lambda: lasso.laplace_log_prior(COEF_BAD, -2.0),
        r"scale must be a positive scalar, got -2\.0",
    ),
    (
        "zero scale",
        lambda: lasso.log_posterior(X_BAD, Y_BAD, COEF_BAD, 0.0, noise_variance=1.0, scale=0.0),
        r"scale must be a positive scalar, got 0\.0",
    ),
    (
        "scale for alpha",
        lambda: lasso.alpha_from_laplace_scale(1.0, -1.0, 10),
        r"scale must be a positive scalar, got -1\.0",
    ),
    (
        "variance for alpha",
        lambda: lasso.alpha_from_laplace_scale(-1.0, 1.0, 10),
        r"noise_variance must be a positive scalar, got -1\.0",
    ),
    (
        "zero alpha",
        lambda: lasso.laplace_scale_from_alpha(1.0, 0.0, 10),
        r"alpha must be a positive scalar, got 0\.0",
    ),
    (
        "n_samples zero",
        lambda: lasso.alpha_from_laplace_scale(1.0, 1.0, 0),
        r"n_samples must be a positive integer, got 0",
    ),
    (
        "n_samples fraction",
        lambda: lasso.laplace_scale_from_alpha(1.0, 1.0, 2.5),
        r"n_samples must be a positive integer, got 2\.5",
    ),
    (
        "criterion",
        lambda: lasso.information_criterion(X_BAD, Y_BAD, COEF_BAD, criterion="aicc"),
        r"criterion must be one of \('aic', 'bic'\), got 'aicc'",
    ),
    (
        "too few samples",
        lambda: lasso.information_criterion(np.eye(4), np.ones(4), np.ones(4)),
        r"X has shape \(4, 4\).*no degrees of freedom",
    ),
    (
        "too few without intercept",
        lambda: lasso.ols_noise_variance(np.ones((3, 3)), np.ones(3), fit_intercept=False),
        r"fit_intercept=False no degrees of freedom",
    ),
]


@pytest.mark.parametrize(
    ("call", "match"), [case[1:] for case in BAD_CALLS], ids=[case[0] for case in BAD_CALLS]
)
def test_bad_input_raises_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_sklearn_also_refuses_to_estimate_the_variance_with_too_few_samples():
    X, y, _ = small_problem(seed=11, n_samples=5, n_features=4)
    with pytest.raises(ValueError, match="number of samples is smaller"):
        LassoLarsIC().fit(X, y)
    with pytest.raises(ValueError, match="no degrees of freedom"):
        lasso.ols_noise_variance(X, y)
