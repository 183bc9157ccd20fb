"""The lockstep L-BFGS of the MAP search (calib._lbfgs) against closed forms and scipy."""

import numpy as np
import pytest
from scipy import optimize

from calib._lbfgs import minimize_batch


class Counted:
    """A batched objective from a one-point one, counting the batched calls."""

    def __init__(self, f_one):
        self.f_one, self.calls = f_one, 0

    def __call__(self, X):
        self.calls += 1
        out = [self.f_one(x) for x in X]
        return np.array([o[0] for o in out]), np.array([o[1] for o in out])


def rosen(x):
    return optimize.rosen(x), optimize.rosen_der(x)


def test_an_ill_conditioned_quadratic_reaches_its_closed_form_minimum():
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    A = Q @ np.diag(np.logspace(0, 3, 6)) @ Q.T  # condition number 1e3
    b = rng.standard_normal(6)
    x_star = np.linalg.solve(A, b)
    fun = Counted(lambda x: (0.5 * x @ A @ x - b @ x, A @ x - b))
    x, f, ok = minimize_batch(fun, rng.standard_normal((5, 6)), ftol=0.0)
    assert ok.all()
    np.testing.assert_allclose(
        x, np.broadcast_to(x_star, x.shape), rtol=0, atol=2.5e-5
    )  # ≤ ‖g‖₂/λ_min ≤ √6·gtol
    np.testing.assert_allclose(f, -0.5 * b @ x_star, rtol=1e-12)


def test_rosenbrock_from_many_starts_matches_scipy_in_fewer_calls():
    starts = 2.0 * np.random.default_rng(1).standard_normal((8, 2))
    fun = Counted(rosen)
    x, f, ok = minimize_batch(fun, starts)
    assert ok.all()
    np.testing.assert_allclose(x, np.ones_like(x), atol=1e-4)  # the minimum at (1, 1)
    ref = [optimize.minimize(rosen, s, jac=True, method="L-BFGS-B") for s in starts]
    assert all(r.success for r in ref)
    np.testing.assert_allclose(f, [r.fun for r in ref], atol=1e-8)
    # lockstep: the 8 starts share their calls (scipy's one after another need ~4x as many)
    assert fun.calls < 0.5 * sum(r.nfev for r in ref)


def test_each_start_ends_where_it_would_alone():
    starts = 2.0 * np.random.default_rng(2).standard_normal((4, 5))
    x, f, ok = minimize_batch(Counted(rosen), starts)
    for i, s in enumerate(starts):
        xi, fi, oki = minimize_batch(Counted(rosen), s[None])
        np.testing.assert_allclose(x[i], xi[0], rtol=0, atol=1e-12)
        assert ok[i] == oki[0]
    # Rosenbrock in 5 dimensions has a second local minimum near (-1, 1, 1, 1, 1)
    assert ok.all() and np.all((f < 1e-10) | (np.abs(f - 3.9308394) < 1e-6))


def test_a_step_into_an_infinite_region_is_shortened():
    # f = x - log x on x > 0, +inf elsewhere: the minimum is x = 1; the first step from
    # x = 0.05 (gradient -19) has unit length and lands at 1.05, later ones would overshoot
    def one(x):
        if x[0] <= 0:
            return np.inf, np.zeros(1)
        return x[0] - np.log(x[0]), np.array([1.0 - 1.0 / x[0]])

    x, f, ok = minimize_batch(Counted(one), np.array([[0.05], [6.0], [0.3]]), gtol=1e-10)
    assert ok.all()
    np.testing.assert_allclose(x[:, 0], 1.0, atol=1e-8)
    np.testing.assert_allclose(f, 1.0, rtol=1e-14)


def test_a_start_with_no_descent_stops_unconverged():
    # the gradient points the wrong way: no step along -g decreases f
    def wrong(x):
        return float(x @ x), -2.0 * x

    x, f, ok = minimize_batch(Counted(wrong), np.array([[1.0, 2.0], [0.0, 0.0]]))
    assert not ok[0] and ok[1]  # the second start is at the minimum (zero gradient)
    np.testing.assert_array_equal(x[0], [1.0, 2.0])


def test_maxiter_ends_unconverged():
    starts = np.array([[-1.2, 1.0]])
    x, f, ok = minimize_batch(Counted(rosen), starts, maxiter=3)
    assert not ok[0] and f[0] < optimize.rosen(starts[0])


def test_a_start_without_a_finite_value_is_refused():
    with pytest.raises(ValueError, match="finite objective"):
        minimize_batch(Counted(lambda x: (np.inf, np.zeros(1))), np.zeros((2, 1)))
