"""How every ``cityos transit`` command reads a GTFS feed: one path, one set of options.

``import``, ``evaluate`` and ``sim`` take the same ``--skip-invalid`` and
``--dropped-list`` options and call :func:`load_feed`, which reads the feed with
:func:`~cityos.apps.transit.gtfs.read_gtfs` and, on stderr:

* when the feed has errors: each as ``<feed>: file.txt:line: field: what is wrong``
  (the first hundred, then a count) and exit status 2, nothing else done;
* when rows were dropped (``--skip-invalid``, or trips with fewer than two stop
  times): per file how many and why, grouped
  (:func:`~cityos.apps.transit.gtfs.dropped_summary`), and the full list written as
  CSV to the file the last line names (``--dropped-list``, by default
  ``<feed name>-dropped.csv`` in the current folder).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cityos.apps.transit.gtfs import (
    FeedReading,
    GtfsError,
    dropped_summary,
    read_gtfs,
    write_dropped,
)

__all__ = ["DroppedListOption", "SkipInvalidOption", "default_dropped_list", "load_feed"]

SkipInvalidOption = Annotated[bool, typer.Option(
    "--skip-invalid", help="Drop the rows with errors (counted by file and reason, "
                           "listed in the --dropped-list file) instead of stopping.")]
DroppedListOption = Annotated[Path | None, typer.Option(
    "--dropped-list", help="Where to write every dropped row as CSV "
                           "[default: <feed name>-dropped.csv in the current folder].")]


def default_dropped_list(feed_path: Path) -> Path:
    """``<feed name without .zip>-dropped.csv`` in the current folder."""
    name = feed_path.name.removesuffix(".zip") or "feed"
    return Path.cwd() / f"{name}-dropped.csv"


def load_feed(path: Path, *, skip_invalid: bool = False, dropped_list: Path | None = None,
              undone: str = "nothing was read") -> FeedReading:
    """Read a feed for a command; report its errors or its dropped rows on stderr.

    Parameters
    ----------
    path : Path
        A GTFS zip or folder.
    skip_invalid : bool
        Drop rows with errors instead of stopping.
    dropped_list : Path, optional
        Where to write the dropped rows (default :func:`default_dropped_list`).
    undone : str
        What the error count line says was not done (``"nothing was imported"``).

    Returns
    -------
    FeedReading

    Raises
    ------
    typer.Exit
        Status 2 when the feed has errors (they are printed first).
    """
    try:
        reading = read_gtfs(path, skip_invalid=skip_invalid)
    except GtfsError as error:
        for problem in error.problems:
            typer.echo(f"{path.name}: {problem}", err=True)
        if error.total > len(error.problems):
            typer.echo(f"{path.name}: ... and {error.total - len(error.problems)} more",
                       err=True)
        hint = "" if skip_invalid else " (--skip-invalid drops the rows with errors)"
        typer.echo(f"{path.name}: {error.total} errors; {undone}{hint}", err=True)
        raise typer.Exit(2) from None
    if reading.dropped:
        for line in dropped_summary(reading.dropped):
            typer.echo(f"{path.name}: {line}", err=True)
        target = dropped_list or default_dropped_list(path)
        try:
            write_dropped(reading.dropped, target)
        except OSError as error:
            typer.echo(f"{path.name}: could not write the dropped rows to {target}: "
                       f"{error.strerror}", err=True)
        else:
            typer.echo(f"{path.name}: every dropped row, with its line and reason: {target}",
                       err=True)
    return reading
