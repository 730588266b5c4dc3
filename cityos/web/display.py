"""Display links: a public screen's read-only access to one board.

An admin makes a display token for a board (``transit-stop:S12``, optionally with more
stops it may read); the link is the board's page with the token in the URL fragment
(``/apps/transit/stops/S12/board#display=cty_...``), which browsers never send to a
server, so it reaches no access log. The page exchanges the token once for a display
session and takes it out of the address bar (``cityos/web/static/js/app-page.js``).

=============================================  ========  ===============================
``POST /web/api/display-links``                admin     ``{"board", "stops", "name"}``:
                                                         a display token and its link
``POST /web/api/display-session``              public    ``{"token"}``: a display session
``POST /web/api/display-session/renew``        session   a fresh session
=============================================  ========  ===============================

Display tokens are keys: ``cityos keys list`` and ``GET /web/api/keys`` list them with
their scope, and revoking one ends its sessions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fastapi import APIRouter, Depends, Request

from cityos.core.errors import BadRequestData
from cityos.core.tenancy import (
    DISPLAY_SESSION_S,
    Caller,
    DisplayScope,
    DisplaySession,
    create_display_token,
    get_store,
    open_display_session,
    renew_display_session,
    request_token,
    require,
)

#: What a board's id may be made of: URL-safe characters, so that the page and the
#: paths of the scope are the ids as written.
BOARD_ID = re.compile(r"[A-Za-z0-9._~:-]{1,128}")
#: The URL fragment parameter that carries a display token.
FRAGMENT_PARAMETER = "display"


@dataclass(frozen=True)
class BoardKind:
    """A kind of board a display link may open.

    Attributes
    ----------
    name : str
        The kind as the admin writes it before the colon (``transit-stop``).
    page : str
        The page of one board, with ``{id}`` for the board's id.
    reads : tuple of str
        The paths the page reads for one id (``{id}``); a link for several ids (a
        board and more stops) may read those of each.
    """

    name: str
    page: str
    reads: tuple[str, ...]


BOARD_KINDS: dict[str, BoardKind] = {
    kind.name: kind for kind in (
        BoardKind("transit-stop", "/apps/transit/stops/{id}/board",
                  ("/apps/transit/stops/{id}/arrivals",)),
    )
}


def display_scope(board: str, stops: list[str] | tuple[str, ...] = ()) -> DisplayScope:
    """The scope of a display link for ``board`` (``kind:id``) and more ``stops``.

    Raises
    ------
    BadRequestData
        Naming ``board`` or ``stops`` when the kind is unknown or an id is not usable.
    """
    kind_name, _, board_id = (board or "").partition(":")
    kind = BOARD_KINDS.get(kind_name)
    if kind is None:
        raise BadRequestData(f"board: {board!r} is not kind:id with a kind of "
                             f"{', '.join(BOARD_KINDS)} (e.g. transit-stop:S12)")
    if not BOARD_ID.fullmatch(board_id):
        raise BadRequestData(f"board: {board_id!r} is not a usable id (letters, digits, "
                             "'.', '_', '~', ':', '-', at most 128)")
    ids = [board_id]
    for stop in stops:
        if not isinstance(stop, str) or not BOARD_ID.fullmatch(stop):
            raise BadRequestData(f"stops: {stop!r} is not a usable id (letters, digits, "
                                 "'.', '_', '~', ':', '-', at most 128)")
        if stop not in ids:
            ids.append(stop)
    reads = tuple(path.format(id=i) for i in ids for path in kind.reads)
    return DisplayScope(board, kind.page.format(id=board_id), reads)


def display_link(scope: DisplayScope, token: str) -> str:
    """The path of the link a screen opens: the page, the token in the fragment."""
    return f"{scope.page}#{FRAGMENT_PARAMETER}={token}"


def _session_body(token: str, session: DisplaySession) -> dict:
    scope = DisplayScope.from_json(session.scope)
    return {"session": token, "tenant": session.tenant, "board": scope.board,
            "page": scope.page, "expiresIn": DISPLAY_SESSION_S,
            "expiresAt": session.expires_t}


router = APIRouter(tags=["dashboard"])


@router.post("/web/api/display-links", status_code=201)
async def new_display_link(request: Request, caller: Caller = Depends(require("admin")),
                           store=Depends(get_store)) -> dict:
    """Make a display token for one of the tenant's boards; its token and link are
    returned once."""
    from cityos.web.api import _json_object  # one JSON-body reader for the dashboard

    data = await _json_object(request)
    stops = data.get("stops", [])
    if not isinstance(stops, list):
        raise BadRequestData("stops: must be a list of stop ids")
    name = data.get("name", "")
    if not isinstance(name, str) or len(name) > 120:
        raise BadRequestData("name: must be a string of at most 120 characters")
    scope = display_scope(str(data.get("board", "")), stops)
    token, record = create_display_token(store, caller.tenant, scope, name)
    return {"token": token, "link": display_link(scope, token), **record.public()}


@router.post("/web/api/display-session")
async def display_session(request: Request, store=Depends(get_store)) -> dict:
    """Exchange a display token (``{"token"}``, in the body, never the URL) for a
    display session of the same scope."""
    from cityos.web.api import _json_object

    data = await _json_object(request)
    if not isinstance(data.get("token"), str):
        raise BadRequestData("token: the display token of the link is required")
    token, session = open_display_session(store, data["token"])
    return _session_body(token, session)


@router.post("/web/api/display-session/renew")
def renew_session(request: Request, store=Depends(get_store)) -> dict:
    """A fresh display session for the live one the request carries."""
    token, session = renew_display_session(store, request_token(request))
    return _session_body(token, session)
