"""The GPMSA/SEPIA priors of calib.priors (issue 16, item 4): ``BetaRho`` on a δ
length-scale, ``GammaPrecision`` on an sd.

References written here, independently of calib: the density of ℓ is scipy's Beta density
of ρ = exp(−span²/(8ℓ²)) times dρ/dℓ = ρ·span²/(4ℓ³); the density of σ is scipy's Gamma
density of λ = unit²/σ² times |dλ/dσ| = 2unit²/σ³. Then normalization by quadrature,
draws against the cdf (KS), gradients deep in both tails, the stacked form, the archive
round trip and a study file.
"""

from __future__ import annotations

import math
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import integrate, stats

import calib
from calib.config import to_config
from calib.priors import BetaRho, GammaPrecision, Prior, stack
from calib.study import StudyError, read_study

# the SEPIA-style calibration shared with the other prior tests (tests/reference)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reference"))
from sepia_delta import sepia_calibrator  # noqa: E402

STUDIES = Path(__file__).resolve().parents[1] / "data" / "studies"

BETA_RHOS = [BetaRho(), BetaRho(1.0, 0.1, 15.0), BetaRho(2.0, 3.0, 0.3), BetaRho(0.5, 1.5, 2.0)]
GAMMA_PRECISIONS = [
    GammaPrecision(),
    GammaPrecision(5.0, 5.0, 0.5),
    GammaPrecision(1.0, 1e-3, 3.0),
    GammaPrecision(0.7, 2.0, 1e-2),
]
ALL = BETA_RHOS + GAMMA_PRECISIONS


def _t(x) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x, dtype=float), dtype=torch.float64)


def _reference_logpdf(p: Prior, x: np.ndarray) -> np.ndarray:
    """The change of variables, with scipy's Beta and Gamma densities."""
    if isinstance(p, BetaRho):
        rho = np.exp(-(p.span**2) / (8.0 * x**2))
        return stats.beta(p.a, p.b).logpdf(rho) + np.log(rho) + np.log(p.span**2 / (4.0 * x**3))
    lam = p.unit**2 / x**2
    return stats.gamma(p.shape, scale=1.0 / p.rate).logpdf(lam) + np.log(2.0 * p.unit**2 / x**3)


def _reference_cdf(p: Prior, x: np.ndarray) -> np.ndarray:
    """ℓ ≤ x iff ρ ≤ ρ(x), iff 1 − ρ ≥ 1 − ρ(x) (1 − ρ ~ Beta(b, a): the digits near ρ = 1);
    σ ≤ x iff λ ≥ unit²/x²."""
    if isinstance(p, BetaRho):
        t = p.span**2 / (8.0 * x**2)
        w = -np.expm1(-t)
        return np.where(w < 0.5, stats.beta(p.b, p.a).sf(w), stats.beta(p.a, p.b).cdf(np.exp(-t)))
    return stats.gamma(p.shape, scale=1.0 / p.rate).sf(p.unit**2 / x**2)


def _scale(p: Prior) -> float:
    return p.span if isinstance(p, BetaRho) else p.unit


@pytest.mark.parametrize("p", ALL, ids=repr)
def test_density_is_the_beta_or_gamma_density_through_the_change_of_variables(p):
    # ℓ/span up to 30: 1 − ρ ≥ 1.4e-4, so that scipy's log(1 − ρ) from a rounded ρ keeps
    # 12 digits; calib's own formula needs no such care (the gradient test goes further)
    x = _scale(p) * np.logspace(-1.0, 1.5, 41)
    np.testing.assert_allclose(p.log_prob(_t(x)).numpy(), _reference_logpdf(p, x), rtol=1e-10)
    np.testing.assert_allclose(p.scipy().logpdf(x), _reference_logpdf(p, x), rtol=1e-10)


@pytest.mark.parametrize("p", ALL, ids=repr)
def test_density_integrates_to_one(p):
    # over ℓ (σ) in v = log x: ∫ p(x) dx = ∫ p(e^v) e^v dv. The right tail of
    # BetaRho(b = 0.1) falls as ℓ^(−1.2), e^(−0.2 v): past v = log span + 600 its mass is
    # (e^(−1200)/8)^0.1 < 1e-52, so the last piece stops there (e^v overflows at 709)
    def f(v):
        x = math.exp(v)
        return math.exp(float(p.log_prob(_t([x]))[0])) * x

    c = math.log(_scale(p))
    total = sum(
        integrate.quad(f, lo, hi, epsabs=1e-10, epsrel=1e-10, limit=200)[0]
        for lo, hi in ((-math.inf, c - 2.0), (c - 2.0, c), (c, c + 2.0), (c + 2.0, c + 600.0))
    )
    assert total == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("p", ALL, ids=repr)
