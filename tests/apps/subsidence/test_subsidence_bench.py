"""``bench/subsidence.py --quick`` still runs end to end (a 100 x 100 x 30 product,
MintPy's ``timeseries2velocity`` when installed): a smoke test that keeps the benchmark
from rotting. It asserts the table's shape, never a speed."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_subsidence_bench_quick_prints_its_table():
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "subsidence.py"), "--quick"],
                         cwd=ROOT, capture_output=True, text=True, timeout=280)
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]
    table = [line.split("|")[1:-1] for line in run.stdout.splitlines()
             if line.startswith("| (")]
    assert [cells[0].strip().split(" ")[0] for cells in table] == \
        ["(i)", "(ii)", "(iii)", "(iv)", "(v)"]
    assert all(len(cells) == 6 for cells in table)
    assert "M pt-epochs/s" in table[0][1] and table[0][1].strip()[0].isdigit()
    assert table[2][1].strip().endswith("M pt-epochs/s)")
    assert table[3][1].strip().endswith("GiB")
    if importlib.util.find_spec("mintpy") is not None:
        assert table[0][3].strip().startswith("MintPy timeseries2velocity")
        assert table[0][4].strip().endswith("x")
        assert table[1][1].strip().endswith("mm/yr")
    else:
        assert table[0][3].strip() == "n/a (mintpy not installed)"
