"""The density of u = log x that priors of positive quantities state in u
(``StackedLogProb.of_log``), against their own density of x with the Jacobian."""

import pytest
import torch

from calib.priors import BetaRho, Gamma, GammaPrecision, HalfNormal, LogNormal, stack

FAMILIES = {
    "LogNormal": [LogNormal(1.0, 0.5), LogNormal(-2.0, 3.0)],
    "Gamma": [Gamma(2.0, 3.0), Gamma(0.5, 1e-2)],
    "BetaRho": [BetaRho(), BetaRho(1.0, 0.1, 15.0), BetaRho(2.0, 3.0, 0.3)],
    "GammaPrecision": [GammaPrecision(), GammaPrecision(5.0, 5.0, 0.5)],
}


@pytest.mark.parametrize("name", FAMILIES)
def test_the_density_of_log_x_is_that_of_x_times_its_jacobian(name):
    priors = FAMILIES[name]
    lp = stack(priors, inside=True)
    assert lp.of_log is not None
    u = torch.linspace(-12.0, 12.0, 97, dtype=torch.float64)[:, None].repeat(1, len(priors))
    u.requires_grad_(True)
    got = lp.of_log(u)
    want = lp.fn(torch.exp(u)) + u  # x = exp(u), log|dx/du| = u
    ok = torch.isfinite(want)
    assert ok.float().mean() > 0.8  # the comparison covers most of the grid
    torch.testing.assert_close(got[ok], want[ok], rtol=1e-12, atol=1e-9)
    (g_got,) = torch.autograd.grad(got[ok].sum(), u, retain_graph=True)
    (g_want,) = torch.autograd.grad(want[ok].sum(), u)
    torch.testing.assert_close(g_got, g_want, rtol=1e-10, atol=1e-9)
    # and against each prior's own log_prob, one column at a time
    for i, p in enumerate(priors):
        x = torch.exp(u[:, i].detach())
        ref = p.log_prob(x) + u[:, i].detach()
        fin = torch.isfinite(ref)
        torch.testing.assert_close(
            got[fin, i].detach(), (ref - _const(p))[fin], rtol=1e-12, atol=1e-9
        )


def _const(p) -> float:
    """The part of ``p``'s log density that ``stack`` puts in ``const``."""
    return stack([p], inside=True).const


def test_a_family_without_a_log_form_falls_back():
    assert stack([HalfNormal(1.0)], inside=True).of_log is None
