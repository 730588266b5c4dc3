"""``bench/floodwatch.py --quick`` still runs end to end (a small city): a smoke test that
keeps the benchmark from rotting. It asserts the table's shape and the benchmark's own
cross-checks, never a speed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_floodwatch_bench_quick_prints_its_table():
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "floodwatch.py"), "--quick",
                          "--sites", "400", "--probes", "10", "--nowcast-sample", "10"],
                         cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]
    table = [line.split("|") for line in run.stdout.splitlines() if line.startswith("| (")]
    assert [row[1].strip()[:5] for row in table] == ["(i) r", "(i) q", "(ii) ", "(iii)",
                                                      "(iii)"], run.stdout
    for row in table:
        assert row[2].strip()[0].isdigit(), row  # a figure, not n/a
        assert row[5].strip().endswith("x"), row  # a ratio to the baseline
    assert "service and loop agree: yes" in run.stdout
    assert "WRONG" not in run.stdout
