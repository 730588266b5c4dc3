#!/usr/bin/env python
"""Subsidence benchmark: the per-point fit of an InSAR time series product.

Prints one Markdown table. The product is a synthetic MintPy ``timeseries.h5``
(geocoded, float32, ``--side`` x ``--side`` pixels x ``--dates`` epochs, 12-day repeat:
1000 x 1000 x 100 = 1,000,000 points x 100 epochs, 400 MB), written untimed in row
blocks: two Gaussian subsidence bowls (-80 and -40 mm/yr), a 3 mm annual term and
3 mm white noise per epoch, referred to the first date and a corner pixel.

(i) points x epochs per second of the linear velocity fit (offset + velocity, the
    standard error from the residuals) read straight from the file:
    :func:`read_mintpy` chunks of 200,000 points through :func:`fit_series`. Baseline:
    MintPy's own ``timeseries2velocity`` (the ``mintpy`` package from PyPI, default
    options: linear model, ``--uq residue``) on the same file in the same run, writing
    its ``velocity.h5``. Each runs in a fresh interpreter; the figure is wall time from
    the start of the call to the velocities in hand, interpreter start-up excluded.
    Target (the subsidence issue): at least as fast as MintPy.
(ii) the largest absolute difference between the two velocity grids, mm/yr, over all
    pixels; our fit on MintPy's decimal-year clock (``time_axis="decimal_year"``, the
    same model). Target: under 0.01 mm/yr. The note gives the difference with our
    default uniform clock (days / 365.25).
(iii) wall time of the full per-point model on the same file: offset, velocity,
    acceleration, annual sine and cosine, their standard errors, residual RMS,
    temporal coherence and the trend-change search (all candidate breaks).
    Target: under 60 s. Baseline: MintPy's linear fit above.
(iv) peak resident memory (``ru_maxrss`` of the interpreter) of (iii). Target: under
    8 GiB. Baseline: MintPy's peak in (i).
(v) :meth:`PointStore.create` of the file (the ``import`` command: grid index, rows
    sorted by cell, HDF5 + Parquet) and :func:`fit_store` of the store (full model):
    wall time, for information.

When MintPy is not importable its cells read "n/a (mintpy not installed)".

Usage::

    python bench/subsidence.py            # full sizes (about 3 minutes on 2 cores)
    python bench/subsidence.py --quick    # a smoke run in seconds
"""

from __future__ import annotations

import argparse
import faulthandler
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._common import log, markdown, print_report, yes_no  # noqa: E402
from cityos.apps.subsidence.synthetic import (  # noqa: E402
    demo_dates,
    mintpy_attributes,
    write_mintpy_timeseries,
)

FULL = {"side": 1000, "dates": 100}
QUICK = {"side": 100, "dates": 30}
TARGET_DIFF_MM_YR = 0.01
TARGET_WALL_S = 60.0
TARGET_MEMORY_GIB = 8.0
NA = "n/a (mintpy not installed)"

HEAD = ["measure", "figure", "target (subsidence issue)", "baseline", "ratio to baseline",
        "target met"]


def write_product(path: Path, side: int, n_dates: int, seed: int = 3) -> None:
    """The synthetic 1000 x 1000 product, written 50 rows at a time."""
    dates = demo_dates(n_dates)
    t = (dates - dates[0]).astype(np.float64) / 365.25
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:side, 0:side] / side
    rate = (-80.0 * np.exp(-((x - 0.35) ** 2 + (y - 0.4) ** 2) / (2 * 0.12 ** 2))
            - 40.0 * np.exp(-((x - 0.7) ** 2 + (y - 0.65) ** 2) / (2 * 0.08 ** 2)))
    season = 3.0 * np.sin(2 * np.pi * t)

    def block(r0: int, r1: int) -> np.ndarray:
        mm = (rate[None, r0:r1] * t[:, None, None] + season[:, None, None]
              + rng.normal(0, 3.0, (n_dates, r1 - r0, side)))
        mm -= mm[0]
        return (mm / 1000.0).astype(np.float32)

    attrs = mintpy_attributes(side, side, dates, x_first=106.7, y_first=-6.08,
                              x_step=0.25 / side, y_step=-0.2 / side, ref_yx=(0, 0))
    write_mintpy_timeseries(path, dates, block, attrs, shape=(side, side), block_rows=50)
    with h5py.File(path, "r+") as h5:  # refer everything to the reference pixel exactly
        ref = h5["timeseries"][:, 0, 0].copy()
        for r0 in range(0, side, 50):
            h5["timeseries"][:, r0:r0 + 50, :] -= ref[:, None, None]


