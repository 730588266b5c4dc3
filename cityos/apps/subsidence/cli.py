"""``cityos subsidence ...``: import and fit a product, compare it with levelling, report,
serve it to customers, write the demo product."""

from __future__ import annotations

import typing
from pathlib import Path

import typer

from cityos.appkit.cli import fail, open_store, settings_options
from cityos.config import Settings

app = typer.Typer(no_args_is_help=True, help="Ground deformation from InSAR.")

STORE_HELP = "Point store directory (made by `cityos subsidence import`)."
INCIDENCE_HELP = ("Incidence angle (degrees from vertical, the scene's) for every point the "
                  "product gives none: turns line of sight into vertical motion.")
COMPONENTS = {"vertical": "vertical", "los": "line-of-sight", "east": "east-west"}


@app.callback()
def subsidence() -> None:
    """Ground deformation from InSAR: import, fit, compare, report, serve."""


def _points(directory: Path):
    from cityos.apps.subsidence.points import PointStore, PointStoreError

    try:
        return PointStore.open(directory)
    except PointStoreError as error:
        fail(str(error), 2)


def _format_error(error: Exception) -> typing.NoReturn:
    typer.echo(f"error: {error}", err=True)
    raise typer.Exit(2)


def _warn(message: str) -> None:
    typer.echo(f"warning: {message}", err=True)


@app.command("import")
def import_product(
    product: Path = typer.Argument(..., help="MintPy timeseries.h5, EGMS CSV or GeoTIFF stack."),
    store: Path = typer.Option(..., "--store", help="Point store directory to create."),
    geometry: Path = typer.Option(None, help="MintPy geometryGeo.h5 / geometryRadar.h5 "
                                             "[default: found beside the product]."),
    incidence: float = typer.Option(None, "--incidence", metavar="DEG", help=INCIDENCE_HELP),
) -> None:
    """Import an InSAR product into a point store (chunked; any size)."""
    from cityos.apps.subsidence.points import PointStore
    from cityos.apps.subsidence.products import (
        ProductError,
        missing_incidence,
        open_product,
        with_incidence,
    )
    from cityos.core.progress import Progress

    try:
        opened = open_product(product, **({"geometry_h5": geometry} if geometry else {}))
        if incidence is not None:
            opened = with_incidence(opened, incidence)
        with Progress(f"import {Path(product).name}", total=opened.n_points,
                      unit="points") as bar:
            points = PointStore.create(store, opened, progress=bar.advance)
    except (ProductError, OSError) as error:
        _format_error(error)
    dates = points.dates
    typer.echo(f"{store}: {points.n_points:,} points, {len(dates)} epochs "
               f"{str(dates[0])[:10]} .. {str(dates[-1])[:10]} ({points.meta.get('kind')})")
    if points.meta.get("kind") == "los" and not points.has_incidence:
        _warn(f"{missing_incidence(opened.format, product)}: the fit will give line-of-sight "
              "results only, no vertical velocity or east-west decomposition; give "
              "--incidence DEG (the scene's angle) to import or fit")


@app.command("fit")
def fit(store: Path = typer.Option(..., "--store", help=STORE_HELP),
        workers: int = typer.Option(1, min=1, help="Blocks fitted in parallel."),
        incidence: float = typer.Option(None, "--incidence", metavar="DEG",
                                        help=INCIDENCE_HELP + " Kept in the store.")) -> None:
    """Fit velocity, acceleration, seasonal terms and trend changes of every point."""
    import numpy as np

    from cityos.apps.subsidence.fit import fit_store
    from cityos.apps.subsidence.products import missing_incidence
    from cityos.core.progress import Progress

    points = _points(store)
    try:
        if incidence is not None:
            points.fill_incidence(incidence)
        with Progress(f"fit {store.name}", total=points.n_points, unit="points") as bar:
            columns = fit_store(points, workers=workers, progress=bar.advance)
    except ValueError as error:  # a bad angle, or dates too few for the model
        _format_error(error)
    kind = points.meta.get("kind", "los")
    if "velocity_vertical_mm_yr" in columns:
        component, velocity = "vertical", columns["velocity_vertical_mm_yr"]
    else:
        component, velocity = COMPONENTS.get(kind, kind), columns["velocity_mm_yr"]
    velocity = np.asarray(velocity, dtype=np.float64)
    good = velocity[np.isfinite(velocity)]
    spread = (f"{good.min():+.1f} .. {good.max():+.1f} mm/yr (median {np.median(good):+.1f})"
              if good.size else "none finite")
    changed = int(np.count_nonzero(columns.get("trend_change", [])))
    typer.echo(f"{store}: fitted {points.n_points:,} points; {component} velocity {spread}; "
               f"{changed:,} trend changes")
    if kind == "los" and component != "vertical":
        _warn(f"{missing_incidence(points.meta.get('format', ''), points.meta.get('source'))}"
              ": line-of-sight results stored, vertical velocity and east-west decomposition "
              "skipped; fit with --incidence DEG (the scene's angle) or import the product "
              "with its geometry file")