def test_draws_and_quantiles_follow_the_cdf(p):
    rng = np.random.default_rng(20261128)
    draws = p.sample(rng, 4000)
    assert draws.shape == (4000,) and np.all(draws > 0) and np.all(np.isfinite(draws))
    assert stats.kstest(draws, lambda x: _reference_cdf(p, x)).pvalue > 1e-3
    # the inverse cdf behind prior starts and a design's open side (truncated_ppf)
    u = rng.uniform(size=4000)
    assert stats.kstest(p.ppf(u), lambda x: _reference_cdf(p, x)).pvalue > 1e-3
    q = np.array([1e-9, 1e-3, 0.1, 0.5, 0.9, 0.999, 1.0 - 1e-9])
    np.testing.assert_allclose(_reference_cdf(p, p.ppf(q)), q, rtol=1e-8)
    np.testing.assert_allclose(p.scipy().cdf(p.ppf(q)), q, rtol=1e-10)
    np.testing.assert_allclose(p.scipy().sf(p.scipy().isf(q)), q, rtol=1e-10)
    lo, hi = _scale(p), 3.0 * _scale(p)
    t = p.truncated_ppf(np.array([0.0, 0.5, 1.0]), lo, hi)
    np.testing.assert_allclose(t[[0, 2]], [lo, hi], rtol=1e-9)


def test_moments_are_finite_only_where_they_exist():
    light = BetaRho(2.0, 3.0, 0.3).scipy()  # b = 3: ℓ has moments of order < 6
    mean = integrate.quad(lambda x: x * light.pdf(x), 0.0, math.inf, limit=200)[0]
    assert float(light.mean()) == pytest.approx(mean, rel=1e-7)
    m2 = integrate.quad(lambda x: x * x * light.pdf(x), 0.0, math.inf, limit=200)[0]
    assert float(light.var()) == pytest.approx(m2 - mean**2, rel=1e-6)
    g = GammaPrecision(5.0, 5.0, 0.5)  # E σ = unit √rate Γ(α − ½)/Γ(α)
    want = 0.5 * math.sqrt(5.0) * math.exp(math.lgamma(4.5) - math.lgamma(5.0))
    assert float(g.scipy().mean()) == pytest.approx(want, rel=1e-12)
    # SEPIA's defaults: ℓ's tail ∝ ℓ^(−1.2) (no mean), σ's ∝ σ^(−3) (a mean, no variance)
    assert math.isinf(float(BetaRho().scipy().mean()))
    assert math.isinf(float(GammaPrecision().scipy().var()))


@pytest.mark.parametrize("p", ALL, ids=repr)
def test_gradient_is_finite_deep_in_both_tails_and_support_is_positive(p):
    # the brief's tails, ℓ ∈ {1e-3, 1e3}·span and σ ∈ {1e-4, 1e4}·unit, and ℓ past where
    # t = span²/(8ℓ²) is below the series' switch (1e10·span: t ~ 1e-21)
    far = [1e-3, 1e-2, 1.0, 1e3, 1e10] if isinstance(p, BetaRho) else [1e-4, 1e-3, 1.0, 1e4]
    x = _t(_scale(p) * np.array(far)).requires_grad_(True)
    lp = p.log_prob(x)
    (g,) = torch.autograd.grad(lp.sum(), x)
    assert torch.isfinite(lp).all() and torch.isfinite(g).all()
    # outside the support, and x = 0 where exp(u) underflowed: density zero, gradient 0
    z = _t([0.0, -1.0, -math.inf]).requires_grad_(True)
    lz = p.log_prob(z)
    (gz,) = torch.autograd.grad(lz.sum(), z)
    assert torch.all(lz == -math.inf) and torch.all(gz == 0.0)


