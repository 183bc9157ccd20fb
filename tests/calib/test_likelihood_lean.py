"""The lean log-posterior's own paths: stacked priors and transforms, output selection in
the emulators, plug-ins without it, failures, gradients, and ball_drop_2 (issue 9)."""

from __future__ import annotations

import importlib.util
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.stats import qmc

from calib import Calibrator, Campaign, Discrepancy, Parameter
from calib._failures import warn_failures
from calib.discrepancy import KernelOnDistances, kernel_from_sq, sq_dists
from calib.likelihood import SimulatorWarning
from calib.parameters import StackedTransform
from calib.priors import Gamma, HalfCauchy, HalfNormal, LogNormal, Normal, Uniform, stack
from emulators import BasisGPEmulator, GPEmulator
from emulators.gp import ConvergenceWarning

D64 = torch.float64


# ---------------------------------------------------------------------- priors, transforms
FAMILIES = [
    [Normal(0.0, 1.0), Normal(0.0, 1.0)],
    [Normal(1.0, 2.0), Normal(-3.0, 0.5)],
    [LogNormal(0.0, 1.0), LogNormal(1.5, 0.3)],
    [HalfNormal(1.0), HalfNormal(3.0)],
    [HalfCauchy(0.5), HalfCauchy(2.0)],
    [Uniform(-1.0, 2.0), Uniform(0.0, 5.0)],
    [Gamma(2.0, 1.5), Gamma(0.7, 3.0)],
    [Normal(0.0, 1.0), HalfNormal(2.0)],  # mixed classes: called prior by prior
]


@pytest.mark.parametrize("priors", FAMILIES, ids=lambda ps: "-".join(type(p).__name__ for p in ps))
def test_stacked_log_prob_equals_each_prior(priors):
    x = torch.tensor(
        [[-2.0, 0.0], [0.0, 1e-320], [0.3, 1.7], [4.0, 7.0], [math.inf, 0.5]], dtype=D64
    )
    want = sum(p.log_prob(x[:, i]) for i, p in enumerate(priors))
    lp = stack(priors)
    t = lp(x)
    got = lp.const + (t.sum(-1) if t is not None else 0.0)
    torch.testing.assert_close(got, want, rtol=1e-14, atol=0, equal_nan=True)
    # and against scipy's densities where both are finite (scipy puts +inf at x = 0 for a
    # Gamma with shape < 1; calib's support is x > 0)
    for row, g in zip(x.numpy(), got.numpy()):
        ref = sum(p.scipy().logpdf(v) for p, v in zip(priors, row))
        if np.isfinite(ref) and np.isfinite(g):
            assert g == pytest.approx(ref, rel=1e-12)


def test_stacked_log_prob_inside_skips_only_the_support_check():
    # inside=True: the caller guarantees x in the closed support; values there are unchanged
    for priors in ([HalfNormal(1.0), HalfCauchy(2.0)], [Uniform(0.0, 1.0)]):
        for p in priors:
            x = torch.tensor([0.0, 0.25, 1.0], dtype=D64)
            lp = stack([p], inside=True)
            t = lp(x[:, None])
            got = lp.const + (t[:, 0] if t is not None else torch.zeros(3, dtype=D64))
            torch.testing.assert_close(got, p.log_prob(x), rtol=1e-14, atol=0)


def test_stacked_log_prob_uses_a_subclass_own_log_prob():
    class Shifted(Normal):
        def log_prob(self, x):
            return super().log_prob(x) + 1.0

    x = torch.zeros(3, 1, dtype=D64)
    lp = stack([Shifted(0.0, 1.0)])
    assert torch.allclose(lp.const + lp(x)[:, 0], Shifted(0.0, 1.0).log_prob(x[:, 0]))


