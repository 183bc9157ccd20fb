"""The warnings of failed log-posterior evaluations: the forward model's failures (a
simulator that raised or returned NaN/inf, an emulator's non-finite mean) and covariances
that could not be factorized, both of which give a walker log-posterior ``-inf``
(:meth:`calib.likelihood.Model.log_posterior` counts them)."""

from __future__ import annotations

import warnings

from .likelihood import SimulatorWarning

#: in sampling, failed factorizations are warned of above this share of the evaluations
FACTOR_FAILURE_WARN = 1e-3


def warn_failures(count: int, total: int, factor: int | None = None) -> None:
    """Warn of ``count`` failed evaluations of ``total``. With ``factor`` (sampling),
    ``count`` is the forward model's alone and the ``factor`` failed factorizations
    are warned of above :data:`FACTOR_FAILURE_WARN` of ``total`` only: a trajectory
    that wanders where the covariance is singular is rejected there (and, in HMC,
    counted as divergent)."""
    if factor is not None and factor > FACTOR_FAILURE_WARN * total:
        warnings.warn(
            f"the covariance could not be factorized (not positive definite, even with "
            f"jitter) for {factor} of {total} evaluations ({factor / total:.2%}); those "
            f"got log-posterior -inf, which cuts the posterior there: tighten the priors "
            f"of the discrepancy's scale and length-scales",
            SimulatorWarning,
            stacklevel=3,
        )
    if count:
        what = "" if factor is not None else " or the covariance was not positive definite"
        warnings.warn(
            f"the forward model failed (raised, or returned NaN/inf){what} for {count} of "
            f"{total} evaluations; those got log-posterior -inf",
            SimulatorWarning,
            stacklevel=3,
        )
