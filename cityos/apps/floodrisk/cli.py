"""``cityos floodrisk ...``: run a flood-risk study, write its report, write the demo
catchment, publish results to the store."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from cityos.appkit.cli import fail, open_store, settings_options
from cityos.config import Settings

app = typer.Typer(no_args_is_help=True,
                  help="Flood risk and the value of adaptation: studies and reports.")


@app.callback()
def floodrisk() -> None:
    """Flood risk and the value of adaptation: studies and reports."""


def _money(value: float | None, currency: str) -> str:
    from cityos.apps.floodrisk.report import _money as money

    return money(value, currency)


@app.command("run")
def run(
    study: Path = typer.Argument(..., help="The study.yaml."),
    out: Path = typer.Option(None, "--out", help="Output folder [default: <study dir>/out]."),
    workers: int = typer.Option(1, "--workers", min=1, help="Worker processes."),
    dask: str = typer.Option(None, "--dask", help="Dask scheduler address, tcp://host:port "
                                                  "(runs go there instead of a local pool)."),
    cache: bool = typer.Option(True, "--cache/--no-cache", help="Reuse cached runs."),
    threads: int = typer.Option(None, "--threads-per-worker", min=1,
                                help="Solver threads per worker [default: the CPUs shared "
                                     "out among the workers]."),
) -> None:
    """Run every return period x package of a study, then impacts and economics."""
    from cityos.apps.floodrisk.inputs import InputError
    from cityos.apps.floodrisk.report import headline_sentence
    from cityos.apps.floodrisk.study import StudyError, parse_study, run_study
    from cityos.core.progress import Progress

    out = out or study.parent / "out"
    started = time.perf_counter()
    try:
        # one step per run of the matrix (return period x package), as each one ends
        with Progress(f"study {study.name}", total=len(parse_study(study).run_matrix()),
                      unit="runs") as bar:
            results = run_study(study, out, workers=workers, dask_address=dask,
                                use_cache=cache, threads_per_worker=threads,
                                progress=bar.step)
    except (StudyError, InputError) as error:
        fail(str(error), code=2)
    except FileNotFoundError as error:
        fail(str(error), code=2)
    currency = results.economics.get("currency", "")
    typer.echo("")
    for package in results.packages:
        ead = (results.baseline_ead if package == "baseline"
               else results.appraisals[package].ead)
        typer.echo(f"  {package:<20} EAD {_money(ead, currency)}/year")
    typer.echo("\n" + headline_sentence(results))
    typer.echo(f"\n{results.executed} runs simulated, {results.cached} from the cache; "
               f"results in {out} ({time.perf_counter() - started:.1f} s)")


@app.command("report")
def report(
    out_dir: Path = typer.Argument(..., help="The study's output folder (with summary.json)."),
    html: Path = typer.Option(None, "--html", help="HTML file [default: OUT_DIR/report.html]."),
) -> None:
    """Write the HTML report of a study's results."""
    from cityos.apps.floodrisk.report import write_report

    try:
        path = write_report(out_dir, html)
    except (FileNotFoundError, ValueError) as error:
        fail(str(error), code=2)
    typer.echo(f"wrote {path}")


@app.command("demo-catchment")
def demo_catchment(
    directory: Path = typer.Argument(..., help="Folder to write the demo study into."),
    size: int = typer.Option(200, min=20, help="Cells per side."),
    cell: float = typer.Option(10.0, "--cell-size", help="Cell size (m)."),
) -> None:
    """Write the demo new-town catchment and its study.yaml."""
    from cityos.apps.floodrisk.catchment import write_demo_catchment

    path = write_demo_catchment(directory, size=(size, size), cell_size_m=cell)
    typer.echo(f"wrote {path}; run it with: cityos floodrisk run {path} --workers 2")


@app.command("publish")
@settings_options("database_url", "default_tenant")
def publish(
    settings: Settings,
    out_dir: Path = typer.Argument(..., help="The study's output folder."),
    study_id: str = typer.Option(None, "--id", help="Study id [default: the folder name]."),
    package: str = typer.Option(None, help="Package drawn on the map [default: headline]."),
    return_period: float = typer.Option(None, "--return-period",
                                        help="Event drawn on the map [default: headline]."),
    tenant: str = typer.Option(None, help="Tenant [default: the default tenant]."),
) -> None:
    """Store a study's results for the API and its flood extents for the dashboard."""
    from cityos.apps.floodrisk.demo import publish_study
    from cityos.apps.floodrisk.report import render_report
    from cityos.apps.floodrisk.study import load_results

    try:
        results = load_results(out_dir)
    except (FileNotFoundError, ValueError) as error:
        fail(str(error), code=2)
    if package is not None and package not in results.packages:
        fail(f"--package: {package!r} is not one of {', '.join(results.packages)}", code=2)
    if return_period is not None and float(return_period) not in results.return_periods:
        fail(f"--return-period: {return_period:g} was not modelled "
              f"({', '.join(f'{t:g}' for t in results.return_periods)})", code=2)
    store = open_store(settings)
    try:
        ids = publish_study(store, tenant or settings.default_tenant, results,
                            study_id=study_id or Path(out_dir).resolve().name,
                            package=package, return_period=return_period,
                            report_html=render_report(results))
    finally:
        store.close()
    typer.echo(f"published {len(ids)} entities")
