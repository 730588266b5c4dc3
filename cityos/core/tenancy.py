"""Tenants, API keys, roles and display links.

A key belongs to one tenant (or to every tenant, ``*``, for a platform admin) and has
one role: ``viewer`` reads, ``operator`` also writes and acknowledges, ``admin`` also
manages keys. Keys are random tokens ``cty_<key id>_<secret>``; only a SHA-256 hash of
the whole token is stored (a token has 256 bits of entropy, so a slow password hash
buys nothing), and it is compared in constant time.

A *display token* (role ``display``) is a key for one public screen: its scope names
the page it opens and the only paths it may read. It authenticates nothing by
itself; the page exchanges it once (:func:`open_display_session`) for a display
session ``cds_<session id>_<secret>`` that lives :data:`DISPLAY_SESSION_S` seconds,
may be renewed while its token is live, and may only ``GET`` the scope's paths.
Revoking the token ends its sessions.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
import weakref
from dataclasses import asdict, dataclass

from fastapi import Depends, Request

from cityos.core.clock import now as clock_now
from cityos.core.errors import BadRequestData, Forbidden, ResourceNotFound, Unauthorized
from cityos.core.timefmt import format_datetime, now_utc

ROLES = {"viewer": 0, "operator": 1, "admin": 2}
DISPLAY_ROLE = "display"  # a display token: no role of ROLES, only its scope's reads
ALL_TENANTS = "*"
KEYS_TENANT = "@system"  # documents of the key registry live outside every tenant
KEY_KIND = "apikey"
SESSION_KIND = "displaysession"
TENANT_HEADER = "NGSILD-Tenant"
#: How long a display session lasts; the page renews it at half time.
DISPLAY_SESSION_S = 3600
#: Methods a display session may use (on its scope's paths only).
DISPLAY_METHODS = frozenset({"GET", "HEAD"})


@dataclass
class ApiKey:
    """A stored API key (never the secret itself)."""

    key_id: str
    tenant: str
    role: str
    name: str
    created_at: str
    token_sha256: str
    revoked: bool = False
    #: display tokens only: ``{"board", "page", "reads"}`` (see :class:`DisplayScope`)
    scope: dict | None = None

    def public(self) -> dict:
        """What may be shown: everything but the hash."""
        data = asdict(self)
        data.pop("token_sha256")
        if data["scope"] is None:
            data.pop("scope")
        return data


@dataclass(frozen=True)
class DisplayScope:
    """What a display token may do: open ``page`` and ``GET`` the paths in ``reads``.

    Attributes
    ----------
    board : str
        The board it was made for, as the admin named it (``transit-stop:S12``).
    page : str
        The path of the page the display link opens.
    reads : tuple of str
        The exact request paths its sessions may read; everything else is refused.
    """

    board: str
    page: str
    reads: tuple[str, ...]

    def to_json(self) -> dict:
        return {"board": self.board, "page": self.page, "reads": list(self.reads)}

    @classmethod
    def from_json(cls, data: dict) -> DisplayScope:
        return cls(data["board"], data["page"], tuple(data["reads"]))


@dataclass
class DisplaySession:
    """A stored display session (never its secret): the token it came from, its
    tenant and scope, and when it ends (epoch seconds)."""

    session_id: str
    key_id: str
    tenant: str
    scope: dict
    expires_t: float
    token_sha256: str


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_key(store, tenant: str, role: str, name: str = "") -> tuple[str, ApiKey]:
    """Create a key and return ``(token, record)``; the token is shown once only.

    Parameters
    ----------
    store : ContextStore
    tenant : str
        The tenant the key may act on, or ``*`` for all.
    role : str
        ``viewer``, ``operator`` or ``admin``.
    name : str
        Who or what uses the key, for the audit trail.
    """
    if role not in ROLES:
        raise BadRequestData(f"role: {role!r} is not one of {', '.join(ROLES)}")
    check_tenant_name(tenant, allow_all=True)
    return _store_key(store, tenant, role, name, None)


def _store_key(store, tenant: str, role: str, name: str,
               scope: dict | None) -> tuple[str, ApiKey]:
    key_id = secrets.token_hex(6)
    token = f"cty_{key_id}_{secrets.token_urlsafe(32)}"
    record = ApiKey(key_id, tenant, role, name, format_datetime(now_utc()), _hash(token),
                    scope=scope)
    store.put_document(KEYS_TENANT, KEY_KIND, key_id, asdict(record))
    return token, record


def create_display_token(store, tenant: str, scope: DisplayScope,
                         name: str = "") -> tuple[str, ApiKey]:
    """Create a display token for one screen; return ``(token, record)``.

    Parameters
    ----------
    store : ContextStore
    tenant : str
        The one tenant whose data the screen shows (never ``*``).
    scope : DisplayScope
        The page it opens and the paths it may read.
    name : str
        Which screen it is, for the key list and the audit trail.
    """
    check_tenant_name(tenant)
    if not scope.reads:
        raise BadRequestData("board: a display token must be allowed to read something")
    return _store_key(store, tenant, DISPLAY_ROLE, name, scope.to_json())


#: How long a successful authentication is reused without reading the key registry:
#: a key revoked by another process stops working within this many seconds (one
#: revoked in this process stops at once, see :func:`revoke_key`).
AUTH_CACHE_S = 5.0
_AUTH_CACHE_LIMIT = 10_000
# store -> SHA-256 of the token -> (key, monotonic expiry); only live keys
_auth_cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_auth_lock = threading.Lock()


def authenticate(store, token: str | None) -> ApiKey | None:
    """The live key that ``token`` is, or None.

    A key found live is remembered for :data:`AUTH_CACHE_S` seconds, so a busy client
    costs one registry read every few seconds rather than one a request.
    """
    if not token or not token.startswith("cty_") or token.count("_") < 2:
        return None
    digest = _hash(token)
    try:
        cached = _auth_cache.get(store, {}).get(digest)
    except TypeError:  # a store that cannot be weakly referenced: no cache
        cached = None
    if cached is not None and cached[1] > time.monotonic():
        return cached[0]
    key_id = token.split("_", 2)[1]
    doc = store.get_document(KEYS_TENANT, KEY_KIND, key_id)
    if doc is None:
        return None
    record = ApiKey(**doc)
    if record.revoked or not hmac.compare_digest(record.token_sha256, digest):
        return None
    with _auth_lock:
        try:
            known = _auth_cache.setdefault(store, {})
        except TypeError:
            return record
        if len(known) >= _AUTH_CACHE_LIMIT:
            known.clear()
        known[digest] = (record, time.monotonic() + AUTH_CACHE_S)
    return record


def open_display_session(store, token: str | None,
                         now_t: float | None = None) -> tuple[str, DisplaySession]:
    """Exchange a live display token for a new display session.

    Parameters
    ----------
    store : ContextStore
    token : str
        The display token of the link.
    now_t : float, optional
        The current time (epoch seconds); the wall clock when omitted.

    Returns
    -------
    tuple of (str, DisplaySession)
        The session token (shown once) and its record.

    Raises
    ------
    Unauthorized
        When ``token`` is not a live display token.
    """
    key = authenticate(store, token)
    if key is None or key.role != DISPLAY_ROLE or key.scope is None:
        raise Unauthorized("a valid display token is required")
    return _new_session(store, key, clock_now() if now_t is None else now_t)


def renew_display_session(store, session_token: str | None,
                          now_t: float | None = None) -> tuple[str, DisplaySession]:
    """A fresh session for a live one whose display token is still live (the old one
    runs on until it ends); Unauthorized otherwise."""
    now_t = clock_now() if now_t is None else now_t
    session = authenticate_display_session(store, session_token, now_t)
    if session is None:
        raise Unauthorized("a live display session is required")
    key = _live_key(store, session.key_id)
    if key is None:
        raise Unauthorized("a live display session is required")
    return _new_session(store, key, now_t)


def _new_session(store, key: ApiKey, now_t: float) -> tuple[str, DisplaySession]:
    _forget_ended_sessions(store, now_t)
    session_id = secrets.token_hex(8)
    token = f"cds_{session_id}_{secrets.token_urlsafe(32)}"
    record = DisplaySession(session_id, key.key_id, key.tenant, key.scope,
                            now_t + DISPLAY_SESSION_S, _hash(token))
    store.put_document(KEYS_TENANT, SESSION_KIND, session_id, asdict(record))
    return token, record


def _forget_ended_sessions(store, now_t: float, batch: int = 200) -> None:
    """Delete ended sessions among the oldest ``batch`` (bounded work per session)."""
    for doc in store.list_documents(KEYS_TENANT, SESSION_KIND, limit=batch):
        if doc["expires_t"] <= now_t:
            store.delete_document(KEYS_TENANT, SESSION_KIND, doc["session_id"])


def _live_key(store, key_id: str) -> ApiKey | None:
    doc = store.get_document(KEYS_TENANT, KEY_KIND, key_id)
    return None if doc is None or doc.get("revoked") else ApiKey(**doc)


def authenticate_display_session(store, token: str | None,
                                 now_t: float | None = None) -> DisplaySession | None:
    """The live display session that ``token`` is, or None: unknown, wrong secret,
    ended, or its display token revoked."""
    if not token or not token.startswith("cds_") or token.count("_") < 2:
        return None
    now_t = clock_now() if now_t is None else now_t
    doc = store.get_document(KEYS_TENANT, SESSION_KIND, token.split("_", 2)[1])
    if doc is None:
        return None
    session = DisplaySession(**doc)
    if session.expires_t <= now_t or not hmac.compare_digest(session.token_sha256,
                                                             _hash(token)):
        return None
    if _live_key(store, session.key_id) is None:
        return None
    return session


def forget_authentications() -> None:
    """Drop every remembered authentication (after a key changed in this process)."""
    with _auth_lock:
        _auth_cache.clear()


def list_keys(store, tenant: str | None = None) -> list[ApiKey]:
    """Every key (display tokens included), or the keys of one tenant."""
    keys = [ApiKey(**d) for d in store.list_documents(KEYS_TENANT, KEY_KIND, limit=100_000)]
    return [k for k in keys if tenant is None or k.tenant == tenant]


def revoke_key(store, key_id: str) -> ApiKey:
    """Revoke a key by its id; ResourceNotFound when there is none."""
    doc = store.get_document(KEYS_TENANT, KEY_KIND, key_id)
    if doc is None:
        raise ResourceNotFound(f"API key {key_id} does not exist")
    doc["revoked"] = True
    store.put_document(KEYS_TENANT, KEY_KIND, key_id, doc)
    forget_authentications()  # revoked here: refused from the next request on
    return ApiKey(**doc)


def check_tenant_name(tenant: str, *, allow_all: bool = False) -> str:
    """Raise BadRequestData unless ``tenant`` is a usable tenant name."""
    if allow_all and tenant == ALL_TENANTS:
        return tenant
    if not tenant or len(tenant) > 64 or not all(c.isalnum() or c in "-_." for c in tenant) \
            or tenant.startswith("@"):
        raise BadRequestData(f"{TENANT_HEADER}: {tenant!r} is not a valid tenant name "
                             "(letters, digits, '-', '_', '.', at most 64)")
    return tenant


@dataclass
class Caller:
    """Who is calling: the tenant acted on, the role, the key (None when auth is off),
    and for a display session the only paths it may read."""

    tenant: str
    role: str
    key_id: str | None = None
    name: str = ""
    reads: tuple[str, ...] | None = None

    def can(self, role: str) -> bool:
        return ROLES[self.role] >= ROLES[role]


def request_token(request: Request) -> str | None:
    """The API key of a request: ``Authorization: Bearer <key>`` or ``X-API-Key``
    (never the URL, which ends up in histories and logs)."""
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.headers.get("x-api-key")


def get_store(request: Request):
    """FastAPI dependency: the process's ContextStore."""
    return request.app.state.store


