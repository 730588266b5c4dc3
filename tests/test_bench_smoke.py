"""``bench/core.py --quick`` still runs end to end (tiny sizes, SQLite): a smoke test
that keeps the benchmark from rotting. It asserts the table's shape, never a speed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_core_bench_quick_prints_its_table():
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "core.py"), "--quick", "--backends", "sqlite",
         "--observations", "1000", "--mqtt-observations", "500", "--entities", "500",
         "--history-rows", "5000", "--queries", "10"],
        cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]
    table = [line for line in run.stdout.splitlines() if line.startswith("| SQLite")]
    measures = [line.split("|")[2].strip()[:3] for line in table]
    assert measures == ["(a)", "(b)", "(c)", "(d)", "(d)", "(e)", "(e)"], run.stdout
    vias = [line.split("|")[3].strip() for line in table]
    assert vias[3:] == ["store API", "HTTP", "store API", "HTTP"]
    figures = {line.split("|")[2].strip()[:3] + line.split("|")[3].strip():
               line.split("|")[4].strip() for line in table}
    for key, figure in figures.items():
        if not key.startswith("(c)"):  # (c) is n/a when no broker runs here
            assert figure != "n/a" and figure[0].isdigit(), (key, figure)
    assert "WRONG" not in run.stdout
    assert "(e) set-up: 5,000 history rows" in run.stdout
