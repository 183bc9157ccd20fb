"""The forward model inside the likelihood: the simulator itself (direct mode) or an emulator.

Both adapters take the control inputs of every observation row ``X (n_rows, p)`` and the
parameters of every walker at every row ``Theta (W, n_rows, q)`` and return the mean
``(W, n_rows, m)``, the forward model's own covariance ``(W, m, n_rows, n_rows)`` (``None``
in direct mode, where the simulator is exact) and a mask ``(W,)`` of walkers for which the
forward model failed.

The likelihood's hot path uses :meth:`EmulatorForward.predict`: the emulator for the
outputs that hold observations only (an emulator whose ``predict_torch`` takes
``outputs=`` computes only those; one that does not is asked for all and the observed ones
are selected from its prediction).

Device. Results are on the device of ``theta``. A simulator runs in NumPy whatever the
device (its values cross to the device and back). An emulator computes on the
calibration's device: :func:`emulator_on` gives it there, itself or a copy rebuilt from its
state.
"""

from __future__ import annotations

import inspect
import signal
import threading
import time
import warnings
from collections.abc import Sequence

import numpy as np
import torch

from ._validation import check_number
from ._worker import _alarm, _RunTimeout
from .interfaces import SimulatorMissingError, is_emulator

__all__ = ["FixedValues", "SimulatorForward", "EmulatorForward", "emulator_on", "make_forward"]


class FixedValues:
    """The fixed parameters (``Parameter(..., value=)``) among a forward model's ``q``:
    the sampled ``θ (..., q_free)`` becomes the model's ``(..., q)`` with the fixed values
    in their columns."""

    def __init__(self, q: int, fixed: dict[int, float]):
        self.free = [k for k in range(q) if k not in fixed]
        self.values = np.array([fixed[k] for k in sorted(fixed)], dtype=float)
        order = self.free + sorted(fixed)
        self.perm = np.argsort(order)  # columns of [θ_free, fixed] in the model's order
        self._t: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def full_np(self, th: np.ndarray) -> np.ndarray:
        c = np.broadcast_to(self.values, th.shape[:-1] + self.values.shape)
        return np.concatenate([th, c], axis=-1)[..., self.perm]

    def full(self, theta: torch.Tensor) -> torch.Tensor:
        key = (theta.dtype, theta.device)
        if key not in self._t:
            self._t[key] = (
                torch.as_tensor(self.values, dtype=theta.dtype, device=theta.device),
                torch.as_tensor(self.perm, device=theta.device),
            )
        values, perm = self._t[key]
        c = values.expand(*theta.shape[:-1], -1)
        return torch.cat([theta, c], dim=-1).index_select(-1, perm)


def _run_rows(sim, X: np.ndarray, Theta: np.ndarray, failures: list | None = None) -> np.ndarray:
    """``sim`` at every row, NaN rows where it raised; ``X (k, p)``, ``Theta (k, q)``.

    ``failures``, if given, receives ``(what went wrong, x, θ)`` of the first failed row: the
    simulator's own exception, or what it returned instead of ``m`` finite numbers."""
    m = len(sim.output_names)
    batch = getattr(sim, "run_batch", None)
    if batch is not None:
        try:
            out = np.asarray(batch(X, Theta), dtype=float)
            if out.shape == (X.shape[0], m):
                if failures is not None and not failures:  # only until one is recorded
                    bad = ~np.isfinite(out).all(axis=1)
                    if bad.any():
                        i = int(np.argmax(bad))
                        why = f"it returned non-finite values {out[i].tolist()}"
                        failures.append((why, X[i].tolist(), Theta[i].tolist()))
                return out
        except SimulatorMissingError:
            raise
        except Exception:  # noqa: BLE001 - any simulator failure is isolated row by row below
            pass
    out = np.full((X.shape[0], m), np.nan)
    for i in range(X.shape[0]):
        why = None
        try:
            r = np.asarray(sim.run(X[i], Theta[i]), dtype=float)
            if r.size == m:
                out[i] = r.reshape(m)
                if not np.isfinite(out[i]).all():
                    why = f"it returned non-finite values {r.reshape(-1).tolist()}"
            else:
                why = f"it returned {r.size} values where {m} outputs were expected"
        except SimulatorMissingError:
            raise
        except Exception as exc:  # noqa: BLE001 - a failed run rejects the walker, not the chain
            why = f"it raised {type(exc).__name__}: {exc}"
        if why is not None and failures is not None and not failures:
            failures.append((why, X[i].tolist(), Theta[i].tolist()))
    return out


