"""The vectorized split-chain estimators behind :mod:`calib.diagnostics`.

Sorting and rank normalization ([V21] §4), autocovariances by one real FFT for all chains
and quantities, Geyer's initial monotone sequence and the multi-chain ESS ([V21] §3.2),
split-R̂ ([V21] §3.1), type-7 quantiles and the MCSE of quantiles ([V21] §4.4), and
:class:`_Draws`, which holds one call's draws and computes each intermediate result at
most once. [V21]: Vehtari, Gelman, Simpson, Carpenter & Bürkner (2021), *Bayesian
Analysis* 16(2), 667-718. Conventions and degenerate cases: :mod:`calib.diagnostics`.
"""

from __future__ import annotations

from functools import cached_property, lru_cache

import numpy as np
from scipy import special, stats

_BLOM = 3.0 / 8.0  # Blom's offset of the rank-normal transform [V21] §4
_MIN_STEPS = 4  # as ArviZ: fewer draws per chain give NaN
_CONST_RTOL = 16 * np.finfo(float).eps
# Φ(−1), Φ(+1): the ±1 sd interval of the Beta posterior of the quantile's rank ([V21] §4.4)
_MCSE_PROBS = np.array([0.1586553, 0.8413447])


# ---------------------------------------------------------------------------- low level
def _fast_len(n: int) -> int:
    """Smallest 5-smooth integer ``>= n`` (a length the FFT handles quickly)."""
    best = 1 << max(int(n - 1).bit_length(), 0)
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            q = -(-n // p35)  # ceil(n / p35): the power of two must reach it
            cand = p35 * (1 << max(int(q - 1).bit_length(), 0))
            best = min(best, cand)
            p35 *= 3
        p5 *= 5
    return best


def _argsort_rows(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorting permutation and sorted values of every row of ``a`` (order among equal values
    unspecified).

    The float64 bits are mapped to unsigned integers of the same order (sign-magnitude to
    offset binary), their lowest ``⌈log2 S⌉`` bits replaced by the column index and the
    integers sorted; values that agree in their upper bits come out by index and are put back
    in value order by a stable (timsort, linear on such nearly sorted rows) argsort. Faster than
    ``np.argsort`` on floats, and exact.

    Parameters
    ----------
    a : C-contiguous float64 array of shape (g, S), finite

    Returns
    -------
    order : intp array of shape (g, S)
    sorted : float64 array of shape (g, S)
    """
    g, size = a.shape
    bits = max(int(size - 1).bit_length(), 1)
    if bits > 40:  # too few bits left for the value: plain argsort
        order = np.argsort(a, axis=1)
        return order, np.take_along_axis(a, order, axis=1)
    u = np.ascontiguousarray(a).view(np.uint64)
    key = (u.view(np.int64) >> 63).view(np.uint64)  # all ones for negative numbers
    key |= np.uint64(1 << 63)
    key ^= u
    low = np.uint64((1 << bits) - 1)
    key &= ~low
    key |= np.arange(size, dtype=np.uint64)
    key.sort(axis=1)
    key &= low
    order = key.view(np.int64) if np.dtype(np.intp) == np.int64 else key.astype(np.intp)
    s = np.take_along_axis(a, order, axis=1)
    bad = (s[:, 1:] < s[:, :-1]).any(axis=1)
    if bad.any():
        fix = np.argsort(s[bad], axis=1, kind="stable")
        order[bad] = np.take_along_axis(order[bad], fix, axis=1)
        s[bad] = np.take_along_axis(s[bad], fix, axis=1)
    return order, s


def _is_const(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Whether a set with minimum ``lo`` and maximum ``hi`` is constant to rounding."""
    with np.errstate(over="ignore"):  # hi − lo = inf is simply not constant
        return (hi - lo) <= _CONST_RTOL * np.maximum(np.abs(lo), np.abs(hi))


def _chain_mean_autocov(y: np.ndarray, max_lag: int) -> np.ndarray:
    """Biased autocovariance, averaged over chains, at lags ``0 … max_lag``.

    ``acov[t] = mean_m (1/N) Σ_i (y_mi − ȳ_m)(y_m,i+t − ȳ_m)``: one real FFT of every chain,
    zero-padded to at least ``N + max_lag`` points so that no lag up to ``max_lag`` wraps
    around (Wiener-Khinchin), the power spectra averaged over chains *before* the single
    inverse FFT per row (the inverse transform is linear).

    Parameters
    ----------
    y : array of shape (g, M, N), already centred per chain
    max_lag : int, at most N − 1

    Returns
    -------
    array of shape (g, max_lag + 1)
    """
    g, m, n = y.shape
    nfft = _fast_len(n + max_lag)
    f = np.fft.rfft(y, n=nfft, axis=-1)
    fv = f.view(np.float64)  # (g, M, 2·nf): real and imaginary parts interleaved
    power = np.einsum("gmf,gmf->gf", fv, fv).reshape(g, -1, 2).sum(axis=-1) / m
    return np.fft.irfft(power, n=nfft, axis=-1)[:, : max_lag + 1] / n


def _geyer_tau(rho: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Geyer's initial monotone sequence estimate of τ from ``ρ̂_0 … ρ̂_L`` ([V21] §3.2).

    The pair sums ``P_j = ρ̂_{2j} + ρ̂_{2j+1}`` are taken while positive (Stan/ArviZ stop
    looking at lag ``2j + 1 ≥ N − 3``), made monotone by a running minimum, and
    ``τ̂ = −1 + 2 Σ_{j<J} P_j + ρ̂_{2J}``, ``J`` the first pair that fails, its even term
    counted once when positive or when ``P_J = 0`` (exactly as Stan and ArviZ).

    Parameters
    ----------
    rho : array of shape (g, L + 1)
        Autocorrelations at lags ``0 … L`` (``ρ̂_0`` is set to 1 in place).
    n : int
        Draws per chain ``N`` (``L ≤ N − 1``).

    Returns
    -------
    tau : array of shape (g,)
    resolved : bool array of shape (g,)
        False where the sequence had not ended by lag ``L`` (``tau`` is then meaningless).
    """
    g = rho.shape[0]
    rho[:, 0] = 1.0
    npairs = min(n // 2, rho.shape[1] // 2)
    pairs = rho[:, 0 : 2 * npairs : 2] + rho[:, 1 : 2 * npairs : 2]  # P_j, (g, npairs)
    j = np.arange(npairs)
    stop = (pairs <= 0) | (2 * j + 1 >= n - 3)  # with all lags, always reached
    resolved = stop.any(axis=1)
    big_j = np.argmax(stop, axis=1)
    rows = np.arange(g)
    monotone = np.cumsum(np.minimum.accumulate(pairs, axis=1), axis=1)
    head = np.where(big_j > 0, monotone[rows, np.maximum(big_j - 1, 0)], 0.0)
    rho_2j = rho[rows, 2 * big_j]
    last = np.where((pairs[rows, big_j] >= 0) | (rho_2j > 0), rho_2j, 0.0)
    return -1.0 + 2.0 * head + last, resolved


def _ess_split(y: np.ndarray, const: np.ndarray) -> np.ndarray:
    """Multi-chain ESS of split chains ([V21] §3.2).

    With ``W`` the mean within-chain variance, ``B/N`` the variance of the chain means,
    ``var⁺ = (N−1)/N · W + B/N`` and ``ρ̂_t = 1 − (W − mean_m ĉ_{m,t}) / var⁺`` (ĉ the biased
    per-chain autocovariance), ``τ̂`` from Geyer's initial monotone sequence
    (:func:`_geyer_tau`), bounded below by ``1/log10(S)``; ``ESS = S / τ̂``.

    The autocovariances are first computed up to lag ``N/4`` (a shorter FFT); only the rows
    whose sequence has not ended by then are redone with all lags.

    Parameters
    ----------
    y : array of shape (g, M, N)
        ``M`` (split) chains of ``N >= 2`` draws for each of ``g`` rows.
    const : bool array of shape (g,)
        Rows known to be constant: their ESS is ``S = M·N``.

    Returns
    -------
    array of shape (g,)
    """
    g, m, n = y.shape
    s = m * n
    chain_mean = y.mean(axis=-1)
    yc = y - chain_mean[..., None]
    acov = _chain_mean_autocov(yc, max_lag=n - 1 if n < 64 else n // 4)
    mean_var = acov[:, 0] * n / (n - 1.0)
    var_plus = mean_var * (n - 1.0) / n + chain_mean.var(axis=-1, ddof=1)
    degenerate = const | ~(var_plus > 0)
    var_plus = np.where(degenerate, 1.0, var_plus)[:, None]
    tau, resolved = _geyer_tau(1.0 - (mean_var[:, None] - acov) / var_plus, n)
    redo = ~(resolved | degenerate)
    if redo.any():
        acov = _chain_mean_autocov(yc[redo], max_lag=n - 1)
        tau[redo] = _geyer_tau(1.0 - (mean_var[redo, None] - acov) / var_plus[redo], n)[0]
    tau = np.maximum(tau, 1.0 / np.log10(s))
    return np.where(degenerate, float(s), s / tau)


def _rhat_of(z: np.ndarray, const: np.ndarray) -> np.ndarray:
    """Split-R̂ of (normalized) split chains ([V21] §3.1 with §4's normalization).

    ``R̂ = sqrt(((N−1)/N · W + B/N) / W)`` with ``B = N · var_m(z̄_m)`` and ``W = mean_m
    s²_m``.

    Parameters
    ----------
    z : array of shape (g, M, N)
    const : bool array of shape (g,)
        Rows whose draws are all equal: NaN (decided by the caller).

    Returns
    -------
    array of shape (g,); ``inf`` where every chain is constant but they differ.
    """
    n = z.shape[-1]
    chain_mean = z.mean(axis=-1)
    between = n * chain_mean.var(axis=-1, ddof=1)
    chain_var = z.var(axis=-1, ddof=1)
    within = chain_var.mean(axis=-1)
    # W = 0 exactly when every chain is constant; rounding leaves ~1e-32 on normal scores,
    # far below the variance of any chain with two distinct scores: check those rows exactly
    stuck = (chain_var < 1e-20).all(axis=-1)
    if stuck.any():
        zs = z[stuck]
        stuck[stuck] = (zs.max(axis=-1) == zs.min(axis=-1)).all(axis=-1)
    r = np.sqrt((between / np.where(stuck, 1.0, within) + n - 1.0) / n)
    r = np.where(stuck, np.inf, r)
    return np.where(const, np.nan, r)


@lru_cache(maxsize=4)
def _normal_scores(size: int) -> np.ndarray:
    """``Φ⁻¹((r − 3/8)/(S − 3/4 + 1))`` for the ranks ``r = 1…S`` (read-only, cached)."""
    z = special.ndtri((np.arange(1, size + 1) - _BLOM) / (size - 2 * _BLOM + 1))
    z.flags.writeable = False
    return z


def _rank_normal(order: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Rank-normal scores ``Φ⁻¹((r − 3/8)/(S − 3/4 + 1))`` ([V21] §4), in the original layout.

    Ranks are ``1…S`` along the sorted rows; the (usually few) groups of equal values get
    their average rank, found from the pairs of equal neighbours.

    Parameters
    ----------
    order : intp array of shape (g, S)
        Sorting permutation of every row.
    s : array of shape (g, S)
        The sorted rows.

    Returns
    -------
    array of shape (g, S): the score of every draw, at the draw's own position.
    """
    g, size = s.shape
    denom = size - 2 * _BLOM + 1
    out = np.empty((g, size))
    base = _normal_scores(size)
    np.put_along_axis(out, order, np.broadcast_to(base, (g, size)), axis=1)
    row, i = np.nonzero(s[:, 1:] == s[:, :-1])  # s[row, i] == s[row, i + 1], row-major
    if row.size:
        starts = np.ones(row.size, dtype=bool)
        starts[1:] = (row[1:] != row[:-1]) | (i[1:] != i[:-1] + 1)
        ends = np.ones(row.size, dtype=bool)
        ends[:-1] = starts[1:]
        group = np.cumsum(starts) - 1
        # 2 × the 1-based average rank of the group spanning sorted positions first…last
        twice_rank = i[starts] + (i[ends] + 1) + 2
        z = special.ndtri((twice_rank / 2.0 - _BLOM) / denom)[group]
        out[row, order[row, i]] = z
        out[row, order[row, i + 1]] = z
    return out


def _type7_quantile(sorted_rows: np.ndarray, prob: float) -> np.ndarray:
    """Type-7 (linear) quantile of every sorted row, in the arithmetic of R / ArviZ."""
    size = sorted_rows.shape[1]
    aleph = size * prob + (1.0 - prob)
    k = int(np.floor(min(max(aleph, 1.0), size - 1.0)))
    gamma = min(max(aleph - k, 0.0), 1.0)
    lo, hi = sorted_rows[:, k - 1], sorted_rows[:, k]
    return np.where(lo == hi, lo, (1.0 - gamma) * lo + gamma * hi)


# ---------------------------------------------------------------------------- shared work
class _Draws:
    """The draws of one call, with the intermediate results computed at most once."""

    def __init__(self, chain: np.ndarray) -> None:
        x = np.asarray(chain, dtype=float)
        if x.ndim not in (2, 3):
            raise ValueError(
                f"chain: expected shape (n_steps, n_chains) or (n_steps, n_chains, k), "
                f"got {x.shape}"
            )
        self.scalar = x.ndim == 2
        if self.scalar:
            x = x[:, :, None]
        n, m, k = x.shape
        if m < 1:
            raise ValueError("chain: at least one chain is needed")
        # min/max over all draws: NaN if any draw is NaN, ±inf if any is infinite
        lo, hi = x.min(axis=(0, 1), initial=np.inf), x.max(axis=(0, 1), initial=-np.inf)
        self.valid = np.isfinite(lo) & np.isfinite(hi)
        if not self.valid.all():
            x = np.where(self.valid, x, 0.0)
            lo, hi = np.where(self.valid, lo, 0.0), np.where(self.valid, hi, 0.0)
        self.all_const = lo == hi
        self.x = x
        self.n_steps, self.n_chains, self.k = n, m, k
        self.half = n // 2
        self.usable = n >= _MIN_STEPS and k > 0

    def out(self, values: np.ndarray) -> np.ndarray:
        """NaN for invalid quantities; a scalar for 2-D input."""
        values = np.where(self.valid & self.usable, values, np.nan)
        return values[0] if self.scalar else values

    def nan(self) -> np.ndarray:
        return self.out(np.full(self.k, np.nan))

    # -- split chains, (k, M, N)
    @cached_property
    def split(self) -> np.ndarray:
        h, m = self.half, self.n_chains
        y = np.empty((self.k, 2 * m, h))
        y[:, :m] = self.x[:h].transpose(2, 1, 0)
        y[:, m:] = self.x[self.n_steps - h :].transpose(2, 1, 0)
        return y

    @property
    def flat(self) -> np.ndarray:
        return self.split.reshape(self.k, -1)

    @property
    def size(self) -> int:
        return 2 * self.n_chains * self.half

    @cached_property
    def argsort(self) -> tuple[np.ndarray, np.ndarray]:
        """Sorting permutation and sorted values of the split draws, per quantity."""
        return _argsort_rows(self.flat)

    @cached_property
    def split_const(self) -> np.ndarray:
        """All split draws equal (exactly)."""
        if "argsort" in self.__dict__:
            s = self.argsort[1]
            return s[:, 0] == s[:, -1]
        return self.flat.min(axis=1) == self.flat.max(axis=1)

    @cached_property
    def split_const_rel(self) -> np.ndarray:
        """Split draws equal to rounding (for the statistics of the raw values)."""
        if "argsort" in self.__dict__:
            s = self.argsort[1]
            return _is_const(s[:, 0], s[:, -1])
        return _is_const(self.flat.min(axis=1), self.flat.max(axis=1))

    @cached_property
    def sorted_all(self) -> np.ndarray:
        """All draws (middle ones included), sorted per quantity: (k, n_steps · n_chains)."""
        odd = self.n_steps % 2 == 1
        if "argsort" in self.__dict__:
            s = self.argsort[1]
            if not odd:
                return s
            middle = np.sort(self.x[self.half].T, axis=1)
            # two sorted runs: the stable sort (timsort) merges them in linear time
            return np.sort(np.concatenate([s, middle], axis=1), axis=1, kind="stable")
        if not odd:
            return np.sort(self.flat, axis=1)
        return np.sort(self.x.reshape(-1, self.k).T, axis=1)

    # -- rank normalization
    @cached_property
    def z(self) -> np.ndarray:
        """Rank-normalized split draws, (k, M, N)."""
        order, s = self.argsort
        return _rank_normal(order, s).reshape(self.split.shape)

    @cached_property
    def z_folded(self) -> tuple[np.ndarray, np.ndarray]:
        """Rank-normalized folded split draws ``|x − median|``, (k, M, N) ([V21] §4), and
        whether the folded draws are all equal, (k,)."""
        order, s = self.argsort
        size = self.size
        c = size // 2
        median = 0.5 * (s[:, c - 1] + s[:, c])[:, None]
        # below the median |x − med| decreases along the sorted order, above it increases:
        # two ascending runs, merged by a stable (timsort) argsort in linear time
        runs = np.empty_like(s)
        runs_order = np.empty_like(order)
        with np.errstate(over="ignore"):  # |x − med| may overflow to inf for |x| ~ 1e308
            np.subtract(median, s[:, c - 1 :: -1], out=runs[:, :c])
            np.subtract(s[:, c:], median, out=runs[:, c:])
        runs_order[:, :c] = order[:, c - 1 :: -1]
        runs_order[:, c:] = order[:, c:]
        merge = np.argsort(runs, axis=1, kind="stable")
        folded = np.take_along_axis(runs, merge, axis=1)
        z = _rank_normal(np.take_along_axis(runs_order, merge, axis=1), folded)
        return z.reshape(self.split.shape), folded[:, 0] == folded[:, -1]

    # -- statistics
    def rhat(self) -> np.ndarray:
        const = self.split_const
        bulk = _rhat_of(self.z, const)
        z_folded, folded_const = self.z_folded
        tail = _rhat_of(z_folded, const | folded_const)
        r = np.fmax(bulk, tail)  # NaN-ignoring: a constant folded set leaves the bulk R̂
        return np.where(np.isnan(r), 1.0, r)

    def ess_bulk(self) -> np.ndarray:
        return _ess_split(self.z, self.split_const)

    @cached_property
    def ess_mean(self) -> np.ndarray:
        return _ess_split(self.split, self.split_const_rel)

    def quantile(self, prob: float) -> np.ndarray:
        return _type7_quantile(self.sorted_all, prob)

    def ess_quantiles(self, probs: tuple[float, ...]) -> np.ndarray:
        """ESS of ``I(x ≤ q_p)`` on split chains, for each ``p``: (len(probs), k)."""
        q = np.stack([self.quantile(p) for p in probs])  # (P, k)
        ind = (self.split[None] <= q[:, :, None, None]).astype(float)  # (P, k, M, N)
        # a constant indicator (all 0 or all 1) has chain means 0 or 1 exactly, hence var⁺ = 0
        # exactly, which _ess_split treats as constant
        no_flag = np.zeros(len(probs) * self.k, dtype=bool)
        e = _ess_split(ind.reshape(-1, *self.split.shape[1:]), no_flag)
        return e.reshape(len(probs), self.k)

    def mcse_quantile(self, prob: float, ess_q: np.ndarray) -> np.ndarray:
        """Half-width of the ±1 sd interval of the quantile's order statistics ([V21] §4.4)."""
        a = ess_q * prob + 1.0
        b = ess_q * (1.0 - prob) + 1.0
        ppf = stats.beta.ppf(_MCSE_PROBS[:, None], a[None], b[None])  # (2, k)
        s = self.sorted_all
        size = s.shape[1]
        pos = ppf * size - 1.0
        i_lo = np.floor(np.maximum(pos[0], 0.0)).astype(np.intp)
        i_hi = np.ceil(np.minimum(pos[1], size - 1.0)).astype(np.intp)
        rows = np.arange(self.k)
        return (s[rows, i_hi] - s[rows, i_lo]) / 2.0

    def mcse_mean(self) -> np.ndarray:
        sd = np.where(self.all_const, 0.0, self.x.std(axis=(0, 1), ddof=1))
        return sd / np.sqrt(self.ess_mean)
