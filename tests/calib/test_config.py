"""calib.config: to_config -> from_config rebuilds the same calibration, and a bad
configuration is refused naming the key, what was expected and what was given."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from calib import Calibrator, Campaign, Discrepancy, Parameter
from calib.archive import read_study
from calib.config import from_config, load, to_config
from calib.priors import Gamma, HalfCauchy, HalfNormal, LogNormal, Normal, Uniform
from simulators import FunctionSimulator

DATA = Path(__file__).resolve().parents[1] / "data" / "archives"


def _f(X, T):
    return T[:, :1] * X[:, :1] + T[:, 1:2] + 0.1 * np.tanh(T[:, 2:3]) * X[:, :1] ** 2


SIM = FunctionSimulator(_f, ("x",), ("a", "b", "c"), ("y",), vectorized=True)


def _campaigns(known: bool = False):
    rng = np.random.default_rng(0)
    x = np.linspace(0, 1, 6)
    return [
        Campaign(
            name,
            x=x,
            y=0.5 * x + 1.0 + 0.05 * rng.standard_normal(6),
            noise_sd=0.05 if known else None,
        )
        for name in ("A", "B/2", "C")
    ]


def _round_trip(cal: Calibrator, sample: dict | None = None) -> Calibrator:
    cfg = to_config(cal, sample)
    # through JSON, as an archive stores it
    stored = json.loads(json.dumps(cfg))
    back = from_config(stored, cal.model_object, campaigns=cal.campaigns)
    assert to_config(back, sample) == stored
    assert back.model.labels == cal.model.labels
    U = cal.model.sample_prior(np.random.default_rng(1), 12)
    np.testing.assert_array_equal(back.log_posterior(U), cal.log_posterior(U))
    return back


# ---------------------------------------------------------------------- round trips
@pytest.mark.parametrize(
    "params",
    [
        [Parameter("a", 0, 2), Parameter("b", prior=Normal(1, 1)), Parameter("c", 0, 1)],
        [  # one quantity per campaign
            Parameter("a", 0, 2, pooling="none"),
            Parameter("b", prior=Normal(1, 1), pooling="none"),
            Parameter("c", value=0.3),
        ],
        [  # partial pooling, non-centred and centred, and a fixed value
            Parameter("a", 0, 2, pooling="partial"),
            Parameter("b", prior=LogNormal(0, 1), pooling="partial", centered=True),
            Parameter("c", value=0.0),
        ],
        [  # a fixed value at infinity (a clamped support) travels as JSON's Infinity
            Parameter("a", lower=0, prior=Gamma(2, 1)),
            Parameter("b", prior=Normal(1, 1)),
            Parameter("c", value=np.inf),
        ],
    ],
    ids=["complete", "none", "partial", "fixed-inf"],
)
def test_pooling_modes_and_fixed_values_round_trip(params):
    back = _round_trip(Calibrator(SIM, params, _campaigns(), noise="shared"))
    assert [p.to_dict() for p in back.parameters] == [p.to_dict() for p in params]


@pytest.mark.parametrize("noise", ["known", "shared", "per_campaign", "hierarchical"])
def test_noise_modes_round_trip(noise):
    params = [Parameter("a", 0, 2), Parameter("b", -1, 3), Parameter("c", value=0.0)]
    cal = Calibrator(SIM, params, _campaigns(known=noise == "known"), noise=noise)
    back = _round_trip(cal, {"n_walkers": 8, "seed": 3})
    assert back.noise == noise


@pytest.mark.parametrize(
    "disc",
    [
        Discrepancy("none"),
        Discrepancy("shared"),
        Discrepancy("independent", kernel="matern52"),
        Discrepancy("shared", scale_prior=HalfCauchy(0.5), lengthscale_prior=Gamma(2.0, 3.0)),
    ],
    ids=["none", "shared", "independent-matern52", "priors"],
)
def test_discrepancy_settings_round_trip(disc):
    params = [Parameter("a", 0, 2), Parameter("b", -1, 3), Parameter("c", value=0.0)]
    back = _round_trip(Calibrator(SIM, params, _campaigns(), discrepancy=disc))
    assert back.discrepancy.to_dict() == disc.to_dict()


@pytest.mark.parametrize(
    "prior",
    [Normal(1.0, 2.0), LogNormal(0.1, 0.5), HalfNormal(2.0), HalfCauchy(1.5), Uniform(-1, 3)]
    + [Gamma(2.0, 0.5)],
)
def test_every_prior_family_round_trips(prior):
    params = [Parameter("a", prior=prior), Parameter("b", -1, 3), Parameter("c", value=0.0)]
    hyper = {"noise": {"mean": Normal(-1.0, 0.5), "scale": HalfNormal(0.3)}}
    cal = Calibrator(SIM, params, _campaigns(), noise="hierarchical", hyperpriors=hyper)
    back = _round_trip(cal)
    assert back.parameters[0].prior == prior
    assert back.model.hyperpriors["noise"] == hyper["noise"]


def test_campaigns_as_tables_and_defaults():
    """A study file gives the campaigns' data inline and leaves the defaults out."""
    cfg = {
        "parameters": [
            {"name": "a", "lower": 0, "upper": 2},
            {"name": "b", "prior": {"type": "Normal", "mean": 1, "sd": 1}},
            {"name": "c", "value": 0.0},
        ],
        "campaigns": [{"name": c.name, "x": c.x.tolist(), "y": c.y.tolist()} for c in _campaigns()],
    }
    cal = from_config(cfg, SIM)
    want = Calibrator(
        SIM,
        [Parameter("a", 0, 2), Parameter("b", prior=Normal(1, 1)), Parameter("c", value=0.0)],
        _campaigns(),
    )
    assert cal.noise == "per_campaign" and cal.discrepancy.mode == "none"
    assert to_config(cal) == to_config(want)


