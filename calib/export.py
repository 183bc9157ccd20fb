"""The posterior's draws handed to other tools: ArviZ and pandas (optional extras)."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["Exports"]


class Exports:
    """The export methods of :class:`calib.Posterior` (it sets the chain and quantities)."""

    def to_arviz(self) -> Any:
        """The post-burn-in draws as ArviZ ``InferenceData`` (needs ``calib[arviz]``).

        Returns
        -------
        arviz.InferenceData
            ``posterior``: one variable per quantity of :attr:`names`, dimensions
            ``(chain, draw)`` with one chain per walker; ``sample_stats``: ``lp`` (the
            log-posterior in the sampled space) and ``acceptance_rate`` per walker.

        Raises
        ------
        ImportError
            If ArviZ is not installed (``pip install 'calib[arviz]'``).
        """
        try:
            import arviz as az
        except ImportError:
            raise ImportError(
                "Posterior.to_arviz needs ArviZ: pip install 'calib[arviz]'"
            ) from None
        q = self._compute_quantities()
        n = self.kept.shape[0]
        return az.from_dict(
            posterior={k: np.ascontiguousarray(v.T) for k, v in q.items()},
            sample_stats={
                "lp": np.ascontiguousarray(self.log_prob[self.burn :].T),
                "acceptance_rate": np.repeat(self.acceptance[:, None], n, axis=1),
            },
            attrs={"inference_library": "emcee", "burn": self.burn},
        )

    def to_dataframe(self) -> Any:
        """The post-burn-in draws as a pandas ``DataFrame``, one row per (walker, step).

        Columns ``walker``, ``step`` (counted from the start of the chain), one per quantity
        of :attr:`names`, and ``log_prob``. pandas is imported here only (it comes with
        ``calib[arviz]``).

        Raises
        ------
        ImportError
            If pandas is not installed.
        """
        try:
            import pandas as pd
        except ImportError:
            raise ImportError(
                "Posterior.to_dataframe needs pandas: pip install pandas (or 'calib[arviz]')"
            ) from None
        q = self._compute_quantities()
        n, w = self.kept.shape[:2]
        cols: dict[str, np.ndarray] = {
            "walker": np.tile(np.arange(w), n),
            "step": np.repeat(np.arange(self.burn, self.burn + n), w),
        }
        for k, v in q.items():
            cols[k] = v.reshape(-1)
        cols["log_prob"] = self.log_prob[self.burn :].reshape(-1)
        return pd.DataFrame(cols)
