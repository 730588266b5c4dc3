"""App views of the dashboard: pages an app adds to the operations centre's top bar.

A map layer shows an app's entities; some of what an app offers is not on the map
(the transit analytics charts, the service-alert desk, a flood event report). An app
registers such a page in ``cityos/apps/<name>/web.py`` with :func:`register_view`;
the dashboard lists the registered views in its top bar and opens one in a panel
over the map, in the same origin, so the page uses the operator's signed-in session.
The dashboard core never names an app.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass

ROLES = ("viewer", "operator", "admin")


@dataclass(frozen=True)
class ViewSpec:
    """One app page in the dashboard's top bar.

    Parameters
    ----------
    view_id : str
        Stable identifier, e.g. ``transit-analytics``.
    title : dict of str to str
        Title per language code; ``en`` is required.
    url : str
        Same-origin path of the page, e.g. ``/apps/transit/analytics``. The dashboard
        adds ``?lang=`` with the operator's language.
    role : str
        Least role that sees the view in the bar (the page's API enforces its own).
    order : int
        Position in the bar, lowest first.
    """

    view_id: str
    title: dict[str, str]
    url: str
    role: str = "viewer"
    order: int = 50

    def __post_init__(self) -> None:
        if not self.view_id:
            raise ValueError("ViewSpec.view_id must not be empty")
        if "en" not in self.title:
            raise ValueError(f"ViewSpec({self.view_id}).title needs an 'en' entry")
        if not self.url.startswith("/") or self.url.startswith("//"):
            raise ValueError(f"ViewSpec({self.view_id}).url: {self.url!r} must be a "
                             "same-origin path starting with one '/'")
        if self.role not in ROLES:
            raise ValueError(f"ViewSpec({self.view_id}).role: {self.role!r} is not one of "
                             f"{', '.join(ROLES)}")

    def to_json(self) -> dict:
        """The JSON the browser receives."""
        return asdict(self)


_views: dict[str, ViewSpec] = {}
_lock = threading.Lock()


def register_view(spec: ViewSpec) -> ViewSpec:
    """Register (or replace) the view ``spec.view_id``; return it."""
    with _lock:
        _views[spec.view_id] = spec
    return spec


def unregister_view(view_id: str) -> None:
    """Forget the view ``view_id``."""
    with _lock:
        _views.pop(view_id, None)


def registered_views() -> list[ViewSpec]:
    """Every registered view, in bar order."""
    with _lock:
        return sorted(_views.values(), key=lambda v: (v.order, v.view_id))
