"""calib.kernels: the one RBF / Matérn 5/2 implementation of δ and the emulator's torch path.

Values against the closed forms written densely (R&W 2006, eqs. 4.9 and 4.17), gradients
in every input against finite differences (torch.autograd.gradcheck, float64), batched and
broadcast shapes, and the emulator's kernel_matrix on the same implementation.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from calib.kernels import (
    KERNELS,
    KernelOnDistances,
    input_factor,
    kernel_from_scaled_sq,
    kernel_from_sq,
    sq_dists,
    sq_factor,
)

D64 = torch.float64


def _dense(kind: str, z1, z2, scale: float, ls: np.ndarray) -> np.ndarray:
    """The kernel written out pair by pair, in numpy."""
    out = np.empty((len(z1), len(z2)))
    for i, a in enumerate(z1):
        for j, b in enumerate(z2):
            r = math.sqrt(float(np.sum((a - b) ** 2 / ls**2)))
            if kind == "rbf":
                out[i, j] = scale**2 * math.exp(-0.5 * r * r)
            else:
                q = math.sqrt(5.0) * r
                out[i, j] = scale**2 * (1.0 + q + q * q / 3.0) * math.exp(-q)
    return out


def _hyper(rng, S, D):
    return rng.lognormal(0.0, 0.5, S), rng.lognormal(0.0, 0.5, (S, D))


def test_factors_and_kinds():
    assert KERNELS == ("rbf", "matern52")
    assert sq_factor("rbf") == 0.5 and sq_factor("matern52") == 5.0
    for kind in KERNELS:
        assert input_factor(kind) ** 2 == pytest.approx(sq_factor(kind), rel=1e-15)
    for fn in (sq_factor, input_factor):
        with pytest.raises(ValueError, match=r"kind must be one of \('rbf', 'matern52'\)"):
            fn("matern32")
    with pytest.raises(ValueError, match="kind must be one of"):
        kernel_from_scaled_sq("exp", torch.zeros(2, dtype=D64), torch.zeros(1, dtype=D64))
    with pytest.raises(ValueError, match="kind must be one of"):
        KernelOnDistances("exp", np.zeros((1, 2, 2)))


@pytest.mark.parametrize("kind", KERNELS)
def test_values_equal_the_dense_closed_form(kind):
    rng = np.random.default_rng(1)
    z1, z2 = rng.uniform(0, 2, (7, 3)), rng.uniform(0, 2, (5, 3))
    z1[0] = z2[0]  # r = 0 exactly: k = σ²
    scale, ls = _hyper(rng, 4, 3)
    want = np.stack([_dense(kind, z1, z2, scale[i], ls[i]) for i in range(4)])
    dsq = torch.as_tensor(sq_dists(z1, z2))
    for grad in (False, True):  # the in-place (sampler) and the autograd paths
        with torch.set_grad_enabled(grad):
            got = kernel_from_sq(kind, dsq, torch.as_tensor(scale), torch.as_tensor(ls))
        np.testing.assert_allclose(got.detach().numpy(), want, rtol=1e-13, atol=0)
        assert got[:, 0, 0].tolist() == pytest.approx((scale**2).tolist(), rel=1e-15)
    k = KernelOnDistances(kind, sq_dists(z1, z2))
    got = k(torch.as_tensor(np.log(scale))[:, None], torch.as_tensor(np.log(ls)))
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-13, atol=0)


@pytest.mark.parametrize("kind", KERNELS)
def test_in_place_and_autograd_paths_agree_bit_for_bit(kind):
    rng = np.random.default_rng(2)
    s = torch.as_tensor(rng.exponential(1.0, (3, 6, 5)))
    s[0, 0, 0] = 0.0
    s[1, 0, 0] = -1e-17  # rounding below 0 in ‖a‖² + ‖b‖² − 2a·b
    log_var = torch.as_tensor(rng.normal(0, 1, (3, 1, 1)))
    with torch.no_grad():
        scratch = s.clone()
        fast = kernel_from_scaled_sq(kind, scratch, log_var, overwrite=True)
        assert not torch.equal(scratch, s)  # the scratch buffer was used
        kept = s.clone()
        plain = kernel_from_scaled_sq(kind, kept, log_var)
        assert torch.equal(kept, s)  # not overwritten without overwrite=True
    with torch.enable_grad():
        graph = kernel_from_scaled_sq(kind, s.clone().requires_grad_(True), log_var, True)
    assert torch.equal(fast, plain) and torch.equal(fast, graph.detach())
    assert torch.equal(fast[:2, 0, 0], torch.exp(log_var[:2, 0, 0]))  # s ≤ 0: k = σ²


@pytest.mark.parametrize("kind", KERNELS)
@pytest.mark.parametrize(
    "s_shape, lv_shape",
    [((2, 4, 3), (2, 1, 1)), ((2, 4, 3), (2, 4, 3)), ((4, 3), (2, 1, 1)), ((5,), ())],
)
def test_gradcheck_in_s_and_log_variance(kind, s_shape, lv_shape):
    rng = np.random.default_rng(3)
    # away from s = 0, where the floor makes ∂/∂s one-sided
    s = torch.as_tensor(rng.uniform(0.05, 4.0, s_shape)).requires_grad_(True)
    log_var = torch.as_tensor(rng.normal(0, 1, lv_shape)).requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda a, b: kernel_from_scaled_sq(kind, a, b), (s, log_var), eps=1e-6, atol=1e-9
    )
    # each input alone (the other a constant): the emulator's fixed log outputscale
    assert torch.autograd.gradcheck(
        lambda a: kernel_from_scaled_sq(kind, a, log_var.detach()), (s,), eps=1e-6, atol=1e-9
    )
    assert torch.autograd.gradcheck(
        lambda b: kernel_from_scaled_sq(kind, s.detach(), b), (log_var,), eps=1e-6, atol=1e-9
    )


@pytest.mark.parametrize("kind", KERNELS)
def test_gradient_in_log_variance_is_the_kernel(kind):
    s = torch.tensor([[0.0, 0.3, 2.0]], dtype=D64)
    log_var = torch.tensor([[0.7]], dtype=D64, requires_grad=True)
    k = kernel_from_scaled_sq(kind, s, log_var)
    (g,) = torch.autograd.grad(k.sum(), log_var)
    torch.testing.assert_close(g, k.detach().sum().reshape(1, 1), rtol=1e-15, atol=0)


@pytest.mark.parametrize("kind", KERNELS)
def test_gradient_at_zero_distance_is_finite(kind):
    # dk/dr = 0 at r = 0 for both kernels; Matérn's ∂k/∂s there is −σ²/6 on the floor's
    # inside and 0 below it, never NaN
    s = torch.tensor([0.0, 1e-320, 1e-12], dtype=D64, requires_grad=True)
    (g,) = torch.autograd.grad(kernel_from_scaled_sq(kind, s, torch.zeros((), dtype=D64)).sum(), s)
    assert torch.isfinite(g).all()
    if kind == "matern52":
        assert g[0] == 0.0 and g[1] == 0.0
        assert float(g[2]) == pytest.approx(-1.0 / 6.0, rel=1e-5)
    else:
        assert float(g[2]) == pytest.approx(-1.0, rel=1e-11)


@pytest.mark.parametrize("kind", KERNELS)
def test_gradcheck_through_the_delta_kernel(kind):
    # δ's path: log σ, log ℓ -> KernelOnDistances and kernel_from_sq, blocks after D
    rng = np.random.default_rng(4)
    z = rng.uniform(0, 2, (2, 5, 2))  # 2 blocks of 5 points, D = 2
    dsq = np.stack([sq_dists(z[b], z[b]) for b in range(2)], axis=1)  # (D, B, n, n)
    kern = KernelOnDistances(kind, dsq)
    lsc = torch.as_tensor(rng.normal(0, 0.5, (3, 1))).requires_grad_(True)
    lls = torch.as_tensor(rng.normal(0, 0.5, (3, 2))).requires_grad_(True)
    assert kern(lsc, lls).shape == (3, 2, 5, 5)
    assert torch.autograd.gradcheck(kern, (lsc, lls), eps=1e-6, atol=1e-9)
    t_dsq = torch.as_tensor(dsq)
    assert torch.autograd.gradcheck(
        lambda a, b: kernel_from_sq(kind, t_dsq, torch.exp(a[:, 0]), torch.exp(b)),
        (lsc, lls),
        eps=1e-6,
        atol=1e-9,
    )
    with torch.no_grad():
        fast = kern(lsc, lls)
    torch.testing.assert_close(fast, kern(lsc, lls).detach(), rtol=0, atol=0)


@pytest.mark.parametrize("kind", ["rbf", "matern52"])
def test_emulator_kernel_matrix_uses_the_same_kernel(kind):
    from emulators.gp import kernel_matrix

    rng = np.random.default_rng(5)
    ls = rng.lognormal(0.0, 0.3, (2, 3))  # (m, d)
    os_ = rng.lognormal(0.0, 0.3, 2)
    x1, x2 = rng.uniform(0, 1, (6, 3)), rng.uniform(0, 1, (4, 3))
    z1 = torch.as_tensor(x1[None] / ls[:, None])
    z2 = torch.as_tensor(x2[None] / ls[:, None])
    got = kernel_matrix(z1, z2, kind, torch.as_tensor(os_))
    want = np.stack([_dense(kind, x1, x2, math.sqrt(os_[j]), ls[j]) for j in range(2)])
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-15)
    # the log outputscale is differentiable too (it was not, in the emulator's own Matérn)
    los = torch.as_tensor(np.log(os_)).requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda v: kernel_matrix(z1, z2, kind, torch.exp(v)), (los,), eps=1e-6, atol=1e-9
    )