@pytest.mark.parametrize(
    "params",
    [
        [Parameter("a", 0.5, 3.0), Parameter("b", -1.0, 1.0)],
        [
            Parameter("a", lower=0.0, prior=Gamma(2.0, 1.0)),
            Parameter("b", lower=2.0, prior=Normal(3, 1)),
        ],
        [Parameter("a", upper=1.0, prior=Normal(0.0, 1.0))],
        [Parameter("a", prior=Normal(0.0, 1.0))],
    ],
)
def test_stacked_transform_equals_parameter_to_constrained(params):
    u = torch.linspace(-40.0, 40.0, 17, dtype=D64)[:, None].expand(17, len(params))
    tr = StackedTransform(params[0].kind, [p.lower for p in params], [p.upper for p in params])
    theta, logdet = tr(u)
    assert torch.equal(tr.theta(u), theta)
    for i, p in enumerate(params):
        assert torch.equal(theta[:, i], p.to_constrained(u[:, i])[0])
    got = tr.const + (logdet.sum(-1) if logdet is not None else torch.zeros(17, dtype=D64))
    want = sum(p.to_constrained(u[:, i])[1] for i, p in enumerate(params))
    torch.testing.assert_close(got, want, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("kind", ["rbf", "matern52"])
def test_kernel_on_distances_equals_kernel_from_sq(kind):
    rng = np.random.default_rng(0)
    z = rng.uniform(0, 2, (9, 3))
    dsq = sq_dists(z, z)
    v = torch.as_tensor(rng.normal(0, 1, (5, 1)))
    vl = torch.as_tensor(rng.normal(0, 1, (5, 3)))
    got = KernelOnDistances(kind, dsq)(v, vl)
    want = kernel_from_sq(kind, torch.as_tensor(dsq), torch.exp(v[:, 0]), torch.exp(vl))
    torch.testing.assert_close(got, want, rtol=1e-13, atol=0)


# ---------------------------------------------------------------------- emulators: outputs=
def _fn(X, m=5):
    return np.column_stack(
        [np.sin(3 * X[:, 0] + X[:, 2]) + k * X[:, 3] * X[:, 1] for k in range(m)]
    )


@pytest.fixture(scope="module")
def emulators_fitted():
    X = qmc.LatinHypercube(d=4, seed=0).random(40)
    Y = _fn(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a rough fit serves here
        gp = GPEmulator(seed=0, n_restarts=1).fit(X, Y)
        basis = BasisGPEmulator(seed=0, n_restarts=1, max_components=3).fit(X, Y)
    return {"gp": gp, "basis": basis}


@pytest.mark.parametrize("which", ["gp", "basis"])
def test_predict_torch_outputs_selects_the_full_prediction(emulators_fitted, which):
    em = emulators_fitted[which]
    x = torch.as_tensor(np.random.default_rng(1).uniform(0, 1, (6, 4, 4)))
    with torch.no_grad():
        mean, cov = em.predict_torch(x)
    for outputs in [(3,), (0, 2, 4), (4, 1)]:
        for grad in (False, True):
            with torch.set_grad_enabled(grad):
                m, c = em.predict_torch(x, outputs=outputs)
                m2, c2 = em.predict_torch(x[0], outputs=list(outputs))  # (n, d) form
            assert m.shape == (6, 4, len(outputs)) and c.shape == (6, len(outputs), 4, 4)
            # the same arithmetic per output: equal, not merely close
            assert torch.equal(m, mean[..., list(outputs)])
            assert torch.equal(c, cov[:, list(outputs)])
            # another batch shape: a GP mean's rounding depends on its GEMMs' shapes
            torch.testing.assert_close(m2, mean[0][:, list(outputs)], rtol=1e-9, atol=0)
            scale = float(cov.abs().max())
            torch.testing.assert_close(c2, cov[0][list(outputs)], rtol=0, atol=1e-8 * scale)
    for bad in [(), (5,), (-1,)]:
        with pytest.raises(ValueError, match="outputs"):
            em.predict_torch(x, outputs=bad)


class _NoSelection:
    """A plug-in emulator with the contract's predict_torch(inputs) only."""

    def __init__(self, em):
        self.em = em
        self.n_inputs, self.n_outputs = em.n_inputs, em.n_outputs
        self.calls = 0

    def predict_torch(self, inputs):
        self.calls += 1
        return self.em.predict_torch(inputs)


class _IgnoresSelection(_NoSelection):
    """Takes outputs= but predicts every output anyway."""

    def predict_torch(self, inputs, outputs=None):
        self.calls += 1
        return self.em.predict_torch(inputs)


def _emu_problem(em, disc="shared", noise="per_campaign", coords=True, seed=3):
    rng = np.random.default_rng(seed)
    camps = []
    for l, n in enumerate((4, 3)):
        x = rng.uniform(0, 1, (n, 2))
        y = rng.normal(1.0, 0.5, (n, 5))
        y[rng.uniform(size=y.shape) < 0.4] = np.nan
        y[:, 3] = np.nan  # an output never observed
        y[0, 1] = 0.5
        if l == 0:
            y[-1] = np.nan  # a row with no observation at all
        sd = rng.uniform(0.1, 0.3, (n, 5)) if noise == "known" else None
        camps.append(Campaign(f"c{l}", x=x, y=y, noise_sd=sd))
    params = [Parameter("a", 0.0, 1.0, pooling="partial"), Parameter("b", 0.0, 1.0)]
    d = (
        Discrepancy(
            disc, "matern52", scale_prior=HalfNormal(0.5), lengthscale_prior=LogNormal(0, 1)
        )
        if disc != "none"
        else "none"
    )
    return Calibrator(
        em,
        params,
        camps,
        discrepancy=d,
        noise=noise,
        input_names=("x1", "x2"),
        output_coords=np.linspace(0, 1, 5) if coords else None,
    ), camps


@pytest.mark.parametrize("which", ["gp", "basis"])
@pytest.mark.parametrize("plugin", [_NoSelection, _IgnoresSelection])
def test_plugin_without_output_selection_gives_the_same_posterior(emulators_fitted, which, plugin):
    em = emulators_fitted[which]
    cal, camps = _emu_problem(em)
    wrapped = plugin(em)
    cal2, _ = _emu_problem(wrapped)
    assert cal.model._emu_outputs == (0, 1, 2, 4)  # output 3 is never asked for
    assert cal.model.forward.selects_outputs
    assert cal2.model.forward.selects_outputs == (plugin is _IgnoresSelection)
    U = cal.model.sample_prior(np.random.default_rng(0), 8) * 0.5
    lp = cal.log_posterior(U)
    lp2 = cal2.log_posterior(U)
    np.testing.assert_array_equal(lp, lp2)
    assert not cal2.model.forward.selects_outputs  # it learned that the plug-in ignores it
    assert wrapped.calls >= 1


def _dense_emulator_reference(cal, camps, em, u):
    """log prior (from unpack, checked against scipy in test_likelihood.py) + eq. 7 with the
    emulator's full prediction and every covariance term written out."""
    model = cal.model
    with torch.no_grad():
        parts = model.unpack(torch.as_tensor(u[None]))
        theta = parts["theta"][0].numpy()
        rows, camp_of = [], []
        for l, c in enumerate(camps):
            for i in range(c.y.shape[0]):
                rows.append(np.concatenate([c.x[i], theta[l]]))
                camp_of.append(l)
        mean, cov = (t.numpy() for t in em.predict_torch(torch.as_tensor(np.array(rows))))
    Y = np.concatenate([c.y for c in camps])
    local = [i for c in camps for i in range(c.y.shape[0])]  # row within its campaign
    ent = [(r, j) for r in range(Y.shape[0]) for j in range(Y.shape[1]) if np.isfinite(Y[r, j])]
    N = len(ent)
    C = np.zeros((N, N))
    coords = model.output_coords
    disc = model.discrepancy
    for a, (ra, ja) in enumerate(ent):
        for b, (rb, jb) in enumerate(ent):
            if ja == jb:
                C[a, b] += cov[ja, ra, rb]
            if disc.active:
                link = disc.mode == "shared" or camp_of[ra] == camp_of[rb]
                if coords is None:
                    link = link and ja == jb
                if link:
                    za = list(rows[ra][: model.p]) + ([] if coords is None else list(coords[ja]))
                    zb = list(rows[rb][: model.p]) + ([] if coords is None else list(coords[jb]))
                    s, ls = parts["disc_scale"][0].item(), parts["disc_ls"][0].numpy()
                    r = math.sqrt(sum((p - q) ** 2 / el**2 for p, q, el in zip(za, zb, ls)))
                    if disc.kernel == "rbf":
                        C[a, b] += s * s * math.exp(-0.5 * r * r)
                    else:
                        C[a, b] += (
                            s
                            * s
                            * (1 + math.sqrt(5) * r + 5 * r * r / 3)
                            * math.exp(-math.sqrt(5) * r)
                        )
        if model.noise == "known":
            C[a, a] += camps[camp_of[ra]].noise_sd[local[ra], ja] ** 2
        else:
            C[a, a] += parts["noise_sd"][0, camp_of[ra]].item() ** 2
        C[a, a] += model.jitter
    y = np.array([Y[r, j] for r, j in ent])
    mu = np.array([mean[r, j] for r, j in ent])
    return parts["log_prior"][0].item() + stats.multivariate_normal(mu, C).logpdf(y)


@pytest.mark.parametrize("which", ["gp", "basis"])
@pytest.mark.parametrize(
    "disc,noise,coords",
    [
        ("shared", "per_campaign", True),
        ("independent", "known", False),
        ("none", "hierarchical", True),
    ],
)
def test_multi_output_emulator_matches_dense_reference(
    emulators_fitted, which, disc, noise, coords
):
    em = emulators_fitted[which]
    cal, camps = _emu_problem(em, disc, noise, coords)
    U = cal.model.sample_prior(np.random.default_rng(5), 3) * 0.5
    got = cal.log_posterior(U)
    want = [_dense_emulator_reference(cal, camps, em, u) for u in U]
    np.testing.assert_allclose(got, want, rtol=1e-9)


def test_values_and_gradient_agree_with_and_without_autograd(emulators_fitted):
    cal, _ = _emu_problem(emulators_fitted["basis"])
    model = cal.model
    U = torch.as_tensor(model.sample_prior(np.random.default_rng(2), 6) * 0.5)
    with torch.no_grad():
        lp0 = model.log_posterior(U)  # in-place sums
    Ug = U.clone().requires_grad_(True)
    lp = model.log_posterior(Ug)
    torch.testing.assert_close(lp.detach(), lp0, rtol=1e-13, atol=0)
    lp.sum().backward()
    # central differences; h balances their truncation error against the ~1e-10 relative
    # rounding noise of the emulator's mean
    h = 1e-4
    for k in range(model.n_dim):
        e = torch.zeros_like(U)
        e[:, k] = h
        with torch.no_grad():
            fd = (model.log_posterior(U + e) - model.log_posterior(U - e)) / (2 * h)
        torch.testing.assert_close(Ug.grad[:, k], fd, rtol=1e-5, atol=1e-5)


class _Failing(_NoSelection):
    """Returns NaN means for walkers whose b exceeds 0.7."""

    def predict_torch(self, inputs, outputs=None):
        mean, cov = self.em.predict_torch(inputs, outputs=outputs)
        bad = (inputs[..., -1] > 0.7).any(dim=-1)
        return torch.where(bad[:, None, None], torch.nan, mean), cov


def test_emulator_failures_give_minus_inf_and_are_counted(emulators_fitted):
    cal, _ = _emu_problem(_Failing(emulators_fitted["gp"]))
    model = cal.model
    U = model.sample_prior(np.random.default_rng(4), 16)
    with torch.no_grad():
        b = model.unpack(torch.as_tensor(U))["theta"][:, 0, 1].numpy()
    with pytest.warns(SimulatorWarning, match=f"for {int((b > 0.7).sum())} of 16"):
        lp = cal.log_posterior(U)
    assert (b > 0.7).any() and (b <= 0.7).any()
    assert np.all(np.isneginf(lp[b > 0.7])) and np.all(np.isfinite(lp[b <= 0.7]))
    assert model.failures == int((b > 0.7).sum())
    cal.log_posterior(U[b <= 0.7])
    assert model.failures == 0


class _Indefinite(_NoSelection):
    """Returns a negative definite covariance for walkers whose b exceeds 0.7."""

    def predict_torch(self, inputs):
        mean, cov = self.em.predict_torch(inputs)
        bad = (inputs[..., -1] > 0.7).any(dim=-1)
        eye = torch.eye(cov.shape[-1], dtype=cov.dtype)
        return mean, torch.where(bad[:, None, None, None], -100.0 * eye, cov)


def test_failed_factorization_gives_minus_inf_and_is_counted(emulators_fitted):
    cal, _ = _emu_problem(_Indefinite(emulators_fitted["gp"]), disc="shared")
    model = cal.model
    U = model.sample_prior(np.random.default_rng(4), 16)
    with torch.no_grad():
        b = model.unpack(torch.as_tensor(U))["theta"][:, 0, 1].numpy()
    with pytest.warns(SimulatorWarning, match=f"for {int((b > 0.7).sum())} of 16"):
        lp = cal.log_posterior(U)
    assert (b > 0.7).any() and (b <= 0.7).any()
    assert np.all(np.isneginf(lp[b > 0.7])) and np.all(np.isfinite(lp[b <= 0.7]))
    assert model.failures == int((b > 0.7).sum())
    assert model.factor_failures == model.failures  # the forward model itself was fine


def test_failed_factorizations_are_warned_of_above_a_share_in_sampling():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_failures(0, 10_000, factor=10)  # 0.1 %: rejected proposals, no warning
    with pytest.warns(SimulatorWarning, match=r"could not be factorized .* 11 of 10000"):
        warn_failures(0, 10_000, factor=11)
    # in sampling the forward model's failures are named alone
    with pytest.warns(SimulatorWarning) as rec:
        warn_failures(3, 10_000, factor=0)
    assert [str(w.message) for w in rec] == [
        "the forward model failed (raised, or returned NaN/inf) for 3 of 10000 evaluations; "
        "those got log-posterior -inf"
    ]


@pytest.mark.filterwarnings("ignore::calib.ConvergenceWarning")  # a short run
def test_sampling_warns_of_failed_factorizations_by_their_share(emulators_fitted):
    """With the covariance indefinite wherever b > 0.7 (30 % of b's prior), the DE moves'
    proposals land there often: the run warns of the factorizations, not of the forward
    model."""
    cal, _ = _emu_problem(_Indefinite(emulators_fitted["gp"]), disc="shared")
    with pytest.warns(SimulatorWarning) as rec:
        cal.sample(n_steps=30, n_walkers=24, moves="de", seed=0, progress=False)
    messages = [str(w.message) for w in rec if issubclass(w.category, SimulatorWarning)]
    assert any("could not be factorized" in m for m in messages)
    assert not any("forward model failed" in m for m in messages)


# ---------------------------------------------------------------------- ball_drop_2
def _problems_module():
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "problems_ball_drop.py"
    spec = importlib.util.spec_from_file_location("problems_ball_drop", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_ball_drop_2_problem_and_its_log_posterior():
    mod = _problems_module()
    try:
        mod.data_dir()
    except FileNotFoundError:
        pytest.skip("shared/data/ball_drop/sepia_bd2 is not beside the repository")
    cal = mod.ball_drop_2("basis")
    model = cal.model
    assert [p.name for p in cal.parameters] == ["C", "g"]
    assert (cal.parameters[0].lower, cal.parameters[0].upper) == (0.2, 2.0)
    assert (cal.parameters[1].lower, cal.parameters[1].upper) == (8.0, 12.0)
    assert model.N == 12 and model.m == 101 and model.B == 1 and model.p == 2
    assert model._emu_outputs == (20, 40, 60)  # only the observed heights are predicted
    camp = cal.campaigns[0]
    assert np.isfinite(camp.y).sum() == 12 and camp.y[0, 20] == pytest.approx(2.2903015)
    U = model.sample_prior(np.random.default_rng(0), 3) * 0.5
    got = cal.log_posterior(U)
    want = [_dense_emulator_reference(cal, [camp], cal.model_object, u) for u in U]
    np.testing.assert_allclose(got, want, rtol=1e-9)


def _gaussian_by_autograd(C, r, n_obs):
    """Eq. 7 through torch's own Cholesky and its autograd (the reference for the closed
    form gradient), with the same retry on failure."""
    from calib._gaussian import _LOG_2PI

    Lc, info = torch.linalg.cholesky_ex(C)
    retried = info != 0
    if retried.any():
        scale = torch.diagonal(C, dim1=-2, dim2=-1).mean(dim=-1)
        eye = torch.eye(C.shape[-1], dtype=C.dtype)
        Lc, info = torch.linalg.cholesky_ex(C + (1e-6 * scale * retried)[..., None, None] * eye)
    v = torch.linalg.solve_triangular(Lc, r.unsqueeze(-1), upper=False)
    logdet = 2.0 * torch.log(torch.diagonal(Lc, dim1=-2, dim2=-1)).sum(dim=(1, 2))
    return -0.5 * ((v * v).sum(dim=(1, 2, 3)) + logdet + n_obs * _LOG_2PI)


@pytest.mark.parametrize("retry", [False, True])
def test_closed_form_gradient_of_eq7_equals_autograd(retry):
    from calib._gaussian import _cholesky_retry, _GaussianLogLik

    rng = np.random.default_rng(0)
    W, B, n = 4, 2, 6
    A = torch.as_tensor(rng.normal(size=(W, B, n, n)))
    C = A @ A.transpose(-1, -2) + 0.5 * torch.eye(n, dtype=D64)
    if retry:
        # block (1, 0) loses positive definiteness by a hair: the retry's jitter restores it
        z = torch.as_tensor(rng.normal(size=(n, 3)))
        C[1, 0] = z @ z.T - 1e-9 * torch.eye(n, dtype=D64)
    assert (_cholesky_retry(C)[2] is not None) == retry
    r = torch.as_tensor(rng.normal(size=(W, B, n)))
    w = torch.as_tensor(rng.normal(size=W))  # an arbitrary upstream gradient
    Ca, ra = C.clone().requires_grad_(True), r.clone().requires_grad_(True)
    (_gaussian_by_autograd(Ca, ra, 11) * w).sum().backward()
    Cb, rb = C.clone().requires_grad_(True), r.clone().requires_grad_(True)
    ll, bad = _GaussianLogLik.apply(Cb, rb, 11)
    (ll * w).sum().backward()
    assert not bad.any()
    torch.testing.assert_close(ll, _gaussian_by_autograd(C, r, 11), rtol=1e-13, atol=0)
    torch.testing.assert_close(rb.grad, ra.grad, rtol=1e-9, atol=1e-9)
    # autograd's gradient of a Cholesky is the symmetrized one: compare that
    Ga = 0.5 * (Ca.grad + Ca.grad.transpose(-1, -2))
    torch.testing.assert_close(Cb.grad, Ga, rtol=1e-7, atol=1e-7 * float(Ga.abs().max()))


@pytest.mark.parametrize("disc", ["independent", "none"])
def test_direct_mode_gradient_matches_finite_differences(disc):
    from simulators import FunctionSimulator

    def f(X, T):
        return np.column_stack([T[:, 0] * np.sin(X[:, 0] + T[:, 1]), T[:, 1] * X[:, 0] ** 2])

    sim = FunctionSimulator(f, ("x",), ("a", "b"), ("o0", "o1"), vectorized=True)
    rng = np.random.default_rng(0)
    camps = []
    for l, n in enumerate((5, 3)):  # blocks of unequal size: padded
        x = rng.uniform(0, 2, n)
        y = rng.normal(1.0, 0.5, (n, 2))
        y[0, 1] = np.nan
        camps.append(Campaign(f"c{l}", x=x, y=y))
    params = [Parameter("a", 0.5, 3.0, pooling="partial"), Parameter("b", prior=Normal(0.2, 0.7))]
    cal = Calibrator(sim, params, camps, discrepancy=disc, noise="hierarchical")
    model = cal.model
    U = torch.as_tensor(model.sample_prior(np.random.default_rng(1), 5) * 0.5)
    Ug = U.clone().requires_grad_(True)
    model.log_posterior(Ug).sum().backward()
    h = 1e-5
    for k in range(model.n_dim):
        e = torch.zeros_like(U)
        e[:, k] = h
        with torch.no_grad():
            fd = (model.log_posterior(U + e) - model.log_posterior(U - e)) / (2 * h)
        # the simulator's own derivative is a central difference (docs/model.md §9)
        torch.testing.assert_close(Ug.grad[:, k], fd, rtol=1e-5, atol=1e-5)