@pytest.mark.parametrize("family", [BETA_RHOS, GAMMA_PRECISIONS], ids=["BetaRho", "GammaPrec"])
@pytest.mark.parametrize("inside", [False, True])
def test_stacked_form_equals_the_priors_one_by_one(family, inside):
    rng = np.random.default_rng(3)
    scales = np.array([_scale(p) for p in family])
    x = _t(scales * np.exp(rng.normal(0.0, 2.0, (7, len(family)))))
    x[0, 0] = 0.0  # exp(u) underflowed: still -inf with inside=True
    if not inside:
        x[1, 1] = -1.0
    assert "_stack" in vars(type(family[0]))  # its own vectorized formula, not the fallback
    lp = stack(family, inside=inside)
    got = lp.const + lp(x).sum(-1)
    want = sum(p.log_prob(x[:, i]) for i, p in enumerate(family))
    assert torch.equal(torch.isinf(got), torch.isinf(want))
    ok = torch.isfinite(want)
    assert ok.sum() >= 5
    torch.testing.assert_close(got[ok], want[ok], rtol=1e-13, atol=1e-10)
    # on the priors' device: under a "meta" default device every tensor made without
    # device= would be a meta tensor (no values)
    with torch.device("meta"):
        on_cpu = stack(family, inside=inside, device="cpu")
        again = on_cpu.const + on_cpu(x).sum(-1)
    assert again.device.type == "cpu"
    torch.testing.assert_close(again, got, rtol=0.0, atol=0.0)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: BetaRho(span=0.0), r"BetaRho: span must be finite and > 0, got 0\.0"),
        (lambda: BetaRho(a=-1.0), r"BetaRho: a must be finite and > 0, got -1\.0"),
        (lambda: BetaRho(b=math.inf), r"BetaRho: b must be finite and > 0, got inf"),
        (lambda: GammaPrecision(unit=-2.0), r"GammaPrecision: unit must be finite and > 0"),
        (lambda: GammaPrecision(rate=math.nan), r"GammaPrecision: rate must be finite and > 0"),
    ],
)
def test_bad_arguments_are_refused_naming_them(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_a_non_number_is_a_type_error_naming_it():
    with pytest.raises(TypeError, match=r"GammaPrecision: shape must be a real number, got 'x'"):
        GammaPrecision(shape="x")


@pytest.mark.parametrize("p", ALL, ids=repr)
def test_dict_and_repr_round_trip(p):
    d = p.to_dict()
    assert d["type"] == type(p).__name__
    assert Prior.from_dict(d) == p
    assert eval(repr(p), {"BetaRho": BetaRho, "GammaPrecision": GammaPrecision}) == p


# ---------------------------------------------------------------------- in a calibration
@pytest.mark.filterwarnings("ignore::calib.ConvergenceWarning")  # 4 steps: a round trip only
def test_archive_round_trip_keeps_the_priors(tmp_path):
    path = tmp_path / "study.h5"
    post = sepia_calibrator().sample(
        12, 4, seed=1, archive=path, moves="de", progress=False, autocorr_stop=False
    )
    back = calib.load(path)
    for cal in (post.calibrator, back.calibrator):
        d = cal.discrepancy
        assert repr(d.lengthscale_prior) == (
            "{'r': BetaRho(a=1.0, b=0.1, span=0.3), 'h': BetaRho(a=1.0, b=0.1, span=15.0)}"
        )
        assert repr(d.scale_prior).startswith("GammaPrecision(shape=1.0, rate=0.001, unit=")
        assert Prior.from_dict(to_config(cal)["noise_prior"]).to_dict() == {
            "type": "GammaPrecision",
            "shape": 5.0,
            "rate": 5.0,
            "unit": d.scale_prior.unit,
        }
    assert repr(back.calibrator.discrepancy) == repr(post.calibrator.discrepancy)
    np.testing.assert_array_equal(back.chain, post.chain)
    np.testing.assert_array_equal(back.log_prob, post.log_prob)
    assert np.all(np.isfinite(post.log_prob))


def test_a_study_file_names_them_by_type(tmp_path):
    folder = tmp_path / "studies"
    shutil.copytree(STUDIES, folder, ignore=shutil.ignore_patterns("__pycache__", "*.h5*"))
    study = folder / "line.toml"
    text = study.read_text()
    sepia = """[discrepancy]
mode = "shared"
scale_prior = { type = "GammaPrecision", shape = 1.0, rate = 1e-3, unit = 0.2 }
lengthscale_prior = { type = "BetaRho", a = 1.0, b = 0.1, span = 1.0 }

[noise]
model = "shared"
prior = { type = "GammaPrecision", shape = 5.0, rate = 5.0, unit = 0.2 }
"""
    study.write_text(text.replace('[noise]\nmodel = "known"\n', sepia, 1))
    cal = read_study(study).calibrator
    assert cal.discrepancy.lengthscale_prior == BetaRho(1.0, 0.1, 1.0)
    assert cal.discrepancy.scale_prior == GammaPrecision(1.0, 1e-3, 0.2)
    assert to_config(cal)["noise_prior"] == GammaPrecision(5.0, 5.0, 0.2).to_dict()
    # every key spelled out, as for the other families
    study.write_text(study.read_text().replace(", span = 1.0 }", " }"))
    with pytest.raises(StudyError, match=r"discrepancy.lengthscale_prior: a BetaRho prior needs"):
        read_study(study)
