"""Entry-point discovery; calib does not import the plug-in packages itself."""

from __future__ import annotations

import subprocess
import sys

import pytest

import calib.plugins


def test_builtins_are_registered_and_load():
    found = calib.plugins.list()
    assert set(found) == {"calib.simulators", "calib.emulators"}
    sims = found["calib.simulators"]
    assert sims["beam"] == "simulators.beam:BeamSimulator"
    assert {"function", "command", "reaction_network"} <= set(sims)
    assert {"gp", "basis_gp"} <= set(found["calib.emulators"])
    from simulators.beam import BeamSimulator

    assert calib.plugins.load("calib.simulators", "beam") is BeamSimulator
    with pytest.raises(ValueError, match="no plug-in 'bem' in calib.simulators; installed"):
        calib.plugins.load("calib.simulators", "bem")
    with pytest.raises(ValueError, match="group: expected one of"):
        calib.plugins.list("calib.sims")


def test_calib_never_imports_plugins_at_module_level():
    code = (
        "import sys, calib, calib.design, calib.runner, calib.archive, calib.plugins\n"
        "calib.plugins.list()\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('simulators', 'emulators')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
