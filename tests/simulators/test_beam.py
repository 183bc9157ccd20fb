"""BeamSimulator against the closed forms of the cantilever; vectorized batch."""

from __future__ import annotations

import numpy as np
import pytest

from simulators.beam import BeamSimulator

L, I, E = 2.0, 8.0e-6, 2.1e11


def exact(s, P, a, E, k):
    """Statically determinate cantilever: clamped solution plus the spring's rigid rotation."""
    s = np.asarray(s, dtype=float)
    w = np.where(s <= a, s**2 * (3 * a - s), a**2 * (3 * s - a)) * P / (6 * E * I)
    return w + (0.0 if np.isinf(k) else P * a / k) * s


def test_tip_deflection_of_a_clamped_cantilever():
    beam = BeamSimulator(L, I, sensors=[L], n_elements=40)
    P = 1.5e3
    tip = beam.run([P, L], [E, np.inf])[0]
    assert abs(tip / (P * L**3 / (3 * E * I)) - 1) < 1e-8


def test_spring_supported_correction():
    beam = BeamSimulator(L, I, sensors=[L])
    P, k = 1.5e3, 3.0e5
    tip = beam.run([P, L], [E, k])[0]
    assert abs(tip / (P * L**3 / (3 * E * I) + P * L**2 / k) - 1) < 1e-8


@pytest.mark.parametrize("n_elements", [1, 3, 40])
def test_sensor_deflections_exact_for_any_load_and_mesh(n_elements):
    sensors = [0.0, 0.31, 0.77, 1.2, 1.999, 2.0]
    beam = BeamSimulator(L, I, sensors=sensors, n_elements=n_elements)
    rng = np.random.default_rng(0)
    n = 50
    X = np.column_stack([rng.uniform(-2e3, 2e3, n), rng.uniform(0, L, n)])
    X[0, 1], X[1, 1] = 0.0, L  # load at the support and at the tip
    Theta = np.column_stack([rng.uniform(1.5e11, 2.5e11, n), rng.uniform(1e4, 1e7, n)])
    Theta[2, 1] = Theta[3, 1] = np.inf
    W = beam.run_batch(X, Theta)
    ref = np.array([exact(sensors, *x, *t) for x, t in zip(X, Theta, strict=True)])
    scale = np.abs(ref).max(axis=1, keepdims=True)
    np.testing.assert_array_equal(W[0], 0.0)  # a load on the support bends nothing
    assert np.abs((W - ref)[1:] / scale[1:]).max() < 1e-8
    # the batch is the same as one run at a time
    np.testing.assert_allclose(beam.run(X[7], Theta[7]), W[7], rtol=1e-13)


def test_mesh_convergence():
    # the sensor deflections do not depend on the mesh ...
    sensors = [0.4, 1.1, 2.0]
    runs = [
        BeamSimulator(L, I, sensors=sensors, n_elements=n).run([1e3, 0.9], [E, 2e5])
        for n in (1, 2, 7, 40, 100)
    ]
    np.testing.assert_allclose(runs, np.broadcast_to(runs[-1], (5, 3)), rtol=1e-9)
    # ... and the plain FE field converges as h^3 in the loaded element, where the Hermite
    # interpolant cannot follow the jump of the third derivative at the load
    # a = L/3 sits at 1/3 or 2/3 of its element on every mesh below, so the error's
    # constant is the same and the ratio is exactly the rate
    a = L / 3
    points = np.union1d(np.linspace(0, L, 2001), [a])
    ref = exact(points, 1e3, a, E, 5e5)
    errors = []
    for n in (8, 16, 32, 64):
        beam = BeamSimulator(L, I, sensors=[L], n_elements=n)
        fe = beam.deflection(points, [1e3, a], [E, 5e5], exact=False)
        errors.append(np.abs(fe - ref).max())
        full = beam.deflection(points, [1e3, a], [E, 5e5])
        assert np.abs(full - ref).max() / np.abs(ref).max() < 1e-10
    rates = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    np.testing.assert_allclose(rates, 3.0, atol=0.05)


def test_names_coords_and_bad_input():
    beam = BeamSimulator(L, I, sensors=[0.5, 2.0])
    assert beam.input_names == ("load", "load_position")
    assert beam.parameter_names == ("E", "support_stiffness")
    assert beam.output_names == ("deflection_0", "deflection_1")
    np.testing.assert_array_equal(beam.output_coords, [[0.5], [2.0]])
    with pytest.raises(ValueError, match=r"load_position must lie in \[0, 2.0\], got 2.5 in row 0"):
        beam.run([1.0, 2.5], [E, np.inf])
    with pytest.raises(ValueError, match="support_stiffness must be > 0"):
        beam.run([1.0, 1.0], [E, 0.0])
    with pytest.raises(ValueError, match=r"sensors must lie in \[0, length=2.0\]"):
        BeamSimulator(L, I, sensors=[3.0])