@app.command("publish")
@settings_options("database_url")
def publish(settings: Settings, store: Path = typer.Option(..., "--store", help=STORE_HELP)
            ) -> None:
    """Serve this (fitted) product to every customer and refresh their assets and alerts
    (run after each new acquisition was imported and fitted)."""
    from cityos.apps.subsidence.customers import publish_product, refresh_customers
    from cityos.apps.subsidence.levelling import vertical_scale

    points = _points(store)
    try:
        vertical_scale(points, [])
        vertical = None
    except ValueError as error:  # served in its own direction; assets need vertical motion
        vertical = error
    context = open_store(settings)
    try:
        publish_product(context, store)
        results = refresh_customers(points, context) if vertical is None else {}
    except ValueError as error:
        fail(str(error))
    finally:
        context.close()
    if vertical is not None:
        _warn(f"{vertical}; published for the points API only, customers' assets and alerts "
              "not refreshed")
        return
    for tenant, result in results.items():
        typer.echo(f"{tenant}: {result.points_in_areas:,} points in its areas, "
                   f"{len(result.assets)} assets, {len(result.alerts)} new alerts")
    if not results:
        typer.echo("published; no customer has an area of interest yet")


@app.command("area")
@settings_options("database_url")
def area(settings: Settings,
         tenant: str = typer.Argument(..., help="The customer's tenant."),
         polygon: Path = typer.Argument(..., help="GeoJSON with the area's Polygon feature(s)."),
         rate: float = typer.Option(10.0, help="Rate threshold, mm/yr."),
         acceleration: float = typer.Option(2.0, help="Acceleration threshold, mm/yr^2."),
         trend_change: bool = typer.Option(True, help="Alert on a change of trend.")) -> None:
    """Give a customer areas of interest (one per Polygon feature)."""
    from cityos.apps.subsidence.assets import AssetFormatError, feature_id, read_features
    from cityos.apps.subsidence.customers import set_area
    from cityos.core.errors import NgsiLdError

    try:
        features = read_features(polygon)
        named = [(feature_id(f, n, str(polygon)), f) for n, f in enumerate(features, 1)]
    except AssetFormatError as error:
        _format_error(error)
    context = open_store(settings)
    try:
        for local, feature in named:
            name = (feature.get("properties") or {}).get("name") or local
            set_area(context, tenant, local, name, feature.get("geometry"),
                     rate_threshold_mm_yr=rate, acceleration_threshold_mm_yr2=acceleration,
                     trend_change_alert=trend_change)
            typer.echo(f"{tenant}: area {local} ({name})")
    except NgsiLdError as error:
        fail(f"{polygon}: {error.detail}", 2)
    finally:
        context.close()


