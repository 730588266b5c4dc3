"""``cityos floodwatch ...``: evaluate nowcasts, evaluate pump control, write the event
report."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from cityos.appkit.cli import fail, open_store, settings_options
from cityos.config import Settings
from cityos.core.clock import now as clock_now

app = typer.Typer(no_args_is_help=True, help="Urban flood watch: nowcasts, pumps, reports.")
pumps_app = typer.Typer(no_args_is_help=True, help="Drainage-pump control.")
app.add_typer(pumps_app, name="pumps")


@app.callback()
def floodwatch() -> None:
    """Urban flood watch: nowcasts, pumps, reports."""


@app.command("evaluate")
def evaluate(
    seed: int = typer.Option(0, help="Seed of the synthetic catchment."),
    days: float = typer.Option(60.0, min=4.0, help="Days of record: the first half trains, "
                                                   "the second half is held out."),
    sites: int = typer.Option(5, min=1, help="Sites (each with its own response)."),
    threshold: float = typer.Option(20.0, help="Depth (cm) whose exceedance is warned."),
    forecast: bool = typer.Option(True, "--rain-forecast/--no-rain-forecast",
                                  help="Give the models a 30-minute rain forecast."),
) -> None:
    """Nowcast skill on held-out storms of the synthetic catchment: RMSE by horizon,
    hit rate, false-alarm ratio and warning lead time, against persistence."""
    from cityos.apps.floodwatch.nowcast_eval import run_synthetic_evaluation
    from cityos.core.progress import Progress

    started = time.perf_counter()
    with Progress("nowcast evaluation", total=sites, unit="sites") as bar:
        report = run_synthetic_evaluation(seed=seed, days=days, sites=sites,
                                          threshold_cm=threshold, rain_forecast=forecast,
                                          progress=lambda site: bar.step(f"site {site}"))
    typer.echo(report.table())
    typer.echo(f"\n({time.perf_counter() - started:.1f} s)")


@pumps_app.command("evaluate")
def pumps_evaluate(
    scenario: str = typer.Option("both", help="beta (pystorms), demo (the demo catchment) "
                                              "or both."),
    workers: int = typer.Option(None, min=1, help="Worker processes (default one per "
                                                  "strategy)."),
) -> None:
    """Uncontrolled, rule-based and predictive pump control in one run: pystorms' beta
    scenario scored with its own metric, and flooding at the demo catchment's sensor
    nodes."""
    from cityos.apps.floodwatch.swmm_eval import evaluate_demo_catchment, evaluate_pystorms_beta
    from cityos.core.progress import Progress

    if scenario not in ("beta", "demo", "both"):
        fail(f"--scenario: {scenario!r} is not beta, demo or both")
    scenarios = {"beta": ("pystorms beta", evaluate_pystorms_beta),
                 "demo": ("demo catchment", evaluate_demo_catchment)}
    chosen = list(scenarios) if scenario == "both" else [scenario]
    # one step per scenario (each runs its three strategies side by side)
    with Progress("pump evaluation", total=len(chosen), unit="scenarios") as bar:
        for name in chosen:
            label, evaluate_scenario = scenarios[name]
            bar.start(label)
            started = time.perf_counter()
            table = evaluate_scenario(workers=workers).table()
            elapsed = time.perf_counter() - started
            bar.step(label)
            typer.echo(table)
            typer.echo(f"({elapsed:.1f} s)" + ("\n" if name != chosen[-1] else ""))


@app.command("report")
@settings_options("database_url", "default_tenant")
def report(
    settings: Settings,
    output: Path = typer.Argument(Path("flood-report.html"), help="HTML file to write."),
    tenant: str = typer.Option(None, help="Tenant [default: the default tenant]."),
    since: str = typer.Option(None, help="Start, ISO 8601 [default: 30 days ago]."),
    until: str = typer.Option(None, help="End, ISO 8601 [default: now]."),
    tz: str = typer.Option("Asia/Kuala_Lumpur", help="Time zone of the tables and of the "
                                                     "same-hour traffic comparison."),
) -> None:
    """Write the event report of the stored readings: rain and flood events per site,
    time to each level, correlation of rain with flood duration, traffic impact."""
    from cityos.apps.floodwatch import history
    from cityos.apps.floodwatch.report import ReportOptions, write_report
    from cityos.core.timefmt import parse_datetime

    def instant(value: str | None, name: str, default: float) -> float:
        if value is None:
            return default
        try:
            return parse_datetime(value, name).timestamp()
        except ValueError as error:
            fail(f"--{name}: {error}")

    end = instant(until, "until", clock_now())
    begin = instant(since, "since", end - 30 * 86_400.0)
    store = open_store(settings)
    try:
        tenant = tenant or settings.default_tenant
        records = [history.site_record(store, tenant, site, start_t=begin, end_t=end)
                   for site in history.sites_of(store, tenant)]
    finally:
        store.close()
    records = [r for r in records if len(r.depth_t)]
    if not records:
        fail(f"tenant {tenant!r} has no flood-sensor readings in that period")
    try:
        path = write_report(output, records, ReportOptions(tz=tz))
    except ValueError as error:
        fail(str(error))
    typer.echo(f"wrote {path} ({len(records)} sites)")
