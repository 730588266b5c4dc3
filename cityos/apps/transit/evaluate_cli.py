"""``cityos transit evaluate``: how good the arrival predictions are on a held-out day.

Simulates ``--days`` service days of a feed (the demo city's, or ``--feed``), trains
an :class:`~cityos.apps.transit.prediction.ArrivalPredictor` on their observed
arrivals, replays the pings of the next day through it and prints the error table
of :func:`~cityos.apps.transit.evaluation.evaluate` (Markdown).

The transit command group registers it with
``app.command("evaluate")(evaluate_command)``; the function can also be called
directly and returns the report.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Annotated

import typer

from cityos.apps.transit.evaluation import EvaluationReport, evaluate
from cityos.apps.transit.feed_cli import DroppedListOption, SkipInvalidOption, load_feed
from cityos.apps.transit.models import Feed
from cityos.core.progress import Progress

__all__ = ["evaluate_command", "service_weekdays"]

DEFAULT_START = "2025-03-03"  # a Monday inside the demo feed's calendar
SEARCH_DAYS = 400  # how far ahead of --start to look for days with service


def service_weekdays(feed: Feed, start: date, count: int) -> list[date]:
    """The first ``count`` weekdays from ``start`` on which ``feed`` runs trips and
    that are not holidays (weekday service only).

    Raises
    ------
    ValueError
        When the feed runs on fewer such days within :data:`SEARCH_DAYS`.
    """
    from cityos.apps.transit.prediction import day_type

    found: list[date] = []
    day = start
    for _ in range(SEARCH_DAYS):
        if day.weekday() < 5 and day_type(feed, day) == 0 and feed.services_on(day):
            found.append(day)
            if len(found) == count:
                return found
        day += timedelta(days=1)
    raise ValueError(f"start: the feed runs on {len(found)} weekday(s) in the "
                     f"{SEARCH_DAYS} days from {start}, {count} needed")


def evaluate_command(
    days: Annotated[int, typer.Option("--days", min=1, max=60,
                                      help="Simulated days to train on.")] = 5,
    scenario: Annotated[str, typer.Option("--scenario",
                                          help="congested or normal.")] = "congested",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the simulated days.")] = 0,
    feed_path: Annotated[Path | None, typer.Option(
        "--feed", exists=True, help="A GTFS zip or folder (default: the demo city).")] = None,
    start: Annotated[str, typer.Option("--start", help="First training day, YYYY-MM-DD "
                                       "(the next weekdays with service follow).")]
    = DEFAULT_START,
    every_s: Annotated[float, typer.Option("--every", min=1.0, help="Seconds between "
                                           "scored predictions of a vehicle.")] = 30.0,
    save: Annotated[Path | None, typer.Option(
        "--save", help="Also write the trained predictor here (.npz).")] = None,
    skip_invalid: SkipInvalidOption = False,
    dropped_list: DroppedListOption = None,
    routes: Annotated[list[str] | None, typer.Option(
        "--route", help="Simulate only this route (repeat for several) [default: all].")]
    = None,
) -> EvaluationReport:
    """Train on simulated days, evaluate on the held-out next day, print the table.

    Each day is simulated when its turn comes and only its arrivals (training) or its
    scores (the held-out day) are kept, so memory does not grow with the days.
    """
    from cityos.apps.transit import synthetic
    from cityos.apps.transit.prediction import ArrivalPredictor

    if scenario not in synthetic.SCENARIOS:
        raise typer.BadParameter(f"{scenario!r} is not one of {', '.join(synthetic.SCENARIOS)}",
                                 param_hint="--scenario")
    try:
        first = date.fromisoformat(start)
    except ValueError:
        raise typer.BadParameter(f"{start!r} is not a date YYYY-MM-DD",
                                 param_hint="--start") from None
    if feed_path is None:
        feed = synthetic.demo_feed(seed)
    else:
        feed = load_feed(feed_path, skip_invalid=skip_invalid, dropped_list=dropped_list).feed
    try:
        service_days = service_weekdays(feed, first, days + 1)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--start") from None
    timezone = next((a.timezone for a in feed.agencies.values()), None) or "UTC"
    typer.echo(f"Simulating {days + 1} day(s) from {service_days[0]} ({scenario}, "
               f"{timezone}) ...", err=True)

    def simulated(day: date):
        return synthetic.simulate_day(feed, day, scenario, seed=seed,
                                      route_ids=routes or None)

    with Progress("evaluate", total=days + 1, unit="days") as bar:
        def arrivals():
            for day in service_days[:-1]:  # one simulated day in memory at a time
                trace = simulated(day)
                yield from trace.arrivals
                bar.step(f"training day {day}", f"{len(trace.arrivals):,} arrivals")
                # Drop the day before the next is simulated: the name would otherwise
                # hold it while the next one is built, two days' pings at the peak.
                del trace

        def held_out():
            for day in service_days[-1:]:
                trace = simulated(day)
                yield trace
                bar.step(f"held-out day {day}", f"{len(trace.pings):,} pings replayed")

        predictor = ArrivalPredictor()
        predictor.learn(arrivals(), feed)
        if save is not None:
            predictor.save(save)
        report = evaluate(feed, [], held_out(), every_s=every_s, predictor=predictor,
                          scenario=scenario, train_day_count=days)
    typer.echo(report.table())
    return report
