"""The app contract: one :class:`AppSpec` per app, found in one place.

An app declares what it offers once, in ``app.py`` of its package, as a module-level
``APP = AppSpec(...)``: its name (``cityos <name>``, ``/apps/<name>``), titles, the
entity types it owns, and *where* its parts are, as ``"module:attribute"`` references
(a leading ``.`` is relative to the app's package). Nothing is imported until a part
is asked for, so the command line never loads the apps' routers nor the server their
commands. The server, the command line, the dashboard and the demo all read
:func:`discover` and load parts with :func:`load_part`.

Where apps come from, in this order (the demo builds in this order too):

1. :data:`BUILTIN_APPS`, the apps shipped in ``cityos/apps/``;
2. any other package in ``cityos/apps/`` (by name): its ``app.py`` when it has one, else
   its conventional modules (``cli.py`` with a Typer ``app``, ``api.py`` with a
   ``router`` and maybe ``services``, ``web.py`` imported for the layers and views it
   registers itself);
3. the ``cityos.apps`` entry points of installed distributions (third-party apps), each
   naming an :class:`AppSpec`, e.g. ``parking = "cityos_parking.app:APP"`` in the
   ``[project.entry-points."cityos.apps"]`` table of their ``pyproject.toml``.

An app that fails to load (its ``app.py``, or one of its parts) is reported once, by
name, on the ``cityos.apps`` logger, and left out; the other apps keep working. The
first app of a name wins; a later one of the same name is reported and left out.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.metadata
import importlib.util
import logging
import pkgutil
import re
import threading
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("cityos.apps")

#: The apps shipped with CityOS, in the order the demo builds them.
BUILTIN_APPS: tuple[str, ...] = ("transit", "floodwatch", "floodrisk", "subsidence")
#: The entry-point group third-party apps register their :class:`AppSpec` under.
ENTRY_POINT_GROUP = "cityos.apps"
#: The parts of an app :func:`load_part` resolves.
PARTS = ("cli", "router", "services", "layers", "views", "demo_builder", "simulator")

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_REFERENCE = re.compile(r"^\.?[A-Za-z_][\w.]*(:[A-Za-z_]\w*)?$")


@dataclass(frozen=True)
class AppSpec:
    """What an app offers, and where each part of it is.

    Parameters
    ----------
    name : str
        Lower-case identifier: the ``cityos <name>`` command group, the router's prefix
        ``/apps/<name>`` and the app's label in the demo's progress lines.
    title : dict of str to str
        The app's name per language code; ``en`` is required (``ja`` for the Japanese
        dashboard).
    package : str
        The app's package, e.g. ``cityos.apps.transit``; filled in from the module
        that declares the spec when empty. Relative references start from it.
    entity_types : tuple of str
        The NGSI-LD entity types the app writes and answers for.
    cli : str, optional
        A ``typer.Typer``: the ``cityos <name>`` commands.
    router : str, optional
        A FastAPI ``APIRouter``, mounted at ``/apps/<name>``.
    services : str, optional
        ``services(store, settings) -> list`` of background services (each with
        ``start`` and ``stop``, plain or coroutine functions) the server runs.
    layers, views : str, optional
        Sequences of :class:`~cityos.appkit.dashboard.LayerSpec` and
        :class:`~cityos.appkit.dashboard.ViewSpec` the dashboard registers. A reference
        to a module (no ``:attribute``) is imported for what it registers itself.
    demo_builder : str, optional
        ``build(store, tenant, at) -> list[str]``: the app's static demo data, written
        once (idempotent; see :mod:`cityos.demo`).
    simulator : str, optional
        ``run(demo: DemoContext) -> None``: the app's live demo feed, through the
        ingest path a real device uses; returns when ``demo.stop`` is set.
    benchmark : str, optional
        The app's benchmark script, a path from the repository root
        (``bench/transit.py``), run by ``make bench``.
    settings : tuple of str
        The :class:`~cityos.config.Settings` fields that are the app's own.

    References are ``"module:attribute"`` strings, ``".api:router"`` relative to
    ``package``.
    """

    name: str
    title: dict[str, str]
    package: str = ""
    entity_types: tuple[str, ...] = ()
    cli: str | None = None
    router: str | None = None
    services: str | None = None
    layers: str | None = None
    views: str | None = None
    demo_builder: str | None = None
    simulator: str | None = None
    benchmark: str | None = None
    settings: tuple[str, ...] = ()
    #: Where the spec came from (``builtin``, ``folder`` or ``entry point <dist>``).
    origin: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ValueError(f"AppSpec.name: {self.name!r} must be lower-case letters, "
                             "digits and '_', starting with a letter")
        if not isinstance(self.title, dict) or "en" not in self.title:
            raise ValueError(f"AppSpec({self.name}).title needs an 'en' entry")
        for part in PARTS:
            reference = getattr(self, part)
            if reference is not None and not (isinstance(reference, str)
                                              and _REFERENCE.match(reference)):
                raise ValueError(f"AppSpec({self.name}).{part}: {reference!r} is not a "
                                 "'module:attribute' reference")
        if isinstance(self.entity_types, str) or isinstance(self.settings, str):
            raise ValueError(f"AppSpec({self.name}): entity_types and settings are tuples "
                             "of names, not one string")
        from cityos.config import Settings

        unknown = [n for n in self.settings if n not in Settings.model_fields]
        if unknown:
            raise ValueError(f"AppSpec({self.name}).settings: {', '.join(unknown)} "
                             "is not a field of cityos.config.Settings")

    def reference(self, part: str) -> str | None:
        """The absolute ``module:attribute`` reference of ``part``, None when the app
        has none."""
        if part not in PARTS:
            raise ValueError(f"{part!r} is not an app part ({', '.join(PARTS)})")
        reference = getattr(self, part)
        if reference is None:
            return None
        if reference.startswith("."):
            if not self.package:
                raise ValueError(f"AppSpec({self.name}).{part}: {reference!r} is relative "
                                 "but the spec has no package")
            reference = self.package + reference
        return reference


# ------------------------------------------------------------------ problems
_reported: set[tuple[str, str]] = set()
_reported_lock = threading.Lock()


def report_problem(name: str, what: str, error: BaseException | str) -> None:
    """Report, once per process, that app ``name`` could not load ``what``.

    Every loader (server, command line, dashboard, demo) reports through here, so a
    broken app shows the same line everywhere, once:
    ``app transit: cannot load cli (cityos.apps.transit.cli:app): ModuleNotFoundError:
    No module named 'x'``.
    """
    detail = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    message = f"app {name}: cannot load {what}: {detail}"
    with _reported_lock:
        if (name, message) in _reported:
            return
        _reported.add((name, message))
    log.warning("%s", message)


# ------------------------------------------------------------------ resolving
def resolve(reference: str) -> Any:
    """The object a ``"module:attribute"`` reference names (the module without one)."""
    module_name, _, attribute = reference.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attribute) if attribute else module


def load_part(spec: AppSpec, part: str) -> Any | None:
    """Import and return one part of an app, None when it has none or it fails.

    Parameters
    ----------
    spec : AppSpec
    part : str
        One of :data:`PARTS`.

    Returns
    -------
    object or None
        A failure (an import error, a missing attribute, anything the module raises)
        is reported with :func:`report_problem` and gives None.
    """
    try:
        reference = spec.reference(part)
        if reference is None:
            return None
        return resolve(reference)
    except Exception as error:  # noqa: BLE001 (one broken app must not break the others)
        report_problem(spec.name, f"{part} ({getattr(spec, part)})", error)
        return None


# ------------------------------------------------------------------ discovery
def _declared(module_name: str, origin: str) -> AppSpec:
    """The ``APP`` of ``module_name``, with its package filled in."""
    module = importlib.import_module(module_name)
    spec = getattr(module, "APP", None)
    if not isinstance(spec, AppSpec):
        raise TypeError(f"{module_name}.APP is not an AppSpec")
    return _completed(spec, module.__package__ or "", origin)


def _completed(spec: AppSpec, package: str, origin: str) -> AppSpec:
    return dataclasses.replace(spec, package=spec.package or package, origin=origin)


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _defines(module_name: str, attribute: str) -> bool:
    """Whether the source of ``module_name`` defines ``attribute`` at its top level
    (read, not imported)."""
    found = importlib.util.find_spec(module_name)
    if found is None or not found.origin or not found.origin.endswith(".py"):
        return False
    with open(found.origin, encoding="utf-8") as source:
        tree = ast.parse(source.read())
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if node.name == attribute:
                return True
        elif isinstance(node, ast.Assign):
            if any(isinstance(t, ast.Name) and t.id == attribute for t in node.targets):
                return True
    return False


def conventional_spec(name: str) -> AppSpec:
    """The spec of a package in ``cityos/apps/`` that has no ``app.py``: whichever of
    ``cli.py``, ``api.py`` and ``web.py`` it has, at their conventional names."""
    package = f"cityos.apps.{name}"
    parts: dict[str, str] = {}
    if _has_module(f"{package}.cli"):
        parts["cli"] = ".cli:app"
    if _has_module(f"{package}.api"):
        parts["router"] = ".api:router"
        if _defines(f"{package}.api", "services"):
            parts["services"] = ".api:services"
    if _has_module(f"{package}.web"):
        parts["layers"] = ".web"
    return AppSpec(name=name, title={"en": name}, package=package, origin="folder",
                   **parts)


def _folder_apps() -> list[tuple[str, str]]:
    """``(name, kind)`` of the packages in ``cityos/apps/``: the built-in ones first in
    their order, then the others by name."""
    import cityos.apps

    folders = {m.name for m in pkgutil.iter_modules(cityos.apps.__path__) if m.ispkg}
    found = [(name, "builtin") for name in BUILTIN_APPS]
    found += [(name, "folder") for name in sorted(folders - set(BUILTIN_APPS))]
    return found


def _folder_spec(name: str, origin: str) -> AppSpec:
    module_name = f"cityos.apps.{name}.app"
    if origin == "builtin" or _has_module(module_name):
        return _declared(module_name, origin)
    return conventional_spec(name)


def _entry_point_specs() -> list[tuple[str, Any, str]]:
    """``(name, entry point, origin)`` of each ``cityos.apps`` entry point, by name."""
    found = []
    for entry in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP),
                        key=lambda e: e.name):
        dist = entry.dist.name if entry.dist is not None else "?"
        found.append((entry.name, entry, f"entry point of {dist}"))
    return found


def discover() -> list[AppSpec]:
    """Every app that loads, in order: built-in, other folders, entry points.

    Returns
    -------
    list of AppSpec
        Apps whose spec cannot be loaded, or whose name is taken by an earlier app,
        are reported (:func:`report_problem`) and left out.
    """
    specs: list[AppSpec] = []
    taken: set[str] = set()

    def add(name: str, load, what: str) -> None:
        try:
            spec = load()
        except Exception as error:  # noqa: BLE001 (a broken app must not hide the others)
            report_problem(name, what, error)
            return
        if spec.name in taken:
            report_problem(spec.name, what, f"an app named {spec.name!r} is already "
                                            "registered")
            return
        taken.add(spec.name)
        specs.append(spec)

    for name, origin in _folder_apps():
        add(name, lambda n=name, o=origin: _folder_spec(n, o), "its spec (app.py)")
    for name, entry, origin in _entry_point_specs():
        def from_entry(entry=entry, origin=origin) -> AppSpec:
            spec = entry.load()
            if not isinstance(spec, AppSpec):
                raise TypeError(f"{entry.value} is not an AppSpec")
            return _completed(spec, entry.module.rpartition(".")[0] or entry.module,
                              origin)
        add(name, from_entry, f"its spec (entry point {entry.value})")
    return specs


def app_named(name: str) -> AppSpec | None:
    """The discovered app called ``name``, None when there is none."""
    return next((spec for spec in discover() if spec.name == name), None)