# ---------------------------------------------------------------------- the archive's own
def test_from_config_of_the_fixture_archive(tmp_path):
    path = tmp_path / "study.h5"
    shutil.copyfile(DATA / "study_62ed993.h5", path)
    record = read_study(path)
    em = record.emulator_class.from_state_dict(record.emulator_state)
    campaigns = [
        Campaign(c["name"], x=c["x"], y=c["y"], noise_sd=c["noise_sd"]) for c in record.campaigns
    ]
    cal = from_config(record.config, em, campaigns=campaigns)
    assert cal.model.labels == record.config["labels"]
    cfg = to_config(cal, record.config["sample"])
    assert json.loads(json.dumps(cfg)) == {**record.config, "parameters": cfg["parameters"]}
    # the fixture predates Parameter(value=): its parameters lack the key, read as None
    assert cfg["parameters"] == [{**p, "value": None} for p in record.config["parameters"]]
    post = load(path)
    assert post.calibrator.model.labels == cal.model.labels


# ---------------------------------------------------------------------- refusals
def _cfg() -> dict:
    cal = Calibrator(
        SIM,
        [Parameter("a", 0, 2, pooling="partial"), Parameter("b", -1, 3), Parameter("c", 0, 1)],
        _campaigns(),
        discrepancy="shared",
    )
    cfg = json.loads(json.dumps(to_config(cal)))
    # the campaigns' data inline, as a study file gives them
    cfg["campaigns"] = [
        {"name": c.name, "x": c.x.tolist(), "y": c.y.tolist()} for c in cal.campaigns
    ]
    return cfg


def _with(path: tuple, value) -> dict:
    cfg = _cfg()
    target = cfg
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return cfg


