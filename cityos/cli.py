"""The ``cityos`` command: serve, demo, import, keys, version; apps add their own groups.

Every :class:`~cityos.config.Settings` field is also an option of ``cityos serve``
(``--database-url`` for ``CITYOS_DATABASE_URL`` and so on); an option given on the
command line wins over the environment, which wins over the built-in default.
An app's commands (the Typer object its :class:`~cityos.apps.registry.AppSpec` names)
appear as ``cityos <name> ...``; the helpers they share with these commands are in
:mod:`cityos.appkit.cli`, the file parser of ``cityos import`` in
:mod:`cityos.core.ingest.files`.
"""

from __future__ import annotations

import gc
import socket
from pathlib import Path
from urllib.parse import urlparse

import typer

from cityos import __version__
from cityos.appkit.cli import fail, open_store, settings_options
from cityos.appkit.demo import DEMO_TENANT
from cityos.config import Settings
from cityos.core.errors import NgsiLdError
from cityos.core.ingest.files import (
    ImportProblem,
    entities_from_document,
    read_import_file,
    validate_import,
)
from cityos.core.urls import redact_url

app = typer.Typer(name="cityos", no_args_is_help=True, add_completion=False,
                  help="CityOS: an open smart-city operations platform.")
keys_app = typer.Typer(no_args_is_help=True,
                       help="Create, list and revoke API keys and display links.")
app.add_typer(keys_app, name="keys")

DEMO_DATABASE_URL = "sqlite:///var/demo.db"
DEFAULT_MQTT_URL = "mqtt://127.0.0.1:1883"
IMPORT_BATCH = 1000


@app.callback()
def cityos_root(ctx: typer.Context,
                quiet: bool = typer.Option(False, "--quiet", "-q",
                                           help="No progress on stderr (results and errors "
                                                "still print).")) -> None:
    """CityOS: an open smart-city operations platform."""
    from cityos.core.progress import quiet_while

    quiet_while(ctx, quiet)


# ------------------------------------------------------------- settings options
# the helpers every command uses are the apps' too (cityos.appkit.cli); the old private
# names stay for commands written before the app contract
_fail = fail
_open_store = open_store


# ------------------------------------------------------------------------ serve
def mqtt_broker_reachable(url: str, timeout_s: float = 0.5) -> bool:
    """True when something accepts TCP connections at the broker ``url``."""
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 1883),
                                      timeout=timeout_s):
            return True
    except OSError:
        return False


def run_server(settings: Settings, store=None, log_level: str = "info") -> None:
    """Serve the API (and, when ``settings.mqtt_url`` is set, MQTT ingestion) until
    interrupted."""
    import uvicorn

    from cityos.server import create_app

    application = create_app(settings, store=store)
    # Start-up objects (modules, routes, schemas: ~100k) live for ever: take them out of
    # the cyclic collector's view, or every full collection walks them all again (tens
    # of ms on a small machine, the p99 of a query that allocates a day of history).
    gc.collect()
    gc.freeze()
    # open dashboard streams (SSE) never end by themselves: stop waiting for them after 5 s
    uvicorn.run(application, host=settings.host, port=settings.port, log_level=log_level,
                timeout_graceful_shutdown=5)


@app.command()
@settings_options()
def serve(settings: Settings,
          log_level: str = typer.Option("info", help="uvicorn log level.")) -> None:
    """Run the CityOS server: NGSI-LD API, dashboard, MQTT ingestion."""
    run_server(settings, log_level=log_level)


# ------------------------------------------------------------------------- demo
def demo_key_path(database_url: str) -> Path:
    """Where the demo's dev API key is kept: next to a SQLite file, else ``var/``."""
    if database_url.startswith("sqlite:"):
        path = database_url.removeprefix("sqlite:///").removeprefix("sqlite://")
        if path not in ("", ":memory:"):
            return Path(path).resolve().parent / "demo-key.txt"
    return Path("var") / "demo-key.txt"


def demo_api_key(store, key_file: Path, tenant: str = DEMO_TENANT) -> str:
    """The demo's admin key for ``tenant``: the one in ``key_file`` while it still
    works, else a new one (written to ``key_file``, readable by its owner only)."""
    from cityos.core.tenancy import authenticate, create_key

    if key_file.exists():
        token = key_file.read_text().strip()
        key = authenticate(store, token)
        if key is not None and key.role == "admin" and key.tenant in (tenant, "*"):
            return token
    token, _ = create_key(store, tenant, "admin", name="cityos demo (dev key)")
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key_file.write_text(token + "\n")
    key_file.chmod(0o600)
    return token


def demo_banner(base_url: str, token: str, tenant: str = DEMO_TENANT) -> str:
    """What ``cityos demo`` prints: where to look and a curl line to paste."""
    return "\n".join([
        "",
        "CityOS demo city is ready.",
        f"  Dashboard : {base_url}/",
        f"  API key   : {token}   (admin, tenant {tenant})",
        "  Try       :",
        f"    curl -H 'Authorization: Bearer {token}' \\",
        f"      '{base_url}/ngsi-ld/v1/entities?type=WaterObserved&options=keyValues'",
        "",
    ])