class _Runs:
    """Runs of one simulator at many rows for the likelihood, each limited to ``timeout``
    seconds when one is given (:class:`SimulatorForward`).

    The limit has :func:`calib.run_design`'s semantics (:mod:`calib._worker`): a simulator
    whose ``run`` takes ``timeout=`` enforces it itself (a :class:`CommandSimulator` kills
    its process group); any other is interrupted by ``SIGALRM`` in the main thread, and
    elsewhere counted as timed out when it returns late. A run past the limit is a failed
    run: its row is NaN and its walker's log-posterior ``-inf``.
    """

    def __init__(self, sim, timeout: float | None):
        self.sim = sim
        self.timeout = timeout
        self.own = timeout is not None and _takes(sim.run, "timeout")
        self.failures: list = []  # the first failure, (what, x, θ)
        self._warned: set[str] = set()  # the one-time notices already given

    def __call__(self, X: np.ndarray, Theta: np.ndarray, group: int, record: bool) -> np.ndarray:
        """``(k, m)`` outputs at rows ``X (k, p)``, ``Theta (k, q)``, NaN where a run failed;
        rows come in groups of ``group`` per walker."""
        failures = self.failures if record else None
        if self.timeout is None:
            return _run_rows(self.sim, X, Theta, failures)
        return self._limited(X, Theta, group, failures)

    def _limited(self, X, Theta, group: int, failures) -> np.ndarray:
        # a batch call has no per-run limit, so with a timeout every row runs alone (as
        # run_design's workers do)
        m = len(self.sim.output_names)
        out = np.full((X.shape[0], m), np.nan)
        if not self.own and threading.current_thread() is not threading.main_thread():
            self._notice(
                "thread",
                f"timeout={self.timeout:g} s cannot interrupt the simulator outside the main "
                f"thread (SIGALRM reaches only the main thread); a run past it counts as "
                f"timed out only when it returns. Call sample() from the main thread, or give "
                f"the simulator a run(x, theta, timeout=) that enforces it",
            )
        skip_to = 0
        for i in range(X.shape[0]):
            if i < skip_to:
                continue  # its walker already timed out: -inf whatever the rest returns
            why, timed_out = self._one(X[i], Theta[i], m, out[i])
            if why is None:
                continue
            if failures is not None and not failures:
                failures.append((why, X[i].tolist(), Theta[i].tolist()))
            if timed_out:
                self._notice("timeout", f"{why} {_at(self.sim, X[i], Theta[i])}" + _LATER)
                skip_to = (i // group + 1) * group
        return out

    def _one(self, x, theta, m: int, row: np.ndarray) -> tuple[str | None, bool]:
        """Run once into ``row``; returns what went wrong (None if nothing) and whether the
        run timed out."""
        t = self.timeout
        t0 = time.perf_counter()
        try:
            if self.own:
                r = self.sim.run(x, theta, timeout=t)
            else:
                with _alarm(t):
                    r = self.sim.run(x, theta)
            r = np.asarray(r, dtype=float)
        except SimulatorMissingError:
            raise
        except (_RunTimeout, TimeoutError):
            return f"a simulator run ran past timeout={t:g} s and was stopped", True
        except Exception as exc:  # noqa: BLE001 - a failed run rejects the walker, not the chain
            return f"it raised {type(exc).__name__}: {exc}", False
        elapsed = time.perf_counter() - t0
        if elapsed > t:
            return f"a simulator run took {elapsed:.3g} s, more than timeout={t:g} s", True
        if r.size != m:
            return f"it returned {r.size} values where {m} outputs were expected", False
        row[:] = r.reshape(m)
        if not np.isfinite(row).all():
            return f"it returned non-finite values {r.reshape(-1).tolist()}", False
        return None, False

    def _notice(self, key: str, message: str) -> None:
        if key in self._warned:
            return
        self._warned.add(key)
        from .likelihood import SimulatorWarning  # the likelihood's warning; it sits above

        warnings.warn(message, SimulatorWarning, stacklevel=4)


_LATER = (
    "; a timed-out run is a failed run, as run_design records it with status 'timeout': its "
    "walker gets log-posterior -inf. Later timeouts are counted with the other failures"
)


def _at(sim, x, theta) -> str:
    """``(at x = [...], k = 2.5, ...)``: where a run went wrong, by the simulator's names."""
    names = list(getattr(sim, "parameter_names", ()))
    at = ", ".join(f"{n} = {v:.6g}" for n, v in zip(names, theta)) or str(list(theta))
    return f"(at x = {np.asarray(x).tolist()}, {at})"


class _SimulatorFn(torch.autograd.Function):
    """Simulator output with a central finite-difference backward pass in θ.

    The MAP search (L-BFGS) needs ∂η/∂θ; a black-box simulator has no derivative, so the
    backward pass evaluates it at θ ± h·e_k for every parameter k in one batched call, with
    ``h = ε^(1/3)·max(|θ_k|, 1e-3)`` (the step that balances truncation and rounding error
    of central differences).
    """

    @staticmethod
    def forward(ctx, theta: torch.Tensor, runs: _Runs, X: np.ndarray, fixed) -> torch.Tensor:
        W, n, q = theta.shape
        th = theta.detach().cpu().numpy()
        full = th if fixed is None else fixed.full_np(th)
        Xr = np.broadcast_to(X, (W, n, X.shape[1])).reshape(W * n, X.shape[1])
        rows = runs(Xr, full.reshape(W * n, full.shape[-1]), n, True)
        out = rows.reshape(W, n, -1)
        ctx.runs, ctx.X, ctx.th, ctx.fixed = runs, X, th, fixed
        return torch.as_tensor(out, dtype=theta.dtype, device=theta.device)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        runs, X, th, fixed = ctx.runs, ctx.X, ctx.th, ctx.fixed
        W, n, q = th.shape  # the sampled parameters only: a fixed one needs no derivative
        h = np.cbrt(np.finfo(float).eps) * np.maximum(np.abs(th), 1e-3)  # (W, n, q)
        eye = np.eye(q)
        # (2, q, W, n, q): +h and -h steps in each coordinate k
        steps = np.stack([eye[:, None, None, :] * h[None], -eye[:, None, None, :] * h[None]])
        Th = (th[None, None] + steps).reshape(-1, q)
        if fixed is not None:
            Th = fixed.full_np(Th)
        Xr = np.broadcast_to(X, (2 * q * W, n, X.shape[1])).reshape(2 * q * W * n, X.shape[1])
        f = runs(Xr, Th, n, False).reshape(2, q, W, n, -1)
        hk = np.moveaxis(h, -1, 0)[..., None]  # (q, W, n, 1)
        jac = (f[0] - f[1]) / (2.0 * hk)  # (q, W, n, m): ∂η/∂θ_k
        g = torch.as_tensor(np.nan_to_num(jac), dtype=grad_out.dtype, device=grad_out.device)
        grad_theta = torch.einsum("kwnm,wnm->wnk", g, grad_out)
        return grad_theta, None, None, None


class SimulatorForward:
    """Direct mode: the simulator is evaluated inside the likelihood.

    Parameters
    ----------
    simulator : Simulator
    fixed : FixedValues, optional
    timeout : float, optional
        Seconds one run may take (``Calibrator(timeout=)``), with :func:`calib.run_design`'s
        semantics (:class:`_Runs`); None: no limit.

    Raises
    ------
    ValueError
        For a timeout that is not seconds > 0, or one that cannot be enforced here: a
        simulator without ``run(..., timeout=)`` on a platform with no ``SIGALRM`` timer.
    """

    emulator = False

    def __init__(self, simulator, fixed: FixedValues | None = None, timeout: float | None = None):
        if timeout is not None:
            timeout = check_number(timeout, "timeout", 0, what="seconds > 0 or None")
        self.model = simulator
        self.fixed = fixed
        self.timeout = timeout
        self._runs = _Runs(simulator, timeout)
        if timeout is not None and not self._runs.own and not hasattr(signal, "setitimer"):
            raise ValueError(
                f"timeout={timeout:g}: {type(simulator).__name__}.run takes no timeout= and "
                f"this platform has no SIGALRM timer to interrupt it; give the simulator a "
                f"run(x, theta, timeout=) that enforces it (a CommandSimulator does), or "
                f"timeout=None"
            )
        #: the first failure seen, ``(what, x, θ)``, for error messages (:func:`find_map`)
        self.failures: list = self._runs.failures

    def __call__(self, X: np.ndarray, theta: torch.Tensor):
        mean = _SimulatorFn.apply(theta, self._runs, X, self.fixed)
        failed = ~torch.isfinite(mean).all(dim=-1).all(dim=-1)
        return mean, None, failed


class EmulatorForward:
    """Emulator mode: the emulator's predictive mean and full covariance (modular KOH)."""

    emulator = True

    def __init__(self, emulator, fixed: FixedValues | None = None):
        self.model = emulator
        self.fixed = fixed
        self.selects_outputs = _takes_outputs(emulator.predict_torch)
        self._index: dict[tuple[int, ...], torch.Tensor] = {}

    def __call__(self, X: np.ndarray, theta: torch.Tensor):
        if self.fixed is not None:
            theta = self.fixed.full(theta)
        W, n, _ = theta.shape
        Xt = torch.as_tensor(X, dtype=theta.dtype, device=theta.device).expand(W, n, -1)
        mean, cov = self.model.predict_torch(torch.cat([Xt, theta], dim=-1))
        # the contract returns on the inputs' device; a plug-in that does not is moved here
        mean, cov = mean.to(theta.device), cov.to(theta.device)
        failed = ~(torch.isfinite(mean).all(dim=-1).all(dim=-1))
        return mean, cov, failed

    def predict(
        self, X: torch.Tensor, theta: torch.Tensor, outputs: Sequence[int] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean ``(W, n, k)`` and covariance ``(W, k, n, n)`` of ``k`` outputs, unchecked.

        Parameters
        ----------
        X : Tensor of shape (n, p)
            Control inputs of the rows.
        theta : Tensor of shape (W, n, q)
        outputs : tuple of int, optional
            The outputs wanted (``k = len(outputs)``); all ``m`` when None.
        """
        if self.fixed is not None:
            theta = self.fixed.full(theta)
        W, n, _ = theta.shape
        inputs = torch.cat([X.expand(W, n, -1), theta], dim=-1)
        if outputs is not None and self.selects_outputs:
            try:
                mean, cov = self.model.predict_torch(inputs, outputs=outputs)
            except TypeError:  # a plug-in whose outputs= means something else
                self.selects_outputs = False
            else:
                mean, cov = mean.to(theta.device), cov.to(theta.device)
                k = len(outputs)
                if mean.shape[-1] == k and cov.shape[-3] == k:
                    return mean, cov
                self.selects_outputs = False  # it predicted everything anyway
                return self._select(mean, cov, outputs)
        mean, cov = self.model.predict_torch(inputs)
        mean, cov = mean.to(theta.device), cov.to(theta.device)
        return (mean, cov) if outputs is None else self._select(mean, cov, outputs)

    def _select(self, mean: torch.Tensor, cov: torch.Tensor, outputs: Sequence[int]):
        key = tuple(outputs)
        idx = self._index.get(key)
        if idx is None:
            idx = self._index[key] = torch.as_tensor(key, device=mean.device)
        return mean.index_select(-1, idx), cov.index_select(-3, idx)


def _takes(fn, name: str) -> bool:
    """Whether ``fn`` has a parameter ``name`` that can be passed by keyword."""
    try:
        par = inspect.signature(fn).parameters.get(name)
    except (TypeError, ValueError):
        return False
    return par is not None and par.kind in (par.POSITIONAL_OR_KEYWORD, par.KEYWORD_ONLY)


def _takes_outputs(fn) -> bool:
    """Whether ``predict_torch`` has an ``outputs`` parameter (optional in the contract)."""
    return _takes(fn, "outputs")


def _device_of(emulator) -> torch.device | None:
    """The device an emulator computes on, where it says (``device``; a basis emulator's
    component GP ``gp_.device``), with ``cuda`` resolved to its index; else None."""
    dev = getattr(emulator, "device", None)
    if dev is None:
        dev = getattr(getattr(emulator, "gp_", None), "device", None)
    if dev is None:
        return None
    try:
        dev = torch.device(dev)
    except (RuntimeError, TypeError):
        return None
    if dev.type == "cuda" and dev.index is None and torch.cuda.is_available():
        dev = torch.device("cuda", torch.cuda.current_device())
    return dev


def emulator_on(emulator, device: torch.device):
    """The emulator computing on ``device``: itself if it does already, else a copy.

    The copy is rebuilt from its state with ``type(emulator).from_state_dict(
    emulator.state_dict(), device=...)``, without retraining (calib's emulators predict
    identically from their state); the emulator given is left as it is, on its own device,
    and is the one a study archive records. An emulator that does not say where it
    computes is taken to compute on the CPU, the contract's default.

    Parameters
    ----------
    emulator : Emulator
    device : torch.device
        As resolved by :func:`calib._device.resolve_device`.

    Raises
    ------
    ValueError
        If a copy is needed and the emulator's ``from_state_dict`` takes no ``device=``.
    """
    own = _device_of(emulator)
    if own == device or (own is None and device.type == "cpu"):
        return emulator
    rebuild = getattr(type(emulator), "from_state_dict", None)
    if rebuild is None or not _takes(rebuild, "device"):
        raise ValueError(
            f"device={str(device)!r}: the emulator {type(emulator).__name__} computes on "
            f"{'an unknown device' if own is None else str(own)} and cannot be copied to "
            f"{device} (its from_state_dict takes no device= argument); fit it on {device}, "
            f"or give the Calibrator device={'cpu' if own is None else str(own)!r}"
        )
    return rebuild(emulator.state_dict(), device=str(device))


def make_forward(
    model,
    device: torch.device | None = None,
    fixed: FixedValues | None = None,
    timeout: float | None = None,
) -> SimulatorForward | EmulatorForward:
    """The forward model of ``model`` (a simulator or an emulator) for a calibration on
    ``device`` (default the CPU); an emulator is placed there by :func:`emulator_on`.
    ``fixed`` inserts the fixed parameters' values; ``timeout`` limits each simulator run
    (:class:`SimulatorForward`) and is refused for an emulator, which is never run."""
    if not is_emulator(model):
        return SimulatorForward(model, fixed, timeout)
    if timeout is not None:
        raise ValueError(
            f"timeout={timeout!r}: a timeout limits each simulator run in direct mode; an "
            f"emulator ({type(model).__name__}) runs no simulator (run_design(timeout=) "
            f"limits the runs it is fitted on)"
        )
    dev = torch.device("cpu") if device is None else device
    return EmulatorForward(emulator_on(model, dev), fixed)
