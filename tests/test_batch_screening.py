"""The batch-screening example (examples/batch_screening/run.py): 30 batches through the
beam simulator, spike-and-slab pooled, screened at a Bayesian FDR of 10 %.

``make test`` runs it end to end on its small budget (8 walkers, 40 kept iterations): the
figure is written and the three clearly different batches (−6 %, +5 %, −4 % in E, 5 to 8
times the tests' resolution) are found without a false one. The scaled simulator it
calibrates is checked against the finite-element beam run at each E."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "batch_screening" / "run.py"


def _example():
    spec = importlib.util.spec_from_file_location("batch_screening_example", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


example = _example()


def test_scaled_beam_equals_the_fem_run_at_each_modulus():
    from simulators.beam import BeamSimulator

    sim = example.beam()
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.uniform(2e3, 1e4, 12), rng.uniform(0.5, 2.0, 12)])
    E = rng.uniform(*example.E_BOUNDS, 12)
    got = example.simulator(sim).run_batch(X, E[:, None])
    fine = BeamSimulator(2.0, 8e-6, sensors=[1.0, 2.0], n_elements=20)
    want = fine.run_batch(X, np.column_stack([E, np.full(12, np.inf)]))
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_example_screens_the_batches_and_writes_its_figure(tmp_path, capsys):
    out = tmp_path / "screen.png"
    post, found = example.main(["--small", "--out", str(out)])
    assert out.stat().st_size > 10_000
    clear = {n for n, d in example.DIFFERENT.items() if abs(d) >= 0.04}
    assert clear <= set(found), str(found)
    assert set(found) <= set(example.DIFFERENT), str(found)  # no false discovery here
    assert found.estimated_fdr <= example.FDR
    text = capsys.readouterr().out
    assert "campaigns differ at a Bayesian FDR of 0.1" in text
