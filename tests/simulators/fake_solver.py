#!/usr/bin/env python3
"""A small stand-in for an external solver, run by the CommandSimulator tests.

usage: fake_solver.py INPUT_FILE MODE

Reads ``name = value`` lines, computes ``tip = load * L**3 / (3 * E)`` and ``root = load * L``
with L = 2, and reports them according to MODE: ``stdout``, ``file`` (numbers in
out.txt), ``csv``, ``json``. Injected failures, chosen by the ``case`` input:
case % 10 == 3 exits 2 with a message on stderr, case % 10 == 6 hangs (a child process
too), case % 10 == 9 writes garbage. A directory that already holds out.txt is refused, to
prove that every run gets a fresh one.
"""

import json
import os
import subprocess
import sys
import time

path, mode = sys.argv[1], sys.argv[2]
if os.path.exists("out.txt"):
    sys.exit("stale out.txt: the working directory was reused")
values = {}
with open(path) as fh:
    for line in fh:
        if "=" in line:
            k, v = line.split("=")
            values[k.strip()] = float(v)
load, E, case = values["load"], values["E"], int(values.get("case", 0))
tip, root = load * 2.0**3 / (3.0 * E), load * 2.0
if case % 10 == 3:
    print("solver: matrix is singular at step 7", file=sys.stderr)
    sys.exit(2)
if case % 10 == 6:
    print("solver: starting a long iteration", file=sys.stderr, flush=True)
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    time.sleep(60)
if case % 10 == 9:
    print("tip = ###### overflow")
    sys.exit(0)
if mode == "stdout":
    print(f"converged\n{tip!r} {root!r}")
elif mode == "file":
    with open("out.txt", "w") as fh:
        fh.write(f"{tip!r}\n{root!r}\n")
elif mode == "csv":
    print(f"root,tip,step\n0,0,0\n{root!r},{tip!r},1")
elif mode == "json":
    print(json.dumps({"tip": tip, "root": root, "nested": {"both": [tip, root]}}))
