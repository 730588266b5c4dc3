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
    try:
        report = import_feed(store, tenant, reading)
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
) -> None:
    """Drive the buses of any GTFS feed through the real ingest path (MQTT or HTTP)."""
    from cityos.apps.transit.sim import simulate_feed

    if not mqtt_url and not base_url:
        raise typer.BadParameter("give --mqtt-url or --base-url", param_hint="--mqtt-url")
    published = simulate_feed(feed, mqtt_url=mqtt_url, base_url=base_url, api_key=api_key,
                              tenant=tenant, speedup=speedup, scenario=scenario, seed=seed)
    typer.echo(f"{published} pings published")