_OURS = """
import json, resource, sys, time
import numpy as np
from cityos.apps.subsidence.products import read_mintpy
from cityos.apps.subsidence.fit import fit_series
path, out, mode, axis = sys.argv[1:5]
started = time.perf_counter()
product = read_mintpy(path)
vel, ids = [], []
full = mode == "full"
for chunk in product.chunks(200_000):
    res = fit_series(product.dates, chunk.displacement_mm, seasonal=full, acceleration=full,
                     trend_change=full, wavelength_m=product.wavelength_m, time_axis=axis)
    vel.append(res["velocity_mm_yr"])
    ids.append(chunk.ids)
elapsed = time.perf_counter() - started
np.save(out, np.concatenate(vel))
np.save(out.replace(".npy", "_ids.npy"), np.concatenate(ids))
print(json.dumps({"s": elapsed, "rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""

_MINTPY = """
import contextlib, io, json, resource, sys, time
path, out = sys.argv[1:3]
from mintpy.cli import timeseries2velocity
import mintpy.timeseries2velocity  # noqa: F401  (imported untimed, as ours is)
started = time.perf_counter()
with contextlib.redirect_stdout(io.StringIO()):
    timeseries2velocity.main([path, "-o", out])
elapsed = time.perf_counter() - started
print(json.dumps({"s": elapsed, "rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""

_STORE = """
import json, resource, sys, time
from cityos.apps.subsidence.products import read_mintpy
from cityos.apps.subsidence.points import PointStore
from cityos.apps.subsidence.fit import fit_store
path, directory = sys.argv[1:3]
started = time.perf_counter()
store = PointStore.create(directory, read_mintpy(path))
imported = time.perf_counter() - started
fit_store(store)
fitted = time.perf_counter() - started - imported
print(json.dumps({"import_s": imported, "fit_s": fitted,
                  "rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def _run(code: str, *args: str) -> dict:
    run = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True,
                         text=True, timeout=1800)
    if run.returncode != 0:
        raise SystemExit(f"bench step failed: {run.stderr[-3000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def mintpy_available() -> bool:
    return importlib.util.find_spec("mintpy") is not None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--side", type=int, help="pixels per side")
    parser.add_argument("--dates", type=int, help="epochs")
    parser.add_argument("--no-mintpy", action="store_true", help="skip the MintPy baseline")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    faulthandler.dump_traceback_later(300 if args.quick else 2400, exit=True)
    sizes = dict(QUICK if args.quick else FULL)
    for key in sizes:
        if getattr(args, key) is not None:
            sizes[key] = getattr(args, key)
    side, n_dates = sizes["side"], sizes["dates"]
    n_points = side * side
    work = n_points * n_dates
    have_mintpy = mintpy_available() and not args.no_mintpy
    global NA
    if mintpy_available() and args.no_mintpy:
        NA = "n/a (mintpy skipped)"
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    rows: list[list[str]] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="cityos-bench-subsidence-") as tmp:
        work_dir = Path(tmp)
        ts = work_dir / "timeseries.h5"
        log(f"writing a {side} x {side} x {n_dates} MintPy timeseries.h5")
        write_product(ts, side, n_dates)
        log("ours: linear fit, MintPy clock")
        lin = _run(_OURS, str(ts), str(work_dir / "ours.npy"), "linear", "decimal_year")
        log("ours: linear fit, uniform clock")
        _run(_OURS, str(ts), str(work_dir / "ours_days.npy"), "linear", "days")
        log("ours: full model")
        full = _run(_OURS, str(ts), str(work_dir / "full.npy"), "full", "days")
        mp = None
        if have_mintpy:
            log("MintPy timeseries2velocity")
            mp = _run(_MINTPY, str(ts), str(work_dir / "velocity.h5"))
        log("PointStore.create + fit_store")
        store = _run(_STORE, str(ts), str(work_dir / "store"))

        ours_rate = work / lin["s"]
        if mp is not None:
            with h5py.File(work_dir / "velocity.h5", "r") as h5:
                theirs = h5["velocity"][()].astype(np.float64).ravel() * 1000.0
            ids = np.load(work_dir / "ours_ids.npy")
            diff = np.abs(np.load(work_dir / "ours.npy") - theirs[ids])
            diff_days = np.abs(np.load(work_dir / "ours_days.npy") - theirs[ids])
            mp_rate = work / mp["s"]
            rows.append([f"(i) linear velocity fit, {n_points:,} points x {n_dates} epochs",
                         f"{ours_rate / 1e6:,.1f} M pt-epochs/s ({lin['s']:.1f} s)",
                         ">= MintPy",
                         f"MintPy timeseries2velocity {mp_rate / 1e6:,.1f} M pt-epochs/s "
                         f"({mp['s']:.1f} s)", f"{ours_rate / mp_rate:.2f}x",
                         yes_no(ours_rate >= mp_rate)])
            rows.append(["(ii) largest absolute velocity difference from MintPy",
                         f"{diff.max():.5f} mm/yr", "< 0.01 mm/yr", "MintPy velocity.h5",
                         "", yes_no(diff.max() < TARGET_DIFF_MM_YR)])
            notes.append(f"(ii) over {len(ids):,} pixels; with our default uniform clock "
                         f"(days / 365.25) instead of MintPy's decimal years the largest "
                         f"difference is {diff_days.max():.4f} mm/yr (median "
                         f"{np.median(diff_days):.4f}): the two clocks differ by up to "
                         "a quarter day a year")
        else:
            rows.append([f"(i) linear velocity fit, {n_points:,} points x {n_dates} epochs",
                         f"{ours_rate / 1e6:,.1f} M pt-epochs/s ({lin['s']:.1f} s)",
                         ">= MintPy", NA, NA, NA])
            rows.append(["(ii) largest absolute velocity difference from MintPy", NA, "< 0.01 mm/yr",
                         NA, NA, NA])
        full_gib = full["rss_kib"] / 2**20
        rows.append([f"(iii) full model (acceleration, annual, coherence, trend change), "
                     f"{n_points:,} x {n_dates}",
                     f"{full['s']:.1f} s ({work / full['s'] / 1e6:,.1f} M pt-epochs/s)",
                     "< 60 s", NA if mp is None else f"MintPy linear {mp['s']:.1f} s",
                     NA if mp is None else f"{full['s'] / mp['s']:.2f}x",
                     yes_no(full["s"] < TARGET_WALL_S)])
        rows.append(["(iv) peak memory of (iii)", f"{full_gib:.2f} GiB", "< 8 GiB",
                     NA if mp is None else f"MintPy {mp['rss_kib'] / 2**20:.2f} GiB",
                     NA if mp is None else f"{full['rss_kib'] / mp['rss_kib']:.2f}x",
                     yes_no(full_gib < TARGET_MEMORY_GIB)])
        rows.append(["(v) PointStore.create + fit_store (full model)",
                     f"{store['import_s']:.1f} s + {store['fit_s']:.1f} s", "", "", "", ""])
        notes.append(f"(v) peak memory {store['rss_kib'] / 2**20:.2f} GiB")
        if mp is not None:
            notes.append(f"(iv) MintPy peak {mp['rss_kib'] / 2**20:.2f} GiB "
                         "(it reads the whole cube at once below its 4 GB default limit)")
    kind = "full" if sizes == FULL else "quick" if sizes == QUICK else "custom"
    print_report("subsidence", kind, started, load_before, markdown(HEAD, rows), notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
