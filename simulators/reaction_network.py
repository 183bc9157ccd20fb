"""A mass-action chemical reaction network as a simulator (stiff ODEs).

Reactions are declared as text with the name of their rate constant::

    ReactionNetworkSimulator(
        [("A -> B", "k1"), ("B -> C", "k2"), ("2 C + A -> D", "k3")],
        initial={"A": "A0"},              # a number, or the name of a control input
        times=[0.5, 1, 2, 4],
        observed=("B", "C"),
    )

Mass action: reaction ``r`` proceeds at ``v_r = k_r ∏_s c_s^{ν_rs}`` (``ν_rs`` the reactant
coefficients) and ``dc/dt = S v`` with ``S`` the net stoichiometry. The Jacobian
``∂(S v)/∂c`` is computed analytically and handed to a stiff solver (scipy ``solve_ivp``
with BDF by default). Outputs are the observed species at the observation times
(``"B@0.5"``, …); rows are stacked into one block-diagonal system in :meth:`run_batch`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import sparse
from scipy.integrate import solve_ivp

from calib.interfaces import SimulatorError

__all__ = ["ReactionNetworkSimulator", "parse_reaction"]

_TERM = re.compile(r"^\s*(\d*)\s*([A-Za-z_][A-Za-z0-9_]*)\s*$")


def parse_reaction(equation: str) -> tuple[dict[str, int], dict[str, int]]:
    """Reactants and products of ``"2 A + B -> C"`` as ``{species: coefficient}``.

    An empty side, ``"0"`` or ``"∅"`` is no species (inflow or degradation).

    Raises
    ------
    ValueError
        If the text is not ``side -> side`` with terms ``[coefficient] name``.
    """
    if not isinstance(equation, str) or equation.count("->") != 1:
        raise ValueError(f"reaction: expected 'A + B -> C', got {equation!r}")
    sides = []
    for side in equation.split("->"):
        terms: dict[str, int] = {}
        text = side.strip()
        if text not in ("", "0", "∅"):
            for term in text.split("+"):
                m = _TERM.match(term)
                if m is None:
                    raise ValueError(
                        f"reaction {equation!r}: cannot read term {term.strip()!r}; expected "
                        f"'[coefficient] name', e.g. '2 A'"
                    )
                coef = int(m.group(1) or 1)
                if coef < 1:
                    raise ValueError(f"reaction {equation!r}: coefficient must be >= 1")
                terms[m.group(2)] = terms.get(m.group(2), 0) + coef
        sides.append(terms)
    return sides[0], sides[1]


class ReactionNetworkSimulator:
    """Species time courses of a mass-action network.

    Parameters
    ----------
    reactions : sequence of (str, str)
        ``(equation, rate name)`` pairs; several reactions may share a rate name.
    initial : mapping of str to float or str
        Initial concentration of each species (others start at 0): a number, or the name
        of a control input that sets it.
    times : sequence of float
        Observation times (> 0 or = 0, increasing); integration starts at ``t = 0``.
    observed : sequence of str, optional
        Species reported (default: all, in order of appearance).
    method : {"BDF", "LSODA", "Radau"}
        Stiff integrator of :func:`scipy.integrate.solve_ivp`.
    rtol, atol : float
        Integration tolerances.
    batch_size : int
        Rows integrated together as one block-diagonal system by :meth:`run_batch`.

    Attributes
    ----------
    input_names : tuple of str
        The control inputs named in ``initial``.
    parameter_names : tuple of str
        The rate names, in order of first appearance.
    output_names : tuple of str
        ``"<species>@<time>"``, species-major.
    output_coords : ndarray of shape (m, 2)
        ``(time, index of the species in observed)`` of each output.
    """

    def __init__(
        self,
        reactions: Sequence[tuple[str, str]],
        initial: Mapping[str, float | str],
        times: Sequence[float],
        observed: Sequence[str] | None = None,
        method: str = "BDF",
        rtol: float = 1e-8,
        atol: float = 1e-12,
        batch_size: int = 32,
    ):
        if not reactions:
            raise ValueError("ReactionNetworkSimulator: reactions must not be empty")
        species: list[str] = []
        rates: list[str] = []
        parsed = []
        for item in reactions:
            try:
                eq, rate = item
            except (TypeError, ValueError):
                raise TypeError(
                    f"ReactionNetworkSimulator: each reaction must be (equation, rate name), "
                    f"got {item!r}"
                ) from None
            if not isinstance(rate, str) or not rate.isidentifier():
                raise ValueError(
                    f"ReactionNetworkSimulator: rate name must be an identifier, got {rate!r}"
                )
            lhs, rhs = parse_reaction(eq)
            for s in [*lhs, *rhs]:
                if s not in species:
                    species.append(s)
            if rate not in rates:
                rates.append(rate)
            parsed.append((lhs, rhs, rates.index(rate)))
        unknown = sorted(set(initial) - set(species))
        if unknown:
            raise ValueError(
                f"ReactionNetworkSimulator: initial names unknown species {unknown}; the "
                f"species are {tuple(species)}"
            )
        self.species = tuple(species)
        self.reactions = tuple((eq, rate) for eq, rate in reactions)
        self.parameter_names = tuple(rates)
        ns, nr = len(species), len(parsed)
        self._nu = np.zeros((nr, ns))  # reactant orders
        self._S = np.zeros((ns, nr))  # net stoichiometry
        self._rate_of = np.array([p[2] for p in parsed])
        for r, (lhs, rhs, _) in enumerate(parsed):
            for s, c in lhs.items():
                self._nu[r, species.index(s)] = c
                self._S[species.index(s), r] -= c
            for s, c in rhs.items():
                self._S[species.index(s), r] += c

        inputs: list[str] = []
        self._c0 = np.zeros(ns)
        self._c0_input = np.full(ns, -1)
        for s, v in initial.items():
            j = species.index(s)
            if isinstance(v, str):
                if v not in inputs:
                    inputs.append(v)
                self._c0_input[j] = inputs.index(v)
            else:
                val = float(v)
                if not (np.isfinite(val) and val >= 0):
                    raise ValueError(
                        f"ReactionNetworkSimulator: initial[{s!r}] must be finite and >= 0, "
                        f"got {v!r}"
                    )
                self._c0[j] = val
        self.input_names = tuple(inputs)
        self.initial = dict(initial)

        t = np.asarray(times, dtype=float).ravel()
        if t.size == 0 or not np.isfinite(t).all() or (t < 0).any() or (np.diff(t) <= 0).any():
            raise ValueError(
                f"ReactionNetworkSimulator: times must be finite, >= 0 and increasing, "
                f"got {list(times)!r}"
            )
        self.times = t
        obs = tuple(species) if observed is None else tuple(observed)
        missing = [s for s in obs if s not in species]
        if missing or not obs:
            raise ValueError(
                f"ReactionNetworkSimulator: observed names unknown species {missing}; the "
                f"species are {tuple(species)}"
            )
        self.observed = obs
        self._obs_idx = np.array([species.index(s) for s in obs])
        self.output_names = tuple(f"{s}@{tt:g}" for s in obs for tt in t)
        self.output_coords = np.array([[tt, k] for k in range(len(obs)) for tt in t], dtype=float)
        if method not in ("BDF", "LSODA", "Radau"):
            raise ValueError(
                f"ReactionNetworkSimulator: method must be 'BDF', 'LSODA' or 'Radau', got "
                f"{method!r}"
            )
        self.method, self.rtol, self.atol = method, float(rtol), float(atol)
        if int(batch_size) < 1:
            raise ValueError(f"ReactionNetworkSimulator: batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)

    @classmethod
    def modular(
        cls,
        module: Sequence[tuple[str, str]],
        n_modules: int,
        initial: Mapping[str, float | str],
        times: Sequence[float],
        observed: Sequence[str] | None = None,
        shared_species: Sequence[str] = (),
        shared_rates: Sequence[str] = (),
        **kwargs,
    ) -> ReactionNetworkSimulator:
        """A network of ``n_modules`` copies of ``module``.

        Species ``S`` of copy ``i`` (1-based) become ``S_i`` and rates ``k`` become
        ``k_i``, except those in ``shared_species`` (e.g. a common substrate) and
        ``shared_rates``. Per-module rates are what a hierarchical model pools: the
        ``k1_1 … k1_n`` of a population of similar modules.

        ``initial`` and ``observed`` name the module's species; they apply to every copy.
        """
        if int(n_modules) < 1:
            raise ValueError(f"modular: n_modules must be >= 1, got {n_modules!r}")

        def rename(eq: str, i: int) -> str:
            lhs, rhs = parse_reaction(eq)

            def side(terms: dict[str, int]) -> str:
                return " + ".join(
                    f"{c if c > 1 else ''} {s if s in shared_species else f'{s}_{i}'}".strip()
                    for s, c in terms.items()
                )

            return f"{side(lhs)} -> {side(rhs)}"

        reactions = [
            (rename(eq, i), rate if rate in shared_rates else f"{rate}_{i}")
            for i in range(1, int(n_modules) + 1)
            for eq, rate in module
        ]
        init = {}
        obs = None if observed is None else []
        for i in range(1, int(n_modules) + 1):
            for s, v in initial.items():
                init[s if s in shared_species else f"{s}_{i}"] = v
            if observed is not None:
                obs += [s if s in shared_species else f"{s}_{i}" for s in observed]
        if obs is not None:
            obs = list(dict.fromkeys(obs))
        return cls(reactions, init, times, obs, **kwargs)

    # ------------------------------------------------------------------ the ODE
    def _rhs_jac(self, k: np.ndarray):
        """Right-hand side and Jacobian of ``B`` stacked systems with rates ``k (B, nr)``."""
        nu, S = self._nu, self._S
        B, ns = k.shape[0], len(self.species)
        has = nu > 0

        def powers(c: np.ndarray) -> np.ndarray:
            # (B, nr, ns): c_s^ν_rs, with 0^0 = 1 for species not in the reaction
            return np.where(has, np.maximum(c[:, None, :], 0.0) ** nu, 1.0)

        def rhs(t: float, y: np.ndarray) -> np.ndarray:
            c = y.reshape(B, ns)
            v = k * powers(c).prod(axis=2)  # (B, nr)
            return (v @ S.T).ravel()

        def jac(t: float, y: np.ndarray):
            c = np.maximum(y.reshape(B, ns), 0.0)
            P = powers(c)
            # ∂v_r/∂c_j = k_r ν_rj c_j^(ν_rj − 1) ∏_{s≠j} c_s^ν_rs
            d = np.where(has, nu * c[:, None, :] ** np.maximum(nu - 1, 0), 0.0)
            dv = np.empty((B, nu.shape[0], ns))
            for j in range(ns):
                others = np.delete(P, j, axis=2).prod(axis=2)
                dv[:, :, j] = k * d[:, :, j] * others
            blocks = np.einsum("sr,brj->bsj", S, dv)  # (B, ns, ns)
            if self.method == "LSODA":
                out = np.zeros((B * ns, B * ns))
                for b in range(B):
                    out[b * ns : (b + 1) * ns, b * ns : (b + 1) * ns] = blocks[b]
                return out
            return sparse.block_diag(list(blocks), format="csc")

        return rhs, jac

    def _solve(self, X: np.ndarray, Theta: np.ndarray) -> np.ndarray:
        B, ns = X.shape[0], len(self.species)
        c0 = np.tile(self._c0, (B, 1))
        for j in np.flatnonzero(self._c0_input >= 0):
            c0[:, j] = X[:, self._c0_input[j]]
        k = Theta[:, self._rate_of]
        rhs, jac = self._rhs_jac(k)
        t_end = float(self.times[-1])
        if t_end == 0.0:
            Y = np.repeat(c0[:, :, None], self.times.size, axis=2)
        else:
            sol = solve_ivp(
                rhs,
                (0.0, t_end),
                c0.ravel(),
                method=self.method,
                t_eval=self.times,
                jac=jac,
                rtol=self.rtol,
                atol=self.atol,
            )
            if sol.status != 0:
                raise SimulatorError(f"ReactionNetworkSimulator: integration failed: {sol.message}")
            Y = sol.y.reshape(B, ns, self.times.size)
        return Y[:, self._obs_idx, :].reshape(B, -1)

    def _check(self, X: np.ndarray, Theta: np.ndarray) -> None:
        if not (np.isfinite(Theta).all() and (Theta >= 0).all()):
            raise ValueError(
                f"ReactionNetworkSimulator: rate constants {self.parameter_names} must be "
                f"finite and >= 0, got {Theta[~(np.isfinite(Theta) & (Theta >= 0)).all(1)][0]}"
            )
        if X.size and not (np.isfinite(X).all() and (X >= 0).all()):
            raise ValueError(
                f"ReactionNetworkSimulator: initial concentrations {self.input_names} must be "
                f"finite and >= 0"
            )

    def run_batch(self, X: np.ndarray, Theta: np.ndarray) -> np.ndarray:
        """Outputs ``(n, m)`` for ``X (n, p)``, ``Theta (n, q)``.

        ``batch_size`` rows at a time are integrated as one block-diagonal system (one
        step-size sequence, a sparse Jacobian), which is several times faster than one
        solve per row; the error control covers every row's components, so each row
        meets the tolerances.
        """
        Theta = np.asarray(Theta, dtype=float).reshape(-1, len(self.parameter_names))
        X = np.asarray(X, dtype=float).reshape(Theta.shape[0], len(self.input_names))
        self._check(X, Theta)
        out = [
            self._solve(X[i : i + self.batch_size], Theta[i : i + self.batch_size])
            for i in range(0, Theta.shape[0], self.batch_size)
        ]
        return np.concatenate(out, axis=0)

    def run(self, x: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """Outputs ``(m,)`` for control inputs ``x (p,)`` and rates ``theta (q,)``."""
        return self.run_batch(
            np.reshape(np.asarray(x, dtype=float), (1, len(self.input_names))),
            np.reshape(np.asarray(theta, dtype=float), (1, len(self.parameter_names))),
        )[0]

    def __repr__(self) -> str:
        return (
            f"ReactionNetworkSimulator({len(self.reactions)} reactions, species="
            f"{self.species}, rates={self.parameter_names}, observed={self.observed})"
        )
