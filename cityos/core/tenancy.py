"""Tenants, API keys and roles.

A key belongs to one tenant (or to every tenant, ``*``, for a platform admin) and has
one role: ``viewer`` reads, ``operator`` also writes and acknowledges, ``admin`` also
manages keys. Keys are random tokens ``cty_<key id>_<secret>``; only a SHA-256 hash of
the whole token is stored (a token has 256 bits of entropy, so a slow password hash
buys nothing), and it is compared in constant time.
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

from cityos.core.errors import BadRequestData, Forbidden, ResourceNotFound, Unauthorized
from cityos.core.timefmt import format_datetime, now_utc

ROLES = {"viewer": 0, "operator": 1, "admin": 2}
ALL_TENANTS = "*"
KEYS_TENANT = "@system"  # documents of the key registry live outside every tenant
KEY_KIND = "apikey"
TENANT_HEADER = "NGSILD-Tenant"


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

    def public(self) -> dict:
        """What may be shown: everything but the hash."""
        data = asdict(self)
        data.pop("token_sha256")
        return data


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
    key_id = secrets.token_hex(6)
    token = f"cty_{key_id}_{secrets.token_urlsafe(32)}"
    record = ApiKey(key_id, tenant, role, name, format_datetime(now_utc()), _hash(token))
    store.put_document(KEYS_TENANT, KEY_KIND, key_id, asdict(record))
    return token, record


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


def forget_authentications() -> None:
    """Drop every remembered authentication (after a key changed in this process)."""
    with _auth_lock:
        _auth_cache.clear()


def list_keys(store, tenant: str | None = None) -> list[ApiKey]:
    """Every key, or the keys of one tenant."""
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
    """Who is calling: the tenant acted on, the role, the key (None when auth is off)."""

    tenant: str
    role: str
    key_id: str | None = None
    name: str = ""

    def can(self, role: str) -> bool:
        return ROLES[self.role] >= ROLES[role]


def request_token(request: Request) -> str | None:
    """The API key of a request: ``Authorization: Bearer <key>`` or ``X-API-Key``."""
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.headers.get("x-api-key") or request.query_params.get("api_key")


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
    key = authenticate(request.app.state.store, request_token(request))
    if key is None:
        raise Unauthorized("a valid API key is required (Authorization: Bearer <key> "
                           "or X-API-Key)")
    if key.tenant == ALL_TENANTS:
        tenant = header or settings.default_tenant
    else:
        tenant = header or key.tenant
        if tenant != key.tenant:
            raise Forbidden(f"this API key is not valid for tenant {tenant!r}")
    return Caller(tenant, key.role, key.key_id, key.name)


def require(role: str):
    """FastAPI dependency factory: the caller must have at least ``role``."""
    def dependency(caller: Caller = Depends(get_caller)) -> Caller:
        if not caller.can(role):
            raise Forbidden(f"role {caller.role!r} may not do this; {role!r} is needed")
        return caller
    return dependency
