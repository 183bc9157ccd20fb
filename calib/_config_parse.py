"""Reading a configuration's values: key checks, priors, parameters, δ and hyperpriors.

The checks :mod:`calib.config` and the study files (:mod:`calib._study_check`) share: every
refusal names the key, what was expected and what was given.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._validation import check_number
from .discrepancy import DISCREPANCY_MODES, KERNELS, PROCESSES, SCALES, Discrepancy
from .parameters import POOLING_MODES, Parameter
from .priors import _FAMILIES, Prior

#: The prior families a configuration may name, by their ``type``: the registry of
#: calib.priors itself, so that an archive and a study file accept the same families.
PRIOR_FAMILIES = _FAMILIES
_PARAMETER_KEYS = ("name", "lower", "upper", "prior", "pooling", "centered", "value", "spike")
_DISCREPANCY_KEYS = tuple(
    "mode kernel scale_prior lengthscale_prior lengthscale zero_at zero_slope_at process "
    "scaling scale hyperpriors".split()
)


def _type_name(value: Any) -> str:
    return type(value).__name__


def _check_keys(d: Any, where: str, allowed: Sequence[str]) -> dict[str, Any]:
    """``d`` as a dict whose keys are all in ``allowed``."""
    if not isinstance(d, dict):
        raise TypeError(f"{where}: expected a table (dict), got {_type_name(d)} {d!r}")
    unknown = [k for k in d if k not in allowed]
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; expected some of {list(allowed)}")
    return d


def _one_of(value: Any, where: str, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{where}: expected one of {list(choices)}, got {value!r}")
    return value


def _prior(value: Any, where: str) -> Prior | None:
    """A prior from ``{"type": family, <its parameters>}`` (or None, or a Prior)."""
    if value is None or isinstance(value, Prior):
        return value
    if not isinstance(value, dict):
        raise TypeError(
            f"{where}: expected a prior table such as {{type = 'Normal', mean = 0.0, sd = 1.0}}, "
            f"got {_type_name(value)} {value!r}"
        )
    if "type" not in value:
        raise ValueError(f"{where}: missing key 'type' (one of {sorted(PRIOR_FAMILIES)})")
    family = value["type"]
    if not isinstance(family, str) or family not in PRIOR_FAMILIES:
        raise ValueError(
            f"{where}.type: expected a prior family, one of {sorted(PRIOR_FAMILIES)}, got "
            f"{family!r}"
        )
    cls = PRIOR_FAMILIES[family]
    # every parameter spelled out: a default (Normal's sd = 1) taken silently from a study
    # file would be a prior nobody chose
    params = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    _check_keys(value, where, ["type", *params])
    missing = [p for p in params if p not in value]
    if missing:
        raise ValueError(f"{where}: a {family} prior needs {params}; missing {missing}")
    args = {p: check_number(value[p], f"{where}.{p}", what="a finite number") for p in params}
    try:
        return cls(**args)
    except (ValueError, TypeError) as exc:
        raise type(exc)(f"{where}: {exc}") from None


def _number(value: Any, where: str) -> float | None:
    """None or a real number; ±inf and NaN are left to Parameter (inf: no bound on that
    side, or a fixed value at infinity; NaN it refuses)."""
    if value is None or (
        isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    ):
        return value
    raise TypeError(f"{where}: expected a number or nothing, got {_type_name(value)} {value!r}")


def _parameter(d: Any, i: int) -> Parameter:
    where = f"parameters[{i}]"
    _check_keys(d, where, _PARAMETER_KEYS)
    name = d.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where}.name: expected a non-empty string, got {name!r}")
    where = f"{where} ({name!r})"
    pooling = _one_of(d.get("pooling", "complete"), f"{where}.pooling", POOLING_MODES)
    centered = d.get("centered", False)  # archives written before the option: non-centred
    if not isinstance(centered, bool):
        raise TypeError(f"{where}.centered: expected true or false, got {centered!r}")
    lower = _number(d.get("lower"), f"{where}.lower")
    upper = _number(d.get("upper"), f"{where}.upper")
    value = _number(d.get("value"), f"{where}.value")  # inf is a value (a clamped support)
    prior = _prior(d.get("prior"), f"{where}.prior")
    spike = _number(d.get("spike"), f"{where}.spike")  # ε of pooling = "spike_slab"
    try:
        return Parameter(
            name, lower, upper, prior, pooling, centered=centered, value=value, spike=spike
        )
    except (ValueError, TypeError) as exc:
        raise type(exc)(f"{where}: {exc}") from None


def _discrepancy(value: Any) -> Discrepancy:
    if value is None:
        return Discrepancy("none")
    if isinstance(value, str):  # the mode alone, with the default priors
        return Discrepancy(_one_of(value, "discrepancy", DISCREPANCY_MODES))
    _check_keys(value, "discrepancy", _DISCREPANCY_KEYS)
    if "mode" not in value:
        raise ValueError(f"discrepancy: missing key 'mode' (one of {list(DISCREPANCY_MODES)})")
    mode = _one_of(value["mode"], "discrepancy.mode", DISCREPANCY_MODES)
    kernel = _one_of(value.get("kernel", "rbf"), "discrepancy.kernel", KERNELS)
    kw = {k: value[k] for k in ("zero_at", "zero_slope_at") if value.get(k) is not None}
    for k in ("scale_prior", "lengthscale_prior"):
        v = value.get(k)
        if k == "lengthscale_prior" and isinstance(v, dict) and "type" not in v:  # per feature
            kw[k] = {f: _prior(p, f"discrepancy.{k}.{f}") for f, p in v.items()}
        else:
            kw[k] = _prior(v, f"discrepancy.{k}")
    scaling = value.get("scaling")
    kw["scaling"] = _prior(scaling, "discrepancy.scaling") if isinstance(scaling, dict) else scaling
    if value.get("hyperpriors") is not None:  # of the pooled σ_δℓ (scale = "hierarchical")
        hp = _check_keys(value["hyperpriors"], "discrepancy.hyperpriors", ("mean", "scale"))
        kw["hyperpriors"] = {k: _prior(v, f"discrepancy.hyperpriors.{k}") for k, v in hp.items()}
    if value.get("lengthscale") is not None:  # fixed values: a number, or a table by feature
        kw["lengthscale"] = value["lengthscale"]
    # Discrepancy's own refusals (a prior on negative values, points that are not (k, p),
    # a scaling that is not a positive number, a bad pooled scale) name the argument already
    return Discrepancy(
        mode,
        kernel=kernel,
        process=_one_of(value.get("process", "gp"), "discrepancy.process", PROCESSES),
        scale=_one_of(value.get("scale", "common"), "discrepancy.scale", SCALES),
        **kw,
    )


def _hyperpriors(value: Any) -> dict[str, dict[str, Prior]]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TypeError(f"hyperpriors: expected a table (dict), got {_type_name(value)} {value!r}")
    out = {}
    for name, hp in value.items():
        where = f"hyperpriors[{name!r}]"
        _check_keys(hp, where, ("mean", "scale", "null"))  # null: π₀ of spike-and-slab
        # a None entry (an archive's unresolved side) means the documented default
        out[name] = {k: _prior(v, f"{where}[{k!r}]") for k, v in hp.items() if v is not None}
    return out