@app.command()
@settings_options("database_url", "host", "port", "mqtt_url")
def demo(settings: Settings,
         no_serve: bool = typer.Option(False, "--no-serve",
                                       help="Build the demo city and exit."),
         at: str = typer.Option(None, help="End of the sample history (ISO 8601); "
                                           "default: the current hour. Fixes the data."),
         ) -> None:
    """Build the demo city (deterministic, idempotent) and serve it with a dev key.

    The database defaults to var/demo.db unless CITYOS_DATABASE_URL or
    --database-url says otherwise.
    """
    from cityos import demo as demo_city
    from cityos.core.timefmt import now_utc, parse_datetime

    if "database_url" not in settings.model_fields_set:
        settings = settings.model_copy(update={"database_url": DEMO_DATABASE_URL})
    anchor = parse_datetime(at, "--at") if at else demo_city.demo_anchor(now_utc())
    store = _open_store(settings)
    try:
        written = demo_city.build_demo_city(store, DEMO_TENANT, anchor, progress=True)
        token = demo_api_key(store, demo_key_path(settings.database_url))
    except NgsiLdError as error:
        store.close()
        _fail(f"building the demo city: {error.detail}")
    total = sum(written.values())
    typer.echo(f"Demo city: {total} entities in tenant {DEMO_TENANT!r} of "
               f"{redact_url(settings.database_url)}")
    base_url = f"http://{settings.host}:{settings.port}"
    if no_serve:
        store.close()
        typer.echo(demo_banner(base_url, token).replace("is ready", "is built (not served)"))
        return
    mqtt_url = settings.mqtt_url or DEFAULT_MQTT_URL
    if mqtt_broker_reachable(mqtt_url):
        typer.echo(f"MQTT ingestion on {redact_url(mqtt_url)} (topics cityos/<tenant>/<type>/<id>)")
        settings = settings.model_copy(update={"mqtt_url": mqtt_url})
    else:
        typer.echo(f"No MQTT broker at {redact_url(mqtt_url)}: running without MQTT ingestion")
        settings = settings.model_copy(update={"mqtt_url": None})
    typer.echo(demo_banner(base_url, token))
    context = demo_city.DemoContext(base_url, token, DEMO_TENANT, settings.mqtt_url, store)
    demo_city.start_simulators(context)
    try:
        run_server(settings, store=store)
    finally:
        context.stop.set()
        store.close()


# ----------------------------------------------------------------------- import
@app.command("import")
@settings_options("database_url", "default_tenant")
def import_file(
    settings: Settings,
    file: Path = typer.Argument(..., help="NGSI-LD JSON / JSON-LD or GeoJSON file."),
    tenant: str = typer.Option(None, help="Tenant to import into [default: the default "
                                          "tenant]."),
    file_format: str = typer.Option("auto", "--format",
                                    help="auto, ngsi-ld or geojson."),
    entity_type: str = typer.Option(None, "--type",
                                    help="Entity type for GeoJSON features (and NGSI-LD "
                                         "entities without one)."),
    key_values: bool = typer.Option(False, "--key-values",
                                    help="The NGSI-LD entities are in keyValues form."),
    batch_size: int = typer.Option(IMPORT_BATCH, help="Entities per write."),
) -> None:
    """Import entities from an NGSI-LD or GeoJSON file, all or nothing.

    Every entity is checked first; when any is wrong nothing is written, one line
    `FILE: entity N: what is wrong` is printed per bad entity (N counts from 1) and
    the exit status is 2.
    """
    from cityos.core.tenancy import check_tenant_name

    if file_format not in ("auto", "ngsi-ld", "geojson"):
        _fail(f"--format: {file_format!r} is not one of auto, ngsi-ld, geojson", 2)
    tenant = tenant or settings.default_tenant
    try:
        check_tenant_name(tenant)
    except NgsiLdError as error:
        _fail(error.detail, 2)
    try:
        raw = entities_from_document(read_import_file(file), file_format, entity_type,
                                     key_values)
    except ImportProblem as problem:
        typer.echo(f"{file}: {problem}", err=True)
        raise typer.Exit(2) from None
    entities, problems = validate_import(raw)
    if problems:
        for problem in problems:
            typer.echo(f"{file}: {problem}", err=True)
        typer.echo(f"{file}: {len(problems)} of {len(raw)} entities are wrong; "
                   "nothing was imported", err=True)
        raise typer.Exit(2)
    from cityos.core.progress import Progress

    store = _open_store(settings)
    created = replaced = 0
    try:
        with Progress(f"import {file.name}", total=len(entities), unit="entities") as bar:
            for start in range(0, len(entities), max(1, batch_size)):
                batch = entities[start:start + batch_size]
                existing = {r.id for r in store.scan(tenant, ids=[e["id"] for e in batch])}
                result = store.upsert_entities(tenant, batch, replace=True)
                if result.errors:
                    for error in result.errors:
                        typer.echo(f"{file}: {error['entityId']}: "
                                   f"{error['error']['detail']}", err=True)
                    _fail(f"{len(result.errors)} entities were refused by the store; "
                          f"{start + len(result.success)} written")
                replaced += len(existing)
                created += len(batch) - len(existing)
                bar.advance(len(batch))
    finally:
        store.close()
    typer.echo(f"{file}: imported {len(entities)} entities into tenant {tenant!r} "
               f"({created} created, {replaced} replaced)")


