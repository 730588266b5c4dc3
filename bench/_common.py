"""What every benchmark in ``bench/`` shares: progress on stderr, the Markdown table
on stdout, percentiles and the yes/no of a target.

The leading underscore keeps ``make bench`` from running this module as a benchmark.
"""

from __future__ import annotations

import math
import os
import sys
import time
from datetime import UTC, datetime


def log(message: str) -> None:
    """Print progress on stderr; stdout carries the table only."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def percentile(samples: list[float], share: float) -> float:
    """Nearest-rank percentile of ``samples``.

    Parameters
    ----------
    samples : list of float
        Measurements; at least one.
    share : float
        The percentile as a share, 0-1 (0.99 for p99).

    Returns
    -------
    float
        The smallest sample with at least ``share`` of the samples at or below it.
    """
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


def yes_no(ok: bool) -> str:
    """The "target met" cell."""
    return "yes" if ok else "NO"


def markdown(head: list[str], rows: list[list[str]]) -> str:
    """A Markdown table with aligned columns.

    Parameters
    ----------
    head : list of str
        Column titles.
    rows : list of list of str
        The cells, one list per row, as many as ``head``.

    Returns
    -------
    str
        The table, without a trailing newline.
    """
    cells = [head] + rows
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) + " |"
             for line in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def print_report(app: str, kind: str, started: float, load_before: float, table: str,
                 notes: list[str]) -> None:
    """Print a benchmark's title line, its Markdown table and its notes on stdout.

    Parameters
    ----------
    app : str
        What was measured (``core``, ``transit`` ...), for the title.
    kind : str
        ``full``, ``quick`` or ``custom`` sizes.
    started : float
        ``time.monotonic()`` when the benchmark began.
    load_before : float
        The 1-minute load average then: a shared machine shows in the figures.
    table : str
        The table (:func:`markdown`).
    notes : list of str
        One bullet each, after the table.
    """
    print(f"CityOS {app} benchmark ({kind} sizes; {os.cpu_count()} CPUs; "
          f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {time.monotonic() - started:.0f} s; "
          f"1-min load average {load_before:.2f} at start, {os.getloadavg()[0]:.2f} at end)\n")
    print(table)
    if notes:
        print()
        for note in notes:
            print(f"- {note}")