def get_app_settings(request: Request):
    """FastAPI dependency: the process's Settings."""
    return request.app.state.settings


def get_caller(request: Request) -> Caller:
    """FastAPI dependency: authenticate the request and resolve its tenant.

    The tenant is the ``NGSILD-Tenant`` header, else the key's own tenant, else the
    default tenant. A key for one tenant used with another tenant's header is refused.
    """
    settings = request.app.state.settings
    header = request.headers.get(TENANT_HEADER)
    if header is not None:
        check_tenant_name(header)
    if not settings.auth_required:
        return Caller(header or settings.default_tenant, "admin")
    token = request_token(request)
    if token and token.startswith("cds_"):
        return _display_caller(request, token, header)
    key = authenticate(request.app.state.store, token)
    if key is None:
        raise Unauthorized("a valid API key is required (Authorization: Bearer <key> "
                           "or X-API-Key)")
    if key.role == DISPLAY_ROLE:
        raise Forbidden("a display token only opens a display session "
                        "(POST /web/api/display-session)")
    if key.tenant == ALL_TENANTS:
        tenant = header or settings.default_tenant
    else:
        tenant = header or key.tenant
        if tenant != key.tenant:
            raise Forbidden(f"this API key is not valid for tenant {tenant!r}")
    return Caller(tenant, key.role, key.key_id, key.name)


def _display_caller(request: Request, token: str, header: str | None) -> Caller:
    """The caller of a display session: a viewer of its tenant that may ``GET`` its
    scope's paths and nothing else."""
    session = authenticate_display_session(request.app.state.store, token)
    if session is None:
        raise Unauthorized("the display session has ended or its link was revoked")
    if header is not None and header != session.tenant:
        raise Forbidden(f"this display session is not valid for tenant {header!r}")
    reads = DisplayScope.from_json(session.scope).reads
    if request.method not in DISPLAY_METHODS or request.url.path not in reads:
        raise Forbidden("a display session may only read its board")
    return Caller(session.tenant, "viewer", session.key_id, f"display {session.key_id}",
                  reads)


def require(role: str):
    """FastAPI dependency factory: the caller must have at least ``role``."""
    def dependency(caller: Caller = Depends(get_caller)) -> Caller:
        if not caller.can(role):
            raise Forbidden(f"role {caller.role!r} may not do this; {role!r} is needed")
        return caller
    return dependency
