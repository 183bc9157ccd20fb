"""ReactionNetworkSimulator against the closed form of A → B → C; Jacobian; modules."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import approx_fprime

from simulators.reaction_network import ReactionNetworkSimulator, parse_reaction

TIMES = [0.0, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0]


def closed_form(A0, k1, k2, t):
    t = np.asarray(t)
    A = A0 * np.exp(-k1 * t)
    B = A0 * k1 / (k2 - k1) * (np.exp(-k1 * t) - np.exp(-k2 * t))
    return A, B, A0 - A - B


def _net(**kw):
    return ReactionNetworkSimulator(
        [("A -> B", "k1"), ("B -> C", "k2")], initial={"A": "A0"}, times=TIMES, **kw
    )


@pytest.mark.parametrize("method", ["BDF", "LSODA"])
def test_matches_closed_form_within_the_ode_tolerance(method):
    rtol, atol = 1e-8, 1e-12
    net = _net(method=method, rtol=rtol, atol=atol)
    assert net.input_names == ("A0",) and net.parameter_names == ("k1", "k2")
    assert net.output_names[:2] == ("A@0", "A@0.1") and len(net.output_names) == 21
    rng = np.random.default_rng(1)
    # includes a stiff case (k1 / k2 = 1e4)
    Theta = np.vstack([rng.uniform(0.1, 3.0, (10, 2)), [[1e3, 0.1], [0.2, 2e3]]])
    X = rng.uniform(0.5, 2.0, (Theta.shape[0], 1))
    Y = net.run_batch(X, Theta)
    for x, th, y in zip(X, Theta, Y, strict=True):
        ref = np.concatenate(closed_form(x[0], *th, TIMES))
        # global error of an adaptive solver: a small multiple of the local tolerance
        assert (np.abs(y - ref) <= 100 * (rtol * np.abs(ref) + atol)).all()
    # one row at a time gives the same, within the tolerance
    np.testing.assert_allclose(net.run(X[3], Theta[3]), Y[3], rtol=1e-6, atol=1e-10)


def test_analytic_jacobian_matches_finite_differences():
    net = ReactionNetworkSimulator(
        [("2 A + B -> C", "k1"), ("C -> A", "k2"), ("-> B", "k3"), ("C ->", "k2")],
        initial={"A": 1.0, "B": 0.5},
        times=[1.0],
    )
    k = np.array([[0.7, 0.3, 0.2]])[:, net._rate_of]
    rhs, jac = net._rhs_jac(k)
    y = np.array([0.8, 0.4, 0.3])
    J = jac(0.0, y).toarray()
    fd = np.array([approx_fprime(y, lambda c, i=i: rhs(0.0, c)[i], 1e-7) for i in range(3)])
    np.testing.assert_allclose(J, fd, rtol=1e-5, atol=1e-7)


def test_modular_network_has_per_module_rates():
    net = ReactionNetworkSimulator.modular(
        [("S + E_ -> P", "kcat"), ("P -> ", "kdeg")],
        n_modules=3,
        initial={"S": 1.0, "E_": "E0"},
        times=[1.0, 2.0],
        observed=("P",),
        shared_species=("S",),
        shared_rates=("kdeg",),
    )
    assert net.parameter_names == ("kcat_1", "kdeg", "kcat_2", "kcat_3")
    assert net.species == ("S", "E__1", "P_1", "E__2", "P_2", "E__3", "P_3")
    assert net.output_names == ("P_1@1", "P_1@2", "P_2@1", "P_2@2", "P_3@1", "P_3@2")
    y = net.run([0.5], [1.0, 0.1, 2.0, 0.0])
    # the module with kcat = 0 makes nothing, a faster one makes more
    assert y[4] == 0.0 and y[2] > y[0] > 0


def test_bad_input():
    with pytest.raises(ValueError, match="expected 'A \\+ B -> C'"):
        parse_reaction("A => B")
    with pytest.raises(ValueError, match="cannot read term '2x A'"):
        parse_reaction("2x A -> B")
    with pytest.raises(ValueError, match=r"initial names unknown species \['D'\]"):
        ReactionNetworkSimulator([("A -> B", "k")], {"D": 1.0}, [1.0])
    with pytest.raises(ValueError, match="times must be finite, >= 0 and increasing"):
        ReactionNetworkSimulator([("A -> B", "k")], {"A": 1.0}, [2.0, 1.0])
    with pytest.raises(ValueError, match="rate constants .* must be finite and >= 0"):
        _net().run([1.0], [-1.0, 1.0])
