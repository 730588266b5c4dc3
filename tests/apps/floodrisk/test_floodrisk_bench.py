"""``bench/floodrisk.py --quick`` still runs end to end: a smoke test that keeps the
benchmark from rotting. It asserts the table's shape, never a speed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_floodrisk_bench_quick_prints_its_table():
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "floodrisk.py"), "--quick"],
                         cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]
    table = [line.split("|")[1:-1] for line in run.stdout.splitlines()
             if line.startswith("| (")]
    assert [row[0].strip()[:3] for row in table][:2] == ["(a)", "(a)"]
    solver, event = table[0], table[1]
    assert solver[1].strip().endswith("M cell updates/s") and solver[1].strip()[0].isdigit()
    assert solver[3].strip().startswith("numpy engine") and solver[4].strip().endswith("x")
    assert event[1].strip().endswith("min") and event[5].strip() in ("yes", "NO")
    study = [row for row in table if row[0].strip().startswith("(b)")]
    assert study, run.stdout
    assert "agree to 1e-9: yes" in run.stdout
    if "n/a" not in study[0][1]:
        assert len(study) == 2 and study[1][4].strip().endswith("x")
