"""``cityos transit ...``: import a GTFS feed, evaluate arrival predictions, drive a
feed's buses."""

from __future__ import annotations

from pathlib import Path

import typer

from cityos.appkit.cli import fail as _fail
from cityos.appkit.cli import open_store as _open_store
from cityos.appkit.cli import settings_options
from cityos.apps.transit.evaluate_cli import evaluate_command
from cityos.apps.transit.feed_cli import DroppedListOption, SkipInvalidOption, load_feed
from cityos.config import Settings
from cityos.core.errors import NgsiLdError
from cityos.core.progress import Progress

app = typer.Typer(no_args_is_help=True, help="Bus operations: GTFS import and more.")


@app.callback()
def transit() -> None:
    """Bus operations: GTFS import and more."""


@app.command("import")
@settings_options("database_url", "default_tenant")
def import_gtfs(
    settings: Settings,
    feed: Path = typer.Argument(..., help="GTFS zip or folder."),
    tenant: str = typer.Option(None, help="Tenant to import into [default: the default "
                                          "tenant]."),
    skip_invalid: SkipInvalidOption = False,
    dropped_list: DroppedListOption = None,
) -> None:
    """Import a GTFS feed: agencies, stops and routes become NGSI-LD entities.

    The whole feed is checked first. Errors are printed as `file.txt:line: field:
    what is wrong`, nothing is written and the exit status is 2; the rows dropped
    are counted by file and reason (every one of them in the --dropped-list file) and
    the warnings listed after the summary.
    """
    from cityos.apps.transit.entities import import_feed
    from cityos.core.tenancy import check_tenant_name

    tenant = tenant or settings.default_tenant
    try:
        check_tenant_name(tenant)
    except NgsiLdError as error:
        _fail(error.detail, 2)
    reading = load_feed(feed, skip_invalid=skip_invalid, dropped_list=dropped_list,
                        undone="nothing was imported")
    store = _open_store(settings)
    parsed = reading.feed
    total = len(parsed.agencies) + len(parsed.stops) + len(parsed.routes)
    try:
        with Progress(f"import {feed.name}", total=total, unit="entities") as bar:
            report = import_feed(store, tenant, reading, progress=bar.advance)
    except RuntimeError as error:
        _fail(str(error))
    finally:
        store.close()
    counts = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in report.counts.items())
    typer.echo(f"{feed.name}: {counts}")
    typer.echo(f"{feed.name}: wrote {report.entities_written} entities into tenant "
               f"{tenant!r}")
    if report.warnings:
        typer.echo(f"{len(report.warnings)} warnings:")
        for warning in report.warnings:
            typer.echo(f"  {warning}")


app.command("evaluate")(evaluate_command)


@app.command("sim")
def simulate(
    feed: Path = typer.Argument(..., exists=True, help="GTFS zip or folder to drive."),
    mqtt_url: str = typer.Option(None, "--mqtt-url",
                                 help="Broker of the ingester (preferred)."),
    base_url: str = typer.Option(None, "--base-url",
                                 help="A running server, for HTTP ingestion instead."),
    api_key: str = typer.Option("", "--api-key", envvar="CITYOS_API_KEY",
                                help="Operator key for HTTP ingestion."),
    tenant: str = typer.Option("default", help="Tenant the vehicles report to."),
    speedup: float = typer.Option(1.0, min=0.1, help="Simulated seconds per second."),
    scenario: str = typer.Option("congested", help="congested or normal."),
    seed: int = typer.Option(0, help="Seed of the simulated day."),
    day: str = typer.Option(None, "--day", help="Service day to replay, YYYY-MM-DD "
                                                "[default: today, or for a feed that "
                                                "runs nothing today the last day like it]."),
    start: str = typer.Option(None, "--start", help="Time of that day to start from, "
                                                    "HH:MM:SS [default: the time now, or "
                                                    "the first bus]."),
    skip_invalid: SkipInvalidOption = False,
    dropped_list: DroppedListOption = None,
) -> None:
    """Drive the buses of any GTFS feed through the real ingest path (MQTT or HTTP).

    The replayed day's pings are moved to the present: the replay starts now. When
    no bus would run (no service on the day, a start after the last bus) it says
    why and exits 1.
    """
    from datetime import date

    from cityos.apps.transit.gtfs import parse_time
    from cityos.apps.transit.sim import NothingToRun, plan_replay, simulate_feed
    from cityos.apps.transit.synthetic import SCENARIOS
    from cityos.core.clock import now_datetime

    if not mqtt_url and not base_url:
        raise typer.BadParameter("give --mqtt-url or --base-url", param_hint="--mqtt-url")
    if scenario not in SCENARIOS:
        raise typer.BadParameter(f"{scenario!r} is not one of {', '.join(SCENARIOS)}",
                                 param_hint="--scenario")
    try:
        service_day = None if day is None else date.fromisoformat(day)
    except ValueError:
        raise typer.BadParameter(f"{day!r} is not a date YYYY-MM-DD",
                                 param_hint="--day") from None
    try:
        start_s = None if start is None else parse_time(start)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--start") from None
    reading = load_feed(feed, skip_invalid=skip_invalid, dropped_list=dropped_list)
    try:
        plan = plan_replay(reading.feed, now_datetime(), day=service_day,
                           start_local_s=start_s, scenario=scenario, seed=seed)
    except NothingToRun as error:
        typer.echo(f"{feed.name}: {error}", err=True)
        raise typer.Exit(1) from None
    if plan.note:
        typer.echo(f"{feed.name}: {plan.note}", err=True)
    typer.echo(f"{feed.name}: replaying {plan.day}, {len(plan.trace.pings)} pings, "
               f"shifted {plan.shift_s:+.0f} s to the present", err=True)
    try:
        with Progress(f"sim {feed.name}", total=len(plan.trace.pings), unit="pings") as bar:
            published = simulate_feed(reading.feed, mqtt_url=mqtt_url, base_url=base_url,
                                      api_key=api_key, tenant=tenant, speedup=speedup,
                                      plan=plan, progress=bar.advance)
    except ConnectionError as error:
        _fail(str(error))
    typer.echo(f"{published} pings published")