# ------------------------------------------------------------------------- keys
@keys_app.command("create")
@settings_options("database_url")
def keys_create(
    settings: Settings,
    tenant: str = typer.Option(..., help="Tenant the key acts on ('*' for every tenant)."),
    role: str = typer.Option(..., help="viewer, operator or admin."),
    name: str = typer.Option("", help="Who or what uses the key."),
) -> None:
    """Create an API key and print its token (shown this once only) on stdout."""
    from cityos.core.tenancy import create_key

    store = _open_store(settings)
    try:
        token, record = create_key(store, tenant, role, name)
    except NgsiLdError as error:
        _fail(error.detail, 2)
    finally:
        store.close()
    typer.echo(f"Created {record.role} key {record.key_id} for tenant {record.tenant}. "
               "Keep the token now: it is not shown again.", err=True)
    typer.echo(token)


@keys_app.command("display")
@settings_options("database_url")
def keys_display(
    settings: Settings,
    tenant: str = typer.Option(..., help="Tenant whose board the screen shows."),
    board: str = typer.Option(..., help="The board, kind:id (e.g. transit-stop:S12)."),
    stops: str = typer.Option("", help="More stop ids it may read, comma-separated."),
    name: str = typer.Option("", help="Which screen it is."),
) -> None:
    """Make a display link for a public screen: a token that reads one board only.

    Prints the link's path (the token in its #fragment, shown this once only); open it
    on the screen after the server's address. `keys revoke` ends it.
    """
    from cityos.core.tenancy import create_display_token
    from cityos.web.display import display_link, display_scope

    store = _open_store(settings)
    try:
        scope = display_scope(board, [s.strip() for s in stops.split(",") if s.strip()])
        token, record = create_display_token(store, tenant, scope, name)
    except NgsiLdError as error:
        _fail(error.detail, 2)
    finally:
        store.close()
    typer.echo(f"Created display token {record.key_id} for {scope.board} in tenant "
               f"{record.tenant}. Keep the link now: it is not shown again.", err=True)
    typer.echo(display_link(scope, token))


def _key_scope(key) -> str:
    """A key's scope in the key list: a display token's board, else ``-``."""
    return key.scope["board"] if key.scope else "-"


@keys_app.command("list")
@settings_options("database_url")
def keys_list(settings: Settings,
              tenant: str = typer.Option(None, help="Only this tenant's keys.")) -> None:
    """List API keys (never their tokens)."""
    from cityos.core.tenancy import list_keys

    store = _open_store(settings)
    try:
        keys = list_keys(store, tenant)
    finally:
        store.close()
    rows = [("KEY ID", "TENANT", "ROLE", "STATUS", "CREATED", "SCOPE", "NAME")]
    rows += [(k.key_id, k.tenant, k.role, "revoked" if k.revoked else "active",
              k.created_at[:19] + "Z", _key_scope(k), k.name) for k in keys]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  "
                   + row[-1])


@keys_app.command("revoke")
@settings_options("database_url")
def keys_revoke(settings: Settings,
                key_id: str = typer.Argument(..., help="The key id (see `keys list`).")) -> None:
    """Revoke an API key: it stops authenticating at once."""
    from cityos.core.tenancy import revoke_key

    store = _open_store(settings)
    try:
        record = revoke_key(store, key_id)
    except NgsiLdError as error:
        _fail(error.detail)
    finally:
        store.close()
    typer.echo(f"Revoked key {record.key_id} ({record.role}, tenant {record.tenant})")


# ---------------------------------------------------------------------- version
@app.command()
def version() -> None:
    """Print the CityOS version."""
    typer.echo(f"cityos {__version__}")


# ------------------------------------------------------------------ app plug-ins
def register_app_commands(root: typer.Typer) -> list[str]:
    """Add each app's command group (its ``AppSpec.cli``) as ``cityos <name>``.

    Apps come from :func:`cityos.apps.registry.discover`. Apps without commands are
    skipped; an app whose commands fail to load is reported by the registry (once, on
    stderr) and skipped, so one broken app never takes the whole command line down.
    Returns the names registered.
    """
    from cityos.apps.registry import discover, load_part, report_problem

    registered = []
    known = {group.name for group in root.registered_groups}
    for spec in sorted(discover(), key=lambda s: s.name):  # `cityos --help` lists A-Z
        if spec.name in known:
            continue
        group = load_part(spec, "cli")
        if group is None:
            continue
        if not isinstance(group, typer.Typer):
            report_problem(spec.name, f"cli ({spec.cli})", "it is not a typer.Typer")
            continue
        root.add_typer(group, name=spec.name)
        registered.append(spec.name)
    return registered


def main() -> None:
    """Entry point of the ``cityos`` command."""
    register_app_commands(app)
    app(prog_name="cityos")


if __name__ == "__main__":
    main()
