"""companion.reference against exact and high-precision arithmetic."""

from fractions import Fraction

import mpmath
import numpy as np
import pytest

from companion import reference


def exact_huber(r: float, delta: float) -> Fraction:
    # The Huber loss is rational in r and delta: exact with Fractions.
    r, delta = Fraction(r), Fraction(delta)
    if abs(r) <= delta:
        return r * r / 2
    return delta * (abs(r) - delta / 2)


def textbook_pseudo_huber(r, delta):
    return delta**2 * (mpmath.sqrt(1 + (r / delta) ** 2) - 1)


def precise_pseudo_huber(r: float, delta: float) -> float:
    # The textbook formula, whose cancellation 50 digits make harmless.
    with mpmath.workdps(50):
        return float(textbook_pseudo_huber(mpmath.mpf(r), mpmath.mpf(delta)))


def precise_pseudo_huber_grad(r: float, delta: float) -> float:
    with mpmath.workdps(50):
        delta = mpmath.mpf(delta)
        return float(mpmath.diff(lambda x: textbook_pseudo_huber(x, delta), mpmath.mpf(r)))


def residuals(seed, delta):
    rng = np.random.default_rng(seed)
    boundary = [delta, -delta, 0.0, np.nextafter(delta, 0), np.nextafter(-delta, -np.inf)]
    return np.concatenate([boundary, rng.normal(scale=2 * delta, size=60)])


@pytest.mark.parametrize("delta", [0.1, 1.0, 1.345, 7.0])
def test_huber_is_exact(delta):
    r = residuals(seed=0, delta=delta)
    expected = np.array([float(exact_huber(value, delta)) for value in r])
    np.testing.assert_allclose(reference.huber(r, delta), expected, rtol=1e-15, atol=0.0)


@pytest.mark.parametrize("delta", [0.1, 1.0, 7.0])
def test_pseudo_huber_matches_high_precision(delta):
    # Tiny residuals (where the textbook formula cancels) and huge ones (where r**2 overflows).
    r = np.concatenate([residuals(seed=1, delta=delta), [1e-12, -3e-9, 1e200, -1e300]])
    expected = [precise_pseudo_huber(value, delta) for value in r]
    np.testing.assert_allclose(reference.pseudo_huber(r, delta), expected, rtol=1e-14, atol=0.0)


@pytest.mark.parametrize("delta", [0.1, 1.0, 7.0])
def test_pseudo_huber_grad_matches_high_precision_derivative(delta):
    r = residuals(seed=2, delta=delta)
    expected = [precise_pseudo_huber_grad(value, delta) for value in r]
    np.testing.assert_allclose(reference.pseudo_huber_grad(r, delta), expected, rtol=1e-14)


@pytest.mark.parametrize("delta", [0.1, 1.0, 7.0])
def test_huber_grad_matches_central_differences(delta):
    r = residuals(seed=3, delta=delta)
    step = 1e-6 * delta
    differences = (reference.huber(r + step, delta) - reference.huber(r - step, delta)) / (2 * step)
    # On each piece the loss is a polynomial of degree <= 2, so central differences are exact
    # up to rounding; within one step of the kink they are off by at most step / 2.
    at_kink = np.abs(np.abs(r) - delta) < step
    np.testing.assert_allclose(
        reference.huber_grad(r, delta)[~at_kink], differences[~at_kink], rtol=0.0, atol=1e-8
    )
    np.testing.assert_allclose(
        reference.huber_grad(r, delta)[at_kink], differences[at_kink], rtol=0.0, atol=step / 2
    )


def test_huber_grad_is_clip_and_continuous_at_the_kink():
    delta = 0.75
    np.testing.assert_array_equal(
        reference.huber_grad([-2.0, -0.75, 0.1, 0.75, 2.0], delta), [-0.75, -0.75, 0.1, 0.75, 0.75]
    )
    # Both pieces meet at |r| = delta with the value delta**2 / 2.
    below, at, above = reference.huber(
        [np.nextafter(delta, 0.0), delta, np.nextafter(delta, 1.0)], delta
    )
    assert at == delta**2 / 2
    assert below <= at <= above
    np.testing.assert_allclose([below, above], at, rtol=1e-15)


@pytest.mark.parametrize("loss", [reference.huber, reference.pseudo_huber])
def test_huge_delta_is_half_squared_error(loss):
    r = np.linspace(-100.0, 100.0, 201)
    np.testing.assert_allclose(loss(r, delta=1e12), 0.5 * r**2, rtol=1e-15, atol=0.0)


@pytest.mark.parametrize("delta", [1e-2, 1e-5, 1e-8])
def test_loss_over_small_delta_tends_to_absolute_error(delta):
    r = np.array([-4.0, -1.0, 0.3, 2.5])
    # Off the quadratic piece, huber / delta = |r| - delta / 2 exactly, and
    # pseudo_huber / delta = |r| - delta + delta**2 / (2 |r|) - O(delta**4 / |r|**3).
    np.testing.assert_allclose(reference.huber(r, delta) / delta, np.abs(r) - delta / 2, rtol=1e-15)
    np.testing.assert_allclose(
        reference.pseudo_huber(r, delta) / delta,
        np.abs(r) - delta + delta**2 / (2 * np.abs(r)),
        rtol=1e-15 + delta**3,
        atol=0.0,
    )
    np.testing.assert_allclose(reference.huber_grad(r, delta) / delta, np.sign(r), rtol=1e-15)


def test_pseudo_huber_near_zero_is_half_squared_error():
    r = np.array([1e-3, -2e-4, 5e-6])
    # Taylor series of delta**2 (sqrt(1 + x) - 1), x = (r / delta)**2, delta = 1.
    series = r**2 / 2 - r**4 / 8 + r**6 / 16
    np.testing.assert_allclose(reference.pseudo_huber(r, 1.0), series, rtol=1e-15)
    grad_series = r - r**3 / 2 + 3 * r**5 / 8
    np.testing.assert_allclose(reference.pseudo_huber_grad(r, 1.0), grad_series, rtol=1e-15)


@pytest.mark.parametrize("delta", [0.2, 1.0, 3.0])
def test_pseudo_huber_lies_below_huber_within_half_delta_squared(delta):
    r = np.linspace(-50 * delta, 50 * delta, 5001)
    gap = reference.huber(r, delta) - reference.pseudo_huber(r, delta)
    assert np.all(gap >= 0.0)
    assert np.all(gap < delta**2 / 2)


@pytest.mark.parametrize(
    "function",
    [reference.huber, reference.huber_grad, reference.pseudo_huber, reference.pseudo_huber_grad],
)
def test_elementwise_any_shape_and_symmetry(function):
    r = np.random.default_rng(4).normal(size=(2, 3, 4))
    values = function(r, 0.5)
    assert values.shape == (2, 3, 4)
    assert values.dtype == np.float64
    sign = -1.0 if function.__name__.endswith("grad") else 1.0
    np.testing.assert_array_equal(function(-r, 0.5), sign * values)
    assert function(2.0, 0.5).shape == ()
    np.testing.assert_array_equal(function([[2.0, 0.1]], 0.5), function([2.0, 0.1], 0.5)[None])


@pytest.mark.parametrize(
    "function",
    [reference.huber, reference.huber_grad, reference.pseudo_huber, reference.pseudo_huber_grad],
)
@pytest.mark.parametrize("delta", [0.0, -0.5, np.inf, np.nan])
def test_invalid_delta(function, delta):
    with pytest.raises(ValueError, match="delta must be a finite number > 0"):
        function([1.0], delta)