@app.command("compare-levelling")
def compare_levelling_command(
    levelling: Path = typer.Argument(..., help="Benchmarks CSV: id, lon, lat, date, "
                                               "height_m or displacement_mm."),
    store: Path = typer.Option(..., "--store", help=STORE_HELP),
    radius: float = typer.Option(100.0, min=0.1, help="Pairing radius, m."),
    html: Path = typer.Option(None, help="Also write the comparison page (HTML)."),
) -> None:
    """Compare InSAR with levelling benchmarks: per benchmark and overall."""
    from cityos.apps.subsidence.levelling import (
        LevellingFormatError,
        compare_levelling,
        read_levelling_csv,
        render_levelling_html,
    )

    try:
        benchmarks = read_levelling_csv(levelling)
    except LevellingFormatError as error:
        _format_error(error)
    try:
        comparison = compare_levelling(_points(store), benchmarks, radius)
    except ValueError as error:  # a product that gives no vertical motion
        _format_error(error)
    typer.echo(f"{'benchmark':<12}{'points':>7}{'epochs':>7}{'mean':>8}{'MAE':>7}{'RMSE':>7}"
               f"{'max':>7}{'r':>7}")
    for bench in comparison.benchmarks:
        s = bench.stats
        if s is None:
            typer.echo(f"{bench.benchmark_id:<12}{bench.n_points:>7}  {bench.reason}")
            continue
        typer.echo(f"{bench.benchmark_id:<12}{bench.n_points:>7}{s.n:>7}{s.mean_mm:>+8.2f}"
                   f"{s.mae_mm:>7.2f}{s.rmse_mm:>7.2f}{s.max_abs_mm:>7.2f}{s.correlation:>7.3f}")
    o = comparison.overall
    typer.echo(f"{'overall':<12}{len(comparison.compared):>7}{o.n:>7}{o.mean_mm:>+8.2f}"
               f"{o.mae_mm:>7.2f}{o.rmse_mm:>7.2f}{o.max_abs_mm:>7.2f}{o.correlation:>7.3f}")
    if html:
        html.write_text(render_levelling_html(comparison), encoding="utf-8")
        typer.echo(f"wrote {html}")


@app.command("report")
def report(
    store: Path = typer.Option(..., "--store", help=STORE_HELP),
    html: Path = typer.Option(..., help="HTML file to write."),
    buildings: Path = typer.Option(None, help="Building footprints (GeoJSON Polygons)."),
    assets: Path = typer.Option(None, help="Linear assets (GeoJSON LineStrings)."),
    levelling: Path = typer.Option(None, help="Benchmarks CSV to compare with."),
    markers: Path = typer.Option(None, help="Construction settlement markers CSV."),
    radius: float = typer.Option(100.0, min=0.1, help="Levelling pairing radius, m."),
    buffer: float = typer.Option(50.0, min=1.0, help="Profile buffer around a line, m."),
    bin_m: float = typer.Option(50.0, "--bin", min=1.0, help="Profile bin length, m."),
) -> None:
    """Write the ground motion report: product, buildings, profiles, levelling, markers."""
    from cityos.apps.subsidence.assets import AssetFormatError, chainage_profile, read_linear_assets
    from cityos.apps.subsidence.buildings import analyse_buildings, read_footprints
    from cityos.apps.subsidence.construction import match_markers, read_markers_csv
    from cityos.apps.subsidence.levelling import (
        LevellingFormatError,
        compare_levelling,
        read_levelling_csv,
    )
    from cityos.apps.subsidence.report import write_report

    points = _points(store)
    sections: dict = {}
    try:
        if buildings:
            sections["buildings"] = analyse_buildings(points, read_footprints(buildings))
        if assets:
            lines = read_linear_assets(assets)
            sections["profiles"] = [chainage_profile(points, a, buffer_m=buffer, bin_m=bin_m)
                                    for a in lines]
            sections["asset_names"] = {a.asset_id: a.name for a in lines}
        if levelling:
            sections["levelling"] = compare_levelling(points, read_levelling_csv(levelling),
                                                      radius)
        if markers:
            sections["markers"] = match_markers(points, read_markers_csv(markers))
    except (AssetFormatError, LevellingFormatError) as error:
        _format_error(error)
    except ValueError as error:
        fail(str(error))
    path = write_report(html, points, **sections)
    typer.echo(f"wrote {path}")


@app.command("demo")
def demo(directory: Path = typer.Argument(..., help="Where to write the demo files."),
         points_side: int = typer.Option(120, min=20, help="Pixels per side of the grid."),
         dates: int = typer.Option(80, min=12, help="Acquisitions (every 12 days)."),
         seed: int = typer.Option(7, help="Seed of everything random.")) -> None:
    """Write the synthetic metropolitan product (MintPy layout) with levelling
    benchmarks, settlement markers, buildings and a metro line."""
    from cityos.apps.subsidence.synthetic import write_demo_product

    written = write_demo_product(directory, points_side=points_side, n_dates=dates, seed=seed)
    for name in ("timeseries", "geometry", "velocity", "levelling", "settlement_markers",
                 "buildings", "metro_line"):
        typer.echo(f"{name}: {getattr(written, name)}")
