"""The clock matrix's libfaketime set-up (.ci/clock-matrix) keeps a Python process usable.

Under libfaketime 0.9.10 with the monotonic clock faked, the first lock time-out of a
Python process waits for ever; with it left alone, ``time.sleep`` fails with EINVAL.
.ci/clock-matrix preloads .ci/monotonic-sleep.c before libfaketime to make both work.
These tests run a small program under that exact preload and check that the wall
clock is the fixed one while sleeps, lock time-outs and event waits still return.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FAKETIME_LIB = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")

PROGRAM = """
import datetime, threading, time
print(datetime.datetime.now().strftime("%Y-%m-%d %H:%M"))
time.sleep(0.05)
lock = threading.Lock(); lock.acquire()
print(lock.acquire(timeout=0.05))
print(threading.Event().wait(0.05))
"""


@pytest.fixture(scope="module")
def preload(tmp_path_factory) -> str:
    """The LD_PRELOAD value .ci/clock-matrix uses, with the wrapper compiled."""
    if not FAKETIME_LIB.exists() or shutil.which("cc") is None:
        if os.environ.get("CI"):
            pytest.fail("CI needs faketime and cc (scripts/ensure-services.sh installs them)")
        pytest.skip("libfaketime or cc is not installed")
    shim = tmp_path_factory.mktemp("shim") / "monotonic-sleep.so"
    subprocess.run(
        ["cc", "-shared", "-fPIC", "-O2", "-o", str(shim),
         str(ROOT / ".ci" / "monotonic-sleep.c"), "-ldl"],
        check=True,
    )
    return f"{shim}:{FAKETIME_LIB}"


@pytest.mark.parametrize("zone, spec, local", [
    ("UTC", "@2026-12-07 23:59:00", "2026-12-07 23:59"),
    ("Asia/Bangkok", "@2026-12-08 01:30:00", "2026-12-08 01:30"),
])
def test_a_faked_wall_clock_leaves_sleeps_and_time_outs_working(preload, zone, spec, local):
    env = dict(os.environ, TZ=zone, FAKETIME=spec, FAKETIME_DONT_FAKE_MONOTONIC="1",
               LD_PRELOAD=preload)
    done = subprocess.run([sys.executable, "-c", PROGRAM], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [*local.split(), "False", "False"]
