"""``Parameter(name, value=...)``: passed to the forward model, never sampled, archived.

The check: a calibration with ``k2`` fixed at 0.7 has the same log-posterior, at every
point, as one whose simulator has 0.7 written into it; the fixed value survives the
archive; an emulator receives it in its column.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import calib
from calib import Calibrator, Campaign, Parameter
from calib.priors import Normal
from simulators import FunctionSimulator


def _two(X, T):
    return T[:, :1] * X[:, :1] + T[:, 1:2] * X[:, :1] ** 2


def _one(X, T):  # the same simulator with k2 = 0.7 written in
    return T[:, :1] * X[:, :1] + 0.7 * X[:, :1] ** 2


def _campaigns():
    rng = np.random.default_rng(0)
    x = np.linspace(0, 1, 8)
    return [
        Campaign(c, x=x, y=1.2 * x + 0.7 * x**2 + 0.05 * rng.standard_normal(8)) for c in ("A", "B")
    ]


def test_a_fixed_parameter_is_passed_not_sampled(tmp_path):
    sim2 = FunctionSimulator(_two, ("x",), ("k1", "k2"), ("y",), vectorized=True)
    sim1 = FunctionSimulator(_one, ("x",), ("k1",), ("y",), vectorized=True)
    k1 = Parameter("k1", prior=Normal(1.0, 1.0), pooling="partial")
    fixed = Calibrator(sim2, [k1, Parameter("k2", value=0.7)], _campaigns(), discrepancy="shared")
    plain = Calibrator(sim1, [k1], _campaigns(), discrepancy="shared")
    assert fixed.n_dim == plain.n_dim and fixed.model.labels == plain.model.labels
    U = torch.as_tensor(plain.model.sample_prior(np.random.default_rng(1), 16))
    U.requires_grad_(True)
    a = fixed.model.log_posterior(U)
    (ga,) = torch.autograd.grad(a.sum(), U)
    b = plain.model.log_posterior(U)
    (gb,) = torch.autograd.grad(b.sum(), U)
    np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())
    # the finite-difference gradient perturbs the sampled parameters only
    np.testing.assert_allclose(ga.numpy(), gb.numpy(), rtol=1e-7, atol=1e-7)
    post = fixed.sample(n_walkers=8, n_steps=40, warmup=20, seed=2, archive=tmp_path / "s.h5")
    assert "k2" not in {r["name"] for r in post.summary().rows}
    back = calib.load(tmp_path / "s.h5", simulator=sim2)
    k2 = [p for p in back.calibrator.parameters if p.name == "k2"][0]
    assert k2.value == 0.7 and "value=0.7" in repr(k2)
    np.testing.assert_array_equal(back.chain, post.chain)


def test_an_emulator_gets_the_fixed_value_in_its_column():
    from emulators import GPEmulator

    rng = np.random.default_rng(3)
    X = rng.uniform(0, 1, (40, 3))  # x, k1, k2
    em = GPEmulator(seed=0).fit(X, _two(X[:, :1], X[:, 1:]))
    cal = Calibrator(
        em,
        [Parameter("k1", 0.0, 2.0), Parameter("k2", 0.0, 1.0, value=0.7)],
        _campaigns(),
        noise="shared",
        input_names=("x",),
    )
    assert cal.n_dim == 2  # k1 and the noise sd
    U = torch.as_tensor(cal.model.sample_prior(np.random.default_rng(4), 4))
    theta = cal.model.unpack(U)["theta"]  # (W, L, 1): k1 only
    n = cal.model.X_rows.shape[0]
    inputs = torch.cat(
        [
            torch.as_tensor(cal.model.X_rows).expand(4, n, -1),
            theta[:, :1].expand(4, n, 1),
            torch.full((4, n, 1), 0.7, dtype=torch.float64),
        ],
        dim=-1,
    )
    want, _ = em.predict_torch(inputs)
    got, _, _ = cal.model.forward(cal.model.X_rows, theta[:, :1].expand(4, n, 1))
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"value": float("nan")}, "value: expected a number, got nan"),
        ({"value": "0.7"}, "value: expected a number, got '0.7'"),
        ({"value": 2.0, "lower": 0, "upper": 1}, r"value: expected a number in the bounds"),
        ({"value": 0.5, "pooling": "partial"}, "expected pooling='complete'"),
        ({"value": 0.5, "prior": Normal(0, 1)}, "it takes no prior"),
    ],
)
def test_a_bad_fixed_value_is_refused(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        Parameter("k2", **kwargs)


def test_a_fixed_value_may_be_infinite():
    assert Parameter("stiffness", value=np.inf).value == np.inf


def test_an_emulator_takes_the_simulators_output_names():
    from emulators import GPEmulator

    rng = np.random.default_rng(3)
    X = rng.uniform(0, 1, (30, 2))
    em = GPEmulator(seed=0).fit(X, _one(X[:, :1], X[:, 1:]))
    kw = dict(noise="shared", input_names=("x",))
    cal = Calibrator(em, [Parameter("k1", 0.0, 2.0)], _campaigns(), output_names=("y",), **kw)
    assert cal.output_names == ("y",)
    with pytest.raises(ValueError, match="output_names: expected 1 distinct names"):
        Calibrator(em, [Parameter("k1", 0.0, 2.0)], _campaigns(), output_names=("a", "b"), **kw)


def test_an_emulator_studys_output_names_survive_the_archive(tmp_path):
    from emulators import GPEmulator

    rng = np.random.default_rng(3)
    X = rng.uniform(0, 1, (30, 2))
    em = GPEmulator(seed=0).fit(X, _one(X[:, :1], X[:, 1:]))
    cal = Calibrator(
        em,
        [Parameter("k1", 0.0, 2.0)],
        _campaigns(),
        noise="shared",
        input_names=("x",),
        output_names=("deflection",),
    )
    cal.sample(n_walkers=8, n_steps=30, warmup=15, seed=0, archive=tmp_path / "e.h5")
    assert calib.load(tmp_path / "e.h5").calibrator.output_names == ("deflection",)
