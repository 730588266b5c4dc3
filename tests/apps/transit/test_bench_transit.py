"""``bench/transit.py --quick`` still runs end to end (a small fleet, the real GTFS
samples where present): a smoke test that keeps the benchmark from rotting. It
asserts the table's shape, never a speed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
GTFS_DIR = ROOT.parent / "shared" / "data" / "gtfs"


def test_transit_bench_quick_prints_its_table():
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "transit.py"), "--quick"],
                         cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]
    table = [line for line in run.stdout.splitlines() if line.startswith("| (")]
    measures = [line.split("|")[1].strip()[:4] for line in table]
    assert measures[0] == "(i) "
    fleet = table[0].split("|")
    assert fleet[2].strip().endswith("pings/s") and fleet[2].strip()[0].isdigit()
    assert fleet[4].strip().startswith("store only") and fleet[5].strip().endswith("x")
    expected = 4 if (GTFS_DIR / "transjakarta-2021.zip").exists() and \
        (GTFS_DIR / "kuala-lumpur-2014.zip").exists() else None
    if expected is not None:
        assert measures[1:-2] == ["(ii)"] * expected, run.stdout
        assert "TransJakarta 2021" in run.stdout
    # (iii): the evaluation's peak memory with 1 and 2 training days, in MB, with a ratio
    memory = table[-2:]
    assert [line.split("|")[1].strip()[:5] for line in memory] == ["(iii)"] * 2
    for line in memory:
        cells = line.split("|")
        assert cells[2].strip().endswith(" MB") and cells[5].strip().endswith("x")
    assert memory[1].split("|")[6].strip() in ("yes", "NO")
