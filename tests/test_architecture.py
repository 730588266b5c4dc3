"""The import rules of ARCHITECTURE.md, checked on the source (``ast``, nothing imported).

* ``cityos.core`` imports no app, no dashboard, no appkit and not the shells (``cityos.cli``,
  ``cityos.server``, ``cityos.demo``): it knows nothing of what runs on top of it.
* ``cityos.appkit`` imports core, config, the dashboard's spec types and the registry;
  never an app, nor the shells.
* An app (``cityos.apps.<name>``) imports ``cityos.core``, ``cityos.config``,
  ``cityos.appkit``, the registry and its own package; never ``cityos.cli``,
  ``cityos.server``, ``cityos.demo``, ``cityos.web`` or another app.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "cityos"
SHELLS = ("cityos.cli", "cityos.server", "cityos.demo")
#: What any module under cityos/apps/<name>/ may import from cityos, besides its own app.
APP_ALLOWED = ("cityos.core", "cityos.config", "cityos.appkit", "cityos.apps.registry")
#: Another app's modules an app may use: its documented public interfaces (none yet).
PUBLIC_APP_INTERFACES: tuple[str, ...] = ()
APPKIT_ALLOWED = ("cityos.core", "cityos.config", "cityos.appkit", "cityos.apps.registry",
                  "cityos.web.layers", "cityos.web.views")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(source: str, name: str, is_package: bool = False) -> list[tuple[int, str]]:
    """``(line, module)`` of every import in the source of module ``name``, those in
    functions included, relative imports made absolute; ``from a import b`` gives
    ``a.b`` as well as ``a`` (``b`` may be a module)."""
    package = name if is_package else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = parts[:len(parts) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return sorted(set(found))


def under(module: str, prefixes) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def forbidden(name: str, target: str) -> bool:
    """Whether module ``name`` may not import ``target``."""
    if not under(target, ("cityos",)) or target in ("cityos", "cityos.__version__"):
        return False  # third-party, the standard library, the version
    if under(name, ("cityos.core",)):
        return under(target, ("cityos.apps", "cityos.web", "cityos.appkit", *SHELLS))
    if under(name, ("cityos.appkit",)):
        return not under(target, APPKIT_ALLOWED)
    if under(name, ("cityos.apps",)) and name not in ("cityos.apps", "cityos.apps.registry"):
        own = ".".join(name.split(".")[:3])
        return not (target == "cityos.apps"
                    or under(target, (*APP_ALLOWED, *PUBLIC_APP_INTERFACES, own)))
    return False


def violations(source: str, name: str, label: str, is_package: bool = False) -> list[str]:
    """What module ``name`` imports that its layer may not, as ``label:line: imports x``."""
    return [f"{label}:{line}: imports {target}"
            for line, target in imported_modules(source, name, is_package)
            if forbidden(name, target)]


def file_violations(path: Path) -> list[str]:
    return violations(path.read_text(encoding="utf-8"), module_name(path),
                      str(path.relative_to(ROOT)), path.name == "__init__.py")


def test_the_checker_catches_what_a_careless_app_imports():
    source = ("from cityos.core.geo import utm_crs\n"
              "from cityos.appkit.cli import fail\n"
              "from . import models\n"
              "from .. import floodwatch\n"
              "def go():\n"
              "    from cityos.cli import _fail\n"
              "    import cityos.web.alerts\n"
              "from ..floodwatch.service import FloodWatchService\n"
              "from cityos import __version__\n")
    assert violations(source, "cityos.apps.transit.probe", "probe.py") == [
        "probe.py:4: imports cityos.apps.floodwatch",
        "probe.py:6: imports cityos.cli",
        "probe.py:6: imports cityos.cli._fail",
        "probe.py:7: imports cityos.web.alerts",
        "probe.py:8: imports cityos.apps.floodwatch.service",
        "probe.py:8: imports cityos.apps.floodwatch.service.FloodWatchService",
    ]
    # the same lines are fine for the server, and core may not even use appkit
    assert violations(source, "cityos.server", "server.py") == []
    assert violations("from cityos.appkit import cli\n", "cityos.core.geo", "geo.py") == [
        "geo.py:1: imports cityos.appkit", "geo.py:1: imports cityos.appkit.cli"]


@pytest.mark.parametrize("layer", ["core", "appkit", "apps"])
def test_each_layer_imports_only_what_it_may(layer):
    paths = sorted((PACKAGE / layer).rglob("*.py"))
    assert len(paths) > 3
    wrong = [v for path in paths for v in file_violations(path)]
    assert wrong == []