@pytest.mark.parametrize(
    ("path", "value", "error", "message"),
    [
        (
            ("parameters", 0, "pooling"),
            "some",
            ValueError,
            r"parameters\[0\] \('a'\)\.pooling: "
            r"expected one of \['complete', 'none', 'partial', 'spike_slab'\], got 'some'",
        ),
        (
            ("parameters", 1, "prior"),
            {"type": "Weibull", "a": 1},
            ValueError,
            r"parameters\[1\] \('b'\)\.prior\.type: expected a prior family, one of .*'Gamma'.*"
            r"got 'Weibull'",
        ),
        (
            ("parameters", 1, "prior"),
            {"type": "Normal", "mean": 0.0},
            ValueError,
            r"parameters\[1\] \('b'\)\.prior: a Normal prior needs \['mean', 'sd'\]; "
            r"missing \['sd'\]",
        ),
        (
            ("parameters", 1, "prior"),
            {"type": "Normal", "mean": 0.0, "sd": -1.0},
            ValueError,
            r"parameters\[1\] \('b'\)\.prior: Normal: sd must be finite and > 0, got -1\.0",
        ),
        (
            ("parameters", 1, "prior"),
            {"type": "Normal", "mean": "0", "sd": 1},
            ValueError,
            r"parameters\[1\] \('b'\)\.prior\.mean: expected a finite number, got '0'",
        ),
        (
            ("parameters", 1, "prior"),
            {"type": "Normal", "mean": 0, "sd": 1, "sigma": 2},
            ValueError,
            r"prior: unknown key\(s\) \['sigma'\]",
        ),
        (("parameters", 1, "prior"), "Normal", TypeError, r"\.prior: expected a prior table"),
        # an unbounded parameter without a prior: the bounds (or a prior) are missing
        (
            ("parameters", 2),
            {"name": "c", "upper": 1.0},
            ValueError,
            r"parameters\[2\] \('c'\): .*unbounded parameter needs a prior",
        ),
        (
            ("parameters", 1, "lower"),
            "low",
            TypeError,
            r"parameters\[1\] \('b'\)\.lower: expected a number or nothing, got str 'low'",
        ),
        (
            ("parameters", 1, "centred"),
            True,
            ValueError,
            r"parameters\[1\]: unknown key\(s\) \['centred'\]",
        ),
        (
            ("parameters", 0, "name"),
            KeyError,
            ValueError,
            r"parameters\[0\]\.name: expected a non-empty string, got None",
        ),
        (("parameters", 0, "centered"), "yes", TypeError, r"centered: expected true or false"),
        (("parameters",), [], ValueError, r"parameters: expected a non-empty list"),
        (("parameters",), KeyError, ValueError, r"configuration: missing key 'parameters'"),
        (("noise",), "gaussian", ValueError, r"noise: expected one of \['known', .*got 'gaussian'"),
        (
            ("discrepancy", "mode"),
            "global",
            ValueError,
            r"discrepancy\.mode: expected one of \['none', 'shared', 'independent'\], got 'global'",
        ),
        (("discrepancy", "kernel"), "rbf2", ValueError, r"discrepancy\.kernel: expected one of"),
        (("discrepancy",), "sometimes", ValueError, r"discrepancy: expected one of"),
        (("discrepancy", "mode"), KeyError, ValueError, r"discrepancy: missing key 'mode'"),
        (
            ("hyperpriors", "a", "mean"),
            {"type": "Cauchy"},
            ValueError,
            r"hyperpriors\['a'\]\['mean'\]\.type: expected a prior family",
        ),
        (
            ("hyperpriors", "a", "width"),
            None,
            ValueError,
            r"hyperpriors\['a'\]: unknown key\(s\) \['width'\]",
        ),
        (
            ("hyperpriors", "b"),
            {"mean": None},
            ValueError,
            r"hyperpriors: 'b' is not a partially pooled parameter",
        ),
        (
            ("noise_prior",),
            {"type": "HalfNormal"},
            ValueError,
            r"noise_prior: a HalfNormal prior needs \['scale'\]",
        ),
        (
            ("mode",),
            "emulator",
            ValueError,
            r"mode: the configuration is for mode='emulator', but model is a simulator",
        ),
        (("mode",), "remote", ValueError, r"mode: expected one of \['emulator', 'direct'\]"),
        (("seed",), 3, ValueError, r"configuration: unknown key\(s\) \['seed'\]"),
        (
            ("campaigns", 0),
            {"name": "A", "y": [1.0, 2.0], "x": [0.0]},
            ValueError,
            r"campaigns\[0\]: Campaign 'A': y has 2 rows but x has 1",
        ),
        (("campaigns", 0), "A2", ValueError, r"campaigns\[0\]: 'A2' is a name only"),
        (("campaigns",), KeyError, ValueError, r"configuration: missing key 'campaigns'"),
    ],
)
def test_bad_configuration_is_refused_naming_the_key(path, value, error, message):
    with pytest.raises(error, match=message):
        from_config(_with(path, value), SIM)


def test_campaign_names_must_match_the_campaigns_given():
    cfg = _cfg()
    cfg["campaigns"] = ["A", "B/2", "C"]
    with pytest.raises(ValueError, match=r"campaigns: the configuration names \['A', 'B/2', 'C'\]"):
        from_config(cfg, SIM, campaigns=_campaigns()[:2])
    with pytest.raises(TypeError, match=r"configuration: expected a table \(dict\), got list"):
        from_config([cfg], SIM)
    ok = copy.deepcopy(cfg)
    ok["campaigns"] = None  # names absent: the campaigns given are used as they are
    assert (
        from_config(ok, SIM, campaigns=_campaigns()).model.labels
        == from_config(cfg, SIM, campaigns=_campaigns()).model.labels
    )
