"""``Calibrator(..., device=)``: the log-posterior, its gradient, the δ draws and the
predictions computed on a chosen torch device (issue 16, item 5).

Without a GPU: ``device="cpu"`` equals the default bit for bit, bad devices are refused
before any work, and, under a "meta" default device (where a tensor made without an
explicit ``device=`` holds no data and any use of it fails), a CPU calibration computes
everything, which shows that every constant is built on the model's device. With CUDA:
the same quantities on ``"cuda"`` equal the CPU's to rounding (float64 both), sampling
runs, and a study sampled there loads on the CPU.

The CUDA tolerances: the two devices order their floating-point sums differently, so
values differ by a few ulps of each operation, amplified by the conditioning of the
matrices (the emulators' training covariances, cond ~1e6 with ``min_nugget=1e-6``, as in
tests/emulators): 1e-9 relative for the log-posterior and its gradient, and for the
predictions' means and sds.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from scipy.stats import qmc

import calib
from calib import Calibrator, Campaign, ConvergenceWarning, Discrepancy, Parameter
from calib.posterior import Posterior
from calib.priors import HalfNormal, LogNormal
from emulators import BasisGPEmulator, GPEmulator
from emulators.gp import ConvergenceWarning as FitWarning
from simulators import FunctionSimulator

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
DEVICES = ["cpu", pytest.param("cuda", marks=needs_cuda)]
RTOL = 1e-9


def eta(X, T):
    """Three outputs of one control input and two parameters (the basis emulator's case);
    the direct mode and the GP emulator use the first."""
    y = T[:, :1] * np.sin(2.0 * X[:, :1]) + T[:, 1:2] * X[:, :1] ** 2
    return np.column_stack([y, y + 0.5 * X[:, :1], 2.0 * y - T[:, 1:2]])


def _sim():
    return FunctionSimulator(lambda X, T: eta(X, T)[:, :1], ("x",), ("a", "b"), ("y",), True)


PARAMS = [Parameter("a", 0.5, 2.0, pooling="partial"), Parameter("b", -1.0, 1.0)]
DISC = Discrepancy("shared", "rbf", scale_prior=HalfNormal(0.3), lengthscale_prior=LogNormal(0, 1))


def _campaigns(m: int, seed: int = 1) -> list[Campaign]:
    rng = np.random.default_rng(seed)
    out = []
    for l, (a, n) in enumerate([(1.1, 5), (1.4, 4), (0.9, 6)]):
        x = rng.uniform(0, 1, n)
        y = eta(x[:, None], np.tile([a, 0.3], (n, 1)))[:, :m] + 0.05 * rng.standard_normal((n, m))
        y[-1, 0] = np.nan if l == 1 else y[-1, 0]
        out.append(Campaign(f"c{l}", x=x, y=y))
    return out


@pytest.fixture(scope="module")
def models():
    u = qmc.LatinHypercube(d=3, seed=0).random(40)
    X = np.column_stack([u[:, 0], 0.5 + 1.5 * u[:, 1], -1.0 + 2.0 * u[:, 2]])
    Y = eta(X[:, :1], X[:, 1:])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)  # a rough fit serves here
        gp = GPEmulator(seed=0, n_restarts=1, min_nugget=1e-6).fit(X, Y[:, :1])
        basis = BasisGPEmulator(seed=0, n_restarts=1, min_nugget=1e-6).fit(X, Y)
    return {"gp": gp, "basis": basis, "direct": _sim()}


def _calibrator(models, which: str, **kw) -> Calibrator:
    """Partial pooling, a shared δ and per-campaign noise, unless ``kw`` says otherwise."""
    kw = {"discrepancy": DISC, "noise": "per_campaign", **kw}
    if which != "direct":
        kw["input_names"] = ("x",)
    params = kw.pop("parameters", PARAMS)
    return Calibrator(models[which], params, _campaigns(3 if which == "basis" else 1), **kw)


def _draws(cal: Calibrator, n: int = 6, seed: int = 2) -> np.ndarray:
    return cal.model.sample_prior(np.random.default_rng(seed), n) * 0.5


def _value_and_grad(cal: Calibrator, U: np.ndarray, device: str = "cpu"):
    X = torch.tensor(U, dtype=torch.float64, device=device, requires_grad=True)
    lp = cal.log_posterior(X)
    (g,) = torch.autograd.grad(lp.sum(), X)
    assert lp.device == X.device and g.device == X.device
    return lp.detach().cpu().numpy(), g.cpu().numpy()


def _close(got: np.ndarray, want: np.ndarray, rtol: float = RTOL) -> None:
    """Equal to ``rtol`` relative to the largest magnitude (a gradient's small components
    carry the rounding of its large ones)."""
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * np.abs(want).max())


def _posterior(cal: Calibrator, U: np.ndarray) -> Posterior:
    chain = np.stack([U, U[::-1]])  # (2 steps, walkers, n_dim)
    return Posterior(cal, chain, np.zeros(chain.shape[:2]), np.ones(U.shape[0]), burn=0)


# ---------------------------------------------------------------------- without a GPU
@pytest.mark.parametrize("which", ["gp", "basis", "direct"])
def test_explicit_cpu_device_equals_the_default_bit_for_bit(models, which):
    default, cpu = _calibrator(models, which), _calibrator(models, which, device="cpu")
    assert default.device == cpu.device == torch.device("cpu")
    U = _draws(default)
    np.testing.assert_array_equal(cpu.log_posterior(U), default.log_posterior(U))
    for got, want in zip(_value_and_grad(cpu, U), _value_and_grad(default, U)):
        np.testing.assert_array_equal(got, want)
    # the emulator is used as it is: no copy on its own device
    assert cpu.model.forward.model is models[which]


@pytest.mark.parametrize(
    "device, error, match",
    [
        ("tpu", ValueError, r"device: expected 'cpu', 'cuda' or 'cuda:<index>', got 'tpu'"),
        ("cuda:x", ValueError, r"device: expected .* got 'cuda:x'"),
        ("mps", ValueError, r"device: expected .* got 'mps'"),
        (1.5, ValueError, r"device: expected .* got 1.5"),
    ],
)
def test_bad_device_is_a_clear_error_before_any_work(models, device, error, match):
    with pytest.raises(error, match=match):
        Calibrator(models["direct"], PARAMS, _campaigns(1), device=device)
    # checked first: before the model, parameters and campaigns are even looked at
    with pytest.raises(error, match=match):
        Calibrator(object(), [], [], device=device)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:1", torch.device("cuda")])
def test_cuda_absent_is_a_clear_device_error(models, device):
    with pytest.raises(RuntimeError, match=r"device='cuda(:1)?' was asked for but CUDA is not"):
        Calibrator(models["direct"], PARAMS, _campaigns(1), device=device)


@needs_cuda
def test_cuda_index_out_of_range_is_a_clear_device_error(models):
    n = torch.cuda.device_count()
    with pytest.raises(RuntimeError, match=rf"device='cuda:{n}' .* only {n} CUDA device"):
        Calibrator(models["direct"], PARAMS, _campaigns(1), device=f"cuda:{n}")


@pytest.mark.parametrize("which", ["gp", "basis", "direct"])
@pytest.mark.parametrize("noise", ["per_campaign", "hierarchical"])
def test_no_tensor_is_made_off_the_model_device(models, which, noise):
    # under a "meta" default device every tensor made without device= is a meta tensor
    # (no data): a CPU calibration that computes its values, gradient, δ draws and
    # predictions made all of its tensors on its own device, as a CUDA one must
    kw = {
        "parameters": [Parameter("a", 0.5, 2.0, pooling="partial", centered=True), PARAMS[1]],
        "discrepancy": Discrepancy("independent", "matern52"),
        "noise": noise,
    }
    ref = _calibrator(models, which, **kw)
    U = _draws(ref)
    want = _value_and_grad(ref, U)
    with torch.device("meta"):
        cal = _calibrator(models, which, device="cpu", **kw)
        lp, g = _value_and_grad(cal, U)
        post = _posterior(cal, U)
        x = np.linspace(0.0, 1.0, 3)
        preds = [
            post.predict(x, campaign="c0", noise=True, n_draws=None),
            post.discrepancy(x, campaign="c2", n_draws=None),
            post.predict_new_campaign(x, n_draws=None),
        ]
        post.summary()
    np.testing.assert_array_equal(lp, want[0])
    np.testing.assert_array_equal(g, want[1])
    assert all(np.isfinite(p.draws).all() for p in preds)


class _Elsewhere:
    """A GP emulator that says it computes on another device and breaks if used there:
    the Calibrator must rebuild a copy on its own device from the state."""

    def __init__(self, em):
        self._em = em
        self.device = torch.device("meta")
        self.n_inputs, self.n_outputs = em.n_inputs, em.n_outputs

    def predict_torch(self, inputs, outputs=None):
        raise AssertionError("the emulator on the other device was used")

    def state_dict(self):
        return self._em.state_dict()

    @classmethod
    def from_state_dict(cls, state, device=None):
        return GPEmulator.from_state_dict(state, device=device)


def test_an_emulator_on_another_device_is_copied_to_the_calibrator_device(models):
    elsewhere = _Elsewhere(models["gp"])
    cal = _calibrator({"gp": elsewhere}, "gp", device="cpu")
    copy = cal.model.forward.model
    assert isinstance(copy, GPEmulator) and copy.device == torch.device("cpu")
    assert cal.model_object is elsewhere  # what an archive records is left as given
    U = _draws(cal)
    # rebuilt from the state on the same device: the same arithmetic, bit for bit
    np.testing.assert_array_equal(cal.log_posterior(U), _calibrator(models, "gp").log_posterior(U))


def test_an_emulator_that_cannot_be_copied_is_a_clear_device_error(models):
    class Fixed(_Elsewhere):
        @classmethod
        def from_state_dict(cls, state):
            return None

    with pytest.raises(ValueError, match=r"device='cpu': the emulator Fixed computes on meta"):
        _calibrator({"gp": Fixed(models["gp"])}, "gp", device="cpu")


# ---------------------------------------------------------------------- with CUDA
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("which", ["gp", "basis", "direct"])
def test_device_log_posterior_and_gradient_equal_cpu(models, which, device):
    ref, cal = _calibrator(models, which), _calibrator(models, which, device=device)
    assert cal.device.type == device and cal.model.device == cal.device
    if which != "direct":
        own = cal.model.forward.model
        dev = own.device if which == "gp" else own.gp_.device
        assert dev.type == device and (own is models[which]) == (device == "cpu")
    U = _draws(ref)
    _close(cal.log_posterior(U), ref.log_posterior(U))  # NumPy in, NumPy out
    lp0, g0 = _value_and_grad(ref, U)
    for on in ("cpu", device):  # a tensor on any device; the result on the same
        lp, g = _value_and_grad(cal, U, on)
        _close(lp, lp0)
        _close(g, g0)


@needs_cuda
def test_device_cpu_calibration_of_an_emulator_on_cuda_copies_it_to_the_cpu(models):
    on_cuda = GPEmulator.from_state_dict(models["gp"].state_dict(), device="cuda")
    cal = _calibrator({"gp": on_cuda}, "gp", device="cpu")
    assert cal.model.forward.model.device.type == "cpu"
    U = _draws(cal)
    _close(cal.log_posterior(U), _calibrator(models, "gp").log_posterior(U))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("which", ["gp", "basis", "direct"])
def test_device_predictions_and_discrepancy_draws_equal_cpu(models, which, device):
    ref, cal = _calibrator(models, which), _calibrator(models, which, device=device)
    U = _draws(ref, n=5)
    x = np.linspace(0.0, 1.0, 4)
    # the exact Gaussian conditionals of δ and of reality, draw by draw, on U's device
    for what in ("discrepancy", "reality"):
        m0, c0, f0 = ref.model.predictive(torch.as_tensor(U), x[:, None], 1, what)
        for on in ("cpu", device):
            m, c, f = cal.model.predictive(torch.as_tensor(U, device=on), x[:, None], 1, what)
            assert m.device.type == c.device.type == f.device.type == on
            _close(m.cpu().numpy(), m0.numpy())
            _close(c.cpu().numpy(), c0.numpy())
            np.testing.assert_array_equal(f.cpu().numpy(), f0.numpy())
    # and what the posterior makes of them, as NumPy
    for what in ("predict", "discrepancy", "predict_new_campaign"):
        kw = {} if what == "predict_new_campaign" else {"campaign": "c1"}
        a = getattr(_posterior(ref, U), what)(x, n_draws=None, seed=3, **kw)
        b = getattr(_posterior(cal, U), what)(x, n_draws=None, seed=3, **kw)
        assert isinstance(b.draws, np.ndarray) and b.draws.shape == a.draws.shape
        _close(b.mean, a.mean)
        _close(b.sd, a.sd)
        if which != "basis":
            # a draw is mean + V·√w·ξ from the eigendecomposition of its covariance (the
            # same ξ); the basis emulator's three outputs have δ blocks with (nearly)
            # equal eigenvalues, whose eigenvectors, and so the draws, turn with any
            # rounding: there the conditionals above are what is compared
            np.testing.assert_allclose(b.draws, a.draws, rtol=0, atol=1e-6 * a.sd.max())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("moves", ["hmc", "de"])
def test_device_short_sampling_gives_finite_draws(models, moves, device):
    cal = _calibrator(models, "gp", device=device)
    kw = {"warmup": 30} if moves == "hmc" else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # 60 steps do not converge
        post = cal.sample(n_walkers=24, n_steps=60, seed=1, moves=moves, n_starts=2, **kw)
    assert post.chain.shape == (60, 24, cal.n_dim)
    assert np.isfinite(post.chain).all() and np.isfinite(post.log_prob).all()
    assert np.isfinite(post.draws("a", campaign="c0")).all()


@pytest.mark.parametrize("device", DEVICES)
def test_device_is_not_recorded_in_the_archive(models, device, tmp_path):
    # direct mode: loading it needs no installed entry points (the GPU check runs the
    # repository from PYTHONPATH, uninstalled)
    cal = _calibrator(models, "direct", device=device)
    path = tmp_path / "study.h5"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        post = cal.sample(n_walkers=24, n_steps=40, seed=2, n_starts=2, archive=path)
        back = calib.load(path, simulator=models["direct"])
    assert back.calibrator.device == torch.device("cpu")
    np.testing.assert_array_equal(back.chain, post.chain)
    x = np.linspace(0.0, 1.0, 3)
    want = post.predict(x, campaign="c0", n_draws=20)
    _close(back.predict(x, campaign="c0", n_draws=20).mean, want.mean)


# δ conditioned on pseudo-observations (calib/pseudo.py): constraints and the S-GaSP
DISC_P = Discrepancy(
    "independent", "matern52", zero_at=[[0.0]], zero_slope_at=[[0.5]], process="sgasp"
)


@pytest.mark.parametrize("which", ["gp", "direct"])
def test_no_tensor_is_made_off_the_model_device_with_a_conditioned_delta(models, which):
    ref = _calibrator(models, which, discrepancy=DISC_P)
    U = _draws(ref)
    want = _value_and_grad(ref, U)
    with torch.device("meta"):
        cal = _calibrator(models, which, device="cpu", discrepancy=DISC_P)
        lp, g = _value_and_grad(cal, U)
        post = _posterior(cal, U)
        x = np.linspace(0.0, 1.0, 3)
        draws = post.discrepancy(x, campaign="c0", n_draws=None).draws
    np.testing.assert_array_equal(lp, want[0])
    np.testing.assert_array_equal(g, want[1])
    assert np.isfinite(draws).all()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("which", ["gp", "direct"])
def test_device_conditioned_delta_equals_cpu(models, which, device):
    ref = _calibrator(models, which, discrepancy=DISC_P)
    cal = _calibrator(models, which, discrepancy=DISC_P, device=device)
    U = _draws(ref)
    lp0, g0 = _value_and_grad(ref, U)
    lp, g = _value_and_grad(cal, U, device)
    _close(lp, lp0)
    _close(g, g0)
    x = np.linspace(0.0, 1.0, 4)
    a = _posterior(ref, U).discrepancy(x, campaign="c0", n_draws=None, seed=3)
    b = _posterior(cal, U).discrepancy(x, campaign="c0", n_draws=None, seed=3)
    _close(b.mean, a.mean)
    _close(b.sd, a.sd)
