"""benchmarks/peers.py --quick runs and writes well-formed JSON with every problem.

A smoke test of the script, not of its figures: a quick run samples 40 steps, so its ESS,
posteriors and ratios mean nothing. About 40 s of CPU (three emulator fits, three short
samplings), hence ``slow``.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "peers.py"
PROBLEMS = ("surmise_linear", "ball_drop_1", "ball_drop_2")


def _has_data() -> bool:
    """The peers' data where benchmarks/problems_ball_drop.py looks for them."""
    sub = Path("data") / "ball_drop"
    for folder in (REPO, *REPO.parents):
        for cand in (folder / "shared" / sub, folder.parent / "shared" / sub):
            if (cand / "sepia_bd1" / "sim.dat").is_file():
                return True
    return False


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@pytest.mark.slow
@pytest.mark.skipif(not _has_data(), reason="shared/data/ball_drop not beside the repository")
def test_peers_quick_writes_every_problem(tmp_path):
    out = tmp_path / "peers.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--output", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert doc["benchmark"] == "peers" and doc["quick"] is True
    m = doc["machine"]
    assert m["nproc"] >= 1 and m["cpu_model"] and m["torch"] and m["shared"]
    assert set(doc["problems"]) == set(PROBLEMS)
    for name, p in doc["problems"].items():
        peer = p["peer"]
        assert len(p["rows"]) == 1, name
        row = p["rows"][0]
        for k in ("wall_s", "cpu_s", "min_ess_theta", "min_ess_theta_per_s", "rhat_max"):
            assert _finite(row[k]) and row[k] > 0, (name, k, row[k])
        # θ's posterior beside the peer's, for every θ the peer reports
        assert set(row["theta_mean"]) == set(peer["mean"]) == set(row["theta_sd"]), name
        assert all(_finite(v) for v in row["theta_mean"].values()), name
        assert all(_finite(v) and v > 0 for v in row["theta_sd"].values()), name
        assert isinstance(row["posterior_matches"], bool)
        assert isinstance(p["model"]["same_model"], bool) and p["model"]["differences"]
        lo, hi = p["ratio_calib_over_peer"]["median"]
        assert _finite(lo) and _finite(hi) and 0 < lo <= hi, name
        # item 1: ms per walker-evaluation at 16 and 64 walkers, beside SEPIA's 0.26 ms
        for w in ("16", "64"):
            c = p["per_walker_cost"][w]
            assert _finite(c["ms_per_walker_eval"]) and c["ms_per_walker_eval"] > 0, (name, w)
            assert c["sepia_ms_per_eval"] == 0.26
    assert "| surmise_linear | theta0 |" in proc.stdout  # the printed table
