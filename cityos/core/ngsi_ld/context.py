"""JSON-LD ``@context`` handling for the NGSI-LD API, without the network.

Names in the store are *canonical*: compact names against the NGSI-LD core context,
whose ``@vocab`` is ``https://uri.etsi.org/ngsi-ld/default-context/``. So a term with no
mapping (``speed``) is stored as ``speed``, a core term (``location``) as itself, and a
name that a client's context maps to another IRI (``https://schema.org/name``) as that
full IRI.

A request brings its own context in the ``Link`` header
(``rel="http://www.w3.org/ns/json-ld#context"``), or as ``@context`` in a body sent as
``application/ld+json`` (an object, a URL, or an array of both). Names are expanded with
that context (term -> IRI, ``prefix:suffix`` -> IRI) and compacted to canonical; the
response is compacted back with the same context, so a client gets its own terms back.

No context is ever fetched. The core context is embedded (:data:`CORE_CONTEXT`, the
part of ``ngsi-ld-core-context-v1.6.jsonld`` and later that names entities and
attributes; its terms are protected, as in the standard). Other remote contexts are
looked up in a local registry (:func:`register_context`, :func:`load_context_dir`: a
deployment puts ``contexts/index.json`` mapping URLs to files next to the files). A URL
that is neither core nor registered does **not** fail the request: FIWARE devices
routinely send a Smart Data Models context URL whose terms all live under the default
vocabulary anyway, so its terms resolve against the default vocabulary and a warning is
logged once per URL. A deployment that needs exact IRIs registers the context.

Content negotiation lives here too: :func:`negotiate` picks ``application/json``
(default), ``application/ld+json`` or ``application/geo+json`` from ``Accept``
(406 otherwise), and :func:`read_body` enforces the NGSI-LD rules on ``Content-Type``
(``application/ld+json`` needs ``@context`` in the body, ``application/json`` must not
have one).
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from fastapi import Request

from cityos.core.entities import ATTRIBUTE_TYPES
from cityos.core.errors import BadRequestData, InvalidRequest, NgsiLdError

log = logging.getLogger(__name__)

NGSI_LD = "https://uri.etsi.org/ngsi-ld/"
DEFAULT_VOCAB = "https://uri.etsi.org/ngsi-ld/default-context/"
CORE_CONTEXT_URL = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.6.jsonld"
CORE_CONTEXT_URLS = frozenset(
    f"{scheme}://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context{version}.jsonld"
    for scheme in ("https", "http")
    for version in ("", "-v1.3", "-v1.4", "-v1.5", "-v1.6", "-v1.7", "-v1.8", "-v1.9"))
JSONLD_CONTEXT_REL = "http://www.w3.org/ns/json-ld#context"

JSON = "application/json"
JSON_LD = "application/ld+json"
GEO_JSON = "application/geo+json"
MERGE_PATCH = "application/merge-patch+json"

_G = "https://purl.org/geojson/vocab#"
_DC = "http://purl.org/dc/terms/"

#: The terms of the NGSI-LD core context that can name an entity type, an attribute,
#: a member of an attribute or a member of an API payload, with their IRIs.
CORE_CONTEXT: dict[str, str] = {
    "ngsi-ld": NGSI_LD, "geojson": _G,
    "id": "@id", "type": "@type",
    "Attribute": NGSI_LD + "Attribute", "AttributeList": NGSI_LD + "AttributeList",
    "Date": NGSI_LD + "Date", "DateTime": NGSI_LD + "DateTime", "Time": NGSI_LD + "Time",
    "EntityType": NGSI_LD + "EntityType", "EntityTypeInfo": NGSI_LD + "EntityTypeInfo",
    "EntityTypeList": NGSI_LD + "EntityTypeList",
    "Feature": _G + "Feature", "FeatureCollection": _G + "FeatureCollection",
    "GeometryCollection": _G + "GeometryCollection", "LineString": _G + "LineString",
    "MultiLineString": _G + "MultiLineString", "MultiPoint": _G + "MultiPoint",
    "MultiPolygon": _G + "MultiPolygon", "Point": _G + "Point", "Polygon": _G + "Polygon",
    "Property": NGSI_LD + "Property", "Relationship": NGSI_LD + "Relationship",
    "GeoProperty": NGSI_LD + "GeoProperty", "LanguageProperty": NGSI_LD + "LanguageProperty",
    "JsonProperty": NGSI_LD + "JsonProperty", "VocabProperty": NGSI_LD + "VocabProperty",
    "ListProperty": NGSI_LD + "ListProperty", "ListRelationship": NGSI_LD + "ListRelationship",
    "TemporalProperty": NGSI_LD + "TemporalProperty",
    "ngsildproof": NGSI_LD + "ngsildproof",  # 1.9: a W3C Data Integrity proof (4.5.2.2)
    "Notification": NGSI_LD + "Notification", "Subscription": NGSI_LD + "Subscription",
    "ContextSourceRegistration": NGSI_LD + "ContextSourceRegistration",
    "attributeCount": NGSI_LD + "attributeCount",
    "attributeDetails": NGSI_LD + "attributeDetails",
    "attributeList": NGSI_LD + "attributeList", "attributeName": NGSI_LD + "attributeName",
    "attributeNames": NGSI_LD + "attributeNames", "attributeTypes": NGSI_LD + "attributeTypes",
    "attributes": NGSI_LD + "attributes", "attrs": NGSI_LD + "attrs",
    "avg": NGSI_LD + "avg", "bbox": _G + "bbox", "coordinates": _G + "coordinates",
    "createdAt": NGSI_LD + "createdAt", "modifiedAt": NGSI_LD + "modifiedAt",
    "deletedAt": NGSI_LD + "deletedAt", "csf": NGSI_LD + "csf",
    "datasetId": NGSI_LD + "datasetId", "description": _DC + "description",
    "detail": NGSI_LD + "detail", "distinctCount": NGSI_LD + "distinctCount",
    "endAt": NGSI_LD + "endAt", "endTimeAt": NGSI_LD + "endTimeAt",
    "endpoint": NGSI_LD + "endpoint", "entities": NGSI_LD + "entities",
    "entityCount": NGSI_LD + "entityCount", "entityId": NGSI_LD + "entityId",
    "error": NGSI_LD + "error", "errors": NGSI_LD + "errors",
    "expiresAt": NGSI_LD + "expiresAt", "features": _G + "features",
    "format": NGSI_LD + "format", "geoQ": NGSI_LD + "geoQ", "geometry": _G + "geometry",
    "geoproperty": NGSI_LD + "geoproperty", "georel": NGSI_LD + "georel",
    "idPattern": NGSI_LD + "idPattern", "instanceId": NGSI_LD + "instanceId",
    "isActive": NGSI_LD + "isActive", "lang": NGSI_LD + "lang",
    "languageMap": NGSI_LD + "hasLanguageMap", "languageMaps": NGSI_LD + "hasLanguageMaps",
    "lastFailure": NGSI_LD + "lastFailure", "lastNotification": NGSI_LD + "lastNotification",
    "lastSuccess": NGSI_LD + "lastSuccess", "location": NGSI_LD + "location",
    "max": NGSI_LD + "max", "min": NGSI_LD + "min",
    "notification": NGSI_LD + "notification", "notUpdated": NGSI_LD + "notUpdated",
    "object": NGSI_LD + "hasObject", "objects": NGSI_LD + "hasObjects",
    "objectType": NGSI_LD + "hasObjectType",
    "observationSpace": NGSI_LD + "observationSpace", "observedAt": NGSI_LD + "observedAt",
    "operationSpace": NGSI_LD + "operationSpace", "properties": _G + "properties",
    "q": NGSI_LD + "q", "reason": NGSI_LD + "reason", "scope": NGSI_LD + "scope",
    "scopeQ": NGSI_LD + "scopeQ", "startAt": NGSI_LD + "startAt",
    "status": NGSI_LD + "status", "stddev": NGSI_LD + "stddev",
    "subscriptionId": NGSI_LD + "subscriptionId", "success": NGSI_LD + "success",
    "sum": NGSI_LD + "sum", "sumsq": NGSI_LD + "sumsq", "sysAttrs": NGSI_LD + "sysAttrs",
    "temporalQ": NGSI_LD + "temporalQ", "throttling": NGSI_LD + "throttling",
    "timeAt": NGSI_LD + "timeAt", "timeInterval": NGSI_LD + "timeInterval",
    "timeproperty": NGSI_LD + "timeproperty", "timerel": NGSI_LD + "timerel",
    "timesFailed": NGSI_LD + "timesFailed", "timesSent": NGSI_LD + "timesSent",
    "title": _DC + "title", "totalCount": NGSI_LD + "totalCount",
    "typeList": NGSI_LD + "typeList", "typeName": NGSI_LD + "typeName",
    "typeNames": NGSI_LD + "typeNames", "unitCode": NGSI_LD + "unitCode",
    "updated": NGSI_LD + "updated", "value": NGSI_LD + "hasValue",
    "values": NGSI_LD + "hasValues", "watchedAttributes": NGSI_LD + "watchedAttributes",
}

#: Members of an attribute instance that are never renamed by a context.
_INSTANCE_KEYWORDS = frozenset({
    "type", "value", "object", "languageMap", "observedAt", "unitCode", "datasetId",
    "createdAt", "modifiedAt", "instanceId", "lang", "objectType", "@context",
    "values", "objects", "languageMaps", "expiresAt",
    # in notifications (showChanges)
    "previousValue", "previousObject", "previousLanguageMap", "previousJson",
    "previousVocab", "previousValueList", "previousObjectList",
})
_ENTITY_KEYWORDS = frozenset({"id", "type", "scope", "@context", "createdAt", "modifiedAt",
                              "deletedAt", "expiresAt"})
_GEN_DELIMS = ("/", "#", ":", "?", "[", "]", "@")
_MEMO_LIMIT = 20_000


class NotAcceptable(NgsiLdError):
    """406: none of the media types in ``Accept`` can be served."""

    error_type, title, status = "NotAcceptable", "Not acceptable", 406


class UnsupportedMediaType(NgsiLdError):
    """415: the request body is neither JSON nor JSON-LD."""

    error_type, title, status = "UnsupportedMediaType", "Unsupported media type", 415


# ----------------------------------------------------------------- registry
_registry: dict[str, Any] = {}
_registry_lock = threading.Lock()
_warned_urls: set[str] = set()


def register_context(url: str, context: Any) -> None:
    """Make a remote context known without fetching it.

    Parameters
    ----------
    url : str
        The URL clients send (in ``Link`` or ``@context``).
    context : dict, list or str
        The document's ``@context`` value, or the whole document
        (``{"@context": ...}``).
    """
    if isinstance(context, dict) and "@context" in context:
        context = context["@context"]
    with _registry_lock:
        _registry[url] = context
    _resolved.clear()


def load_context_dir(path: str | Path) -> int:
    """Register the contexts of a directory; return how many were registered.

    The directory holds ``index.json``, an object mapping each context URL to a file
    name in the same directory; each file is a JSON-LD context document. A missing
    directory registers nothing.

    Raises
    ------
    ValueError
        When ``index.json`` or a file it names is not valid JSON.
    """
    folder = Path(path)
    index_file = folder / "index.json"
    if not index_file.is_file():
        return 0
    try:
        index = json.loads(index_file.read_text())
    except ValueError as error:
        raise ValueError(f"{index_file}: not valid JSON: {error}") from None
    for url, name in index.items():
        file = folder / name
        try:
            register_context(url, json.loads(file.read_text()))
        except (OSError, ValueError) as error:
            raise ValueError(f"{file}: cannot load the context for {url}: {error}") from None
    return len(index)


def known_context(url: str) -> Any | None:
    """The registered context of ``url``, or None."""
    return _registry.get(url)


# ------------------------------------------------------------------ context
@dataclass
class LdContext:
    """An active JSON-LD context: the core context plus a client's terms.

    Attributes
    ----------
    terms : dict
        Term -> absolute IRI (or a keyword such as ``@id``).
    vocab : str
        The vocabulary mapping unmapped terms expand against.
    source : Any
        What the client sent (URL, object or list), echoed as ``@context`` in
        ``application/ld+json`` responses; None for the core context alone.
    link_url : str
        The URL for the ``Link`` header of ``application/json`` responses.
    """

    terms: dict[str, str]
    vocab: str = DEFAULT_VOCAB
    source: Any = None
    link_url: str = CORE_CONTEXT_URL
    _reverse: dict[str, str] = field(default_factory=dict, repr=False)
    _prefixes: list[tuple[str, str]] = field(default_factory=list, repr=False)
    _to_canonical: dict[str, str] = field(default_factory=dict, repr=False)
    _from_canonical: dict[str, str] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for term, iri in sorted(self.terms.items(), key=lambda t: (len(t[0]), t[0])):
            if iri.startswith("@"):
                continue
            self._reverse.setdefault(iri, term)
            if iri.endswith(_GEN_DELIMS):
                self._prefixes.append((iri, term))
        self._prefixes.sort(key=lambda p: -len(p[0]))

    @property
    def is_core(self) -> bool:
        """True when the client brought no context of its own."""
        return self.source is None

    def response_context(self) -> Any:
        """The ``@context`` value of an ``application/ld+json`` response."""
        return CORE_CONTEXT_URL if self.source is None else self.source

    def link_header(self) -> str:
        """The ``Link`` header value of an ``application/json`` response."""
        return f'<{self.link_url}>; rel="{JSONLD_CONTEXT_REL}"; type="{JSON_LD}"'

    # ---------------------------------------------------------- IRIs
    def expand(self, term: str) -> str:
        """The absolute IRI of a term, compact IRI or IRI."""
        iri = self.terms.get(term)
        if iri is not None:
            return iri
        if ":" in term:
            prefix, suffix = term.split(":", 1)
            if suffix.startswith("//") or prefix not in self.terms:
                return term  # an absolute IRI (https://..., urn:...)
            return self.terms[prefix] + suffix
        return self.vocab + term

    def compact(self, iri: str, *, prefixes: bool = True) -> str:
        """The shortest name of ``iri`` in this context (JSON-LD compaction of a name).

        With ``prefixes=False`` no ``prefix:suffix`` form is made: that is how stored
        names are formed (an IRI outside the core context and the default vocabulary
        is stored whole).
        """
        term = self._reverse.get(iri)
        if term is not None:
            return term
        if iri.startswith(self.vocab):
            suffix = iri[len(self.vocab):]
            if suffix and ":" not in suffix and suffix not in self.terms:
                return suffix
        if not prefixes:
            return iri
        for base, prefix in self._prefixes:
            if iri.startswith(base) and len(iri) > len(base):
                suffix = iri[len(base):]
                if "/" not in suffix and "#" not in suffix:  # keep compact IRIs readable
                    return f"{prefix}:{suffix}"
        return iri

    # --------------------------------------------------- canonical names
    def to_canonical(self, name: str) -> str:
        """The stored name of a name the client wrote in this context."""
        if self.source is None and ":" not in name:
            return name  # the core context maps every plain name to itself
        known = self._to_canonical.get(name)
        if known is None:
            known = CORE.compact(self.expand(name), prefixes=False)
            if len(self._to_canonical) > _MEMO_LIMIT:
                self._to_canonical.clear()
            self._to_canonical[name] = known
        return known

    def from_canonical(self, name: str) -> str:
        """The name a client of this context gets for a stored name."""
        if self.source is None:
            return name
        known = self._from_canonical.get(name)
        if known is None:
            known = self.compact(CORE.expand(name))
            if len(self._from_canonical) > _MEMO_LIMIT:
                self._from_canonical.clear()
            self._from_canonical[name] = known
        return known

    def iri(self, canonical_name: str) -> str:
        """The full IRI of a stored name (for ``id`` members of type/attribute info)."""
        return CORE.expand(canonical_name)


CORE = LdContext(dict(CORE_CONTEXT))


# --------------------------------------------------------------- resolution
_resolved: OrderedDict[bytes, LdContext] = OrderedDict()
_RESOLVED_LIMIT = 256
_resolved_lock = threading.Lock()


def resolve_context(source: Any, *, link_url: str | None = None) -> LdContext:
    """The active context for a client's ``@context`` value (URL, object or list).

    Results are cached, so a device that sends the same context each time pays once.

    Raises
    ------
    BadRequestData
        When the value is not a context (a number, a list of numbers ...).
    """
    if source is None or (isinstance(source, str) and source in CORE_CONTEXT_URLS) or (
            isinstance(source, list) and all(
                isinstance(s, str) and s in CORE_CONTEXT_URLS for s in source)):
        return CORE
    try:
        key = orjson.dumps([source, link_url], option=orjson.OPT_SORT_KEYS)
    except TypeError:
        raise BadRequestData("@context: not a JSON-LD context") from None
    with _resolved_lock:
        found = _resolved.get(key)
        if found is not None:
            _resolved.move_to_end(key)
            return found
    terms: dict[str, str] = {}
    vocab = [DEFAULT_VOCAB]
    _apply(source, terms, vocab, depth=0, seen=set())
    terms.update(CORE_CONTEXT)  # the core context is protected: its terms always win
    context = LdContext(terms, vocab[0], source=source,
                        link_url=link_url or _link_url(source))
    with _resolved_lock:
        _resolved[key] = context
        if len(_resolved) > _RESOLVED_LIMIT:
            _resolved.popitem(last=False)
    return context


def _link_url(source: Any) -> str:
    """The one URL a ``Link`` header can name for a context: the context's own URL, or
    the one URL besides the core context in a list; else the core context."""
    if isinstance(source, str):
        return source
    if isinstance(source, list):
        urls = [s for s in source if not (isinstance(s, str) and s in CORE_CONTEXT_URLS)]
        if len(urls) == 1 and isinstance(urls[0], str):
            return urls[0]
    return CORE_CONTEXT_URL


def _apply(source: Any, terms: dict[str, str], vocab: list[str], *, depth: int,
           seen: set[str]) -> None:
    if depth > 8:
        raise BadRequestData("@context: contexts nest more than 8 levels deep")
    if source is None:
        terms.clear()
        vocab[0] = DEFAULT_VOCAB
    elif isinstance(source, list):
        for item in source:
            _apply(item, terms, vocab, depth=depth + 1, seen=seen)
    elif isinstance(source, str):
        if source in CORE_CONTEXT_URLS or source in seen:
            return
        registered = known_context(source)
        if registered is None:
            if source not in _warned_urls:
                _warned_urls.add(source)
                log.warning("@context %s is not known locally and is not fetched; its "
                            "terms resolve against the default vocabulary", source)
            return
        _apply(registered, terms, vocab, depth=depth + 1, seen=seen | {source})
    elif isinstance(source, dict):
        _apply_object(source, terms, vocab)
    else:
        raise BadRequestData(f"@context: {source!r} is neither a URL nor a context object")


def _apply_object(source: dict, terms: dict[str, str], vocab: list[str]) -> None:
    if "@vocab" in source:
        value = source["@vocab"]
        if value is None:
            vocab[0] = DEFAULT_VOCAB
        elif isinstance(value, str):
            vocab[0] = _resolve_iri(value, {}, terms, vocab[0], set())
        else:
            raise BadRequestData("@context: @vocab must be a string")
    raw: dict[str, str | None] = {}
    for term, definition in source.items():
        if term.startswith("@") or term in CORE_CONTEXT:
            continue  # keywords, and redefinitions of protected core terms
        if definition is None or isinstance(definition, str):
            raw[term] = definition
        elif isinstance(definition, dict):
            iri = definition.get("@id", definition.get("@reverse"))
            raw[term] = iri if isinstance(iri, str) else term
        else:
            raise BadRequestData(f"@context: the definition of {term!r} must be a string "
                                 "or an object")
    for term, value in raw.items():
        if value is None:
            terms.pop(term, None)
            continue
        iri = _resolve_iri(value, raw, terms, vocab[0], {term})
        if not iri.startswith("@"):
            terms[term] = iri


def _resolve_iri(value: str, local: dict, terms: dict, vocab: str, seen: set) -> str:
    if value.startswith("@"):
        return value
    if ":" in value:
        prefix, suffix = value.split(":", 1)
        if suffix.startswith("//"):
            return value
        if prefix in local and prefix not in seen and local[prefix] is not None:
            return _resolve_iri(local[prefix], local, terms, vocab, seen | {prefix}) + suffix
        if prefix in terms:
            return terms[prefix] + suffix
        if prefix in CORE_CONTEXT:
            return CORE_CONTEXT[prefix] + suffix
        return value
    if value in local and value not in seen and local[value] is not None:
        return _resolve_iri(local[value], local, terms, vocab, seen | {value})
    if value in terms:
        return terms[value]
    return vocab + value


# ------------------------------------------------------------- Link header
_LINK = re.compile(r'<([^>]*)>((?:\s*;\s*[A-Za-z*-]+\s*=\s*(?:"[^"]*"|[^;,]*))*)')
_PARAM = re.compile(r';\s*([A-Za-z*-]+)\s*=\s*(?:"([^"]*)"|([^;,]*))')


def context_url_from_link(header: str | None) -> str | None:
    """The JSON-LD context URL of a ``Link`` header, or None.

    Raises
    ------
    BadRequestData
        When the header names more than one JSON-LD context.
    """
    if not header:
        return None
    urls = []
    for match in _LINK.finditer(header):
        params = {m.group(1).lower(): (m.group(2) if m.group(2) is not None
                                       else m.group(3).strip())
                  for m in _PARAM.finditer(match.group(2))}
        if JSONLD_CONTEXT_REL in params.get("rel", "").split():
            urls.append(match.group(1).strip())
    if len(urls) > 1:
        raise BadRequestData("Link: more than one JSON-LD context link header")
    return urls[0] if urls else None


def link_context(request: Request) -> LdContext:
    """The context a request names in its ``Link`` header (the core one if none).

    Usable as a FastAPI dependency for requests without a JSON-LD body.
    """
    url = context_url_from_link(request.headers.get("link"))
    return CORE if url is None else resolve_context(url, link_url=url)


# ---------------------------------------------------------- name mapping
def canonical_names(text: str | None, context: LdContext) -> list[str] | None:
    """Split a comma-separated parameter (``attrs``, ``type``) into stored names."""
    if text is None:
        return None
    names = [n.strip() for n in text.split(",")]
    return [context.to_canonical(n) for n in names if n]


def canonical_entity(body: Any, context: LdContext) -> Any:
    """Rename an entity's type, attributes and sub-attributes to stored names.

    Values are left as they are; a body that is not an object is returned unchanged
    (validation reports it later). ``@context`` is dropped.
    """
    if not isinstance(body, dict):
        return body
    return _rename_entity(body, context.to_canonical)


def compact_entity(entity: dict, context: LdContext) -> dict:
    """Rename a stored entity's names to the names of ``context`` (the inverse)."""
    if context.is_core:
        return entity
    return _rename_entity(entity, context.from_canonical)


def _rename_entity(entity: dict, rename) -> dict:
    """Rename the type(s), attributes and sub-attributes of an entity with ``rename``;
    entity keywords are kept and ``@context`` is dropped."""
    out: dict = {}
    for key, value in entity.items():
        if key == "@context":
            continue
        if key == "type":
            out[key] = _map_types(value, rename)
        elif key in _ENTITY_KEYWORDS:
            out[key] = value
        else:
            out[rename(key)] = _map_attribute(value, rename)
    return out


def canonical_attributes(body: Any, context: LdContext) -> Any:
    """Rename the attributes of an attribute fragment (``PATCH .../attrs``)."""
    return canonical_entity(body, context)


def canonical_fragment(fragment: Any, context: LdContext) -> Any:
    """Rename the sub-attributes of one attribute instance (partial update)."""
    return _map_attribute(fragment, context.to_canonical, force=True)


def _map_types(value: Any, rename) -> Any:
    if isinstance(value, str):
        return rename(value)
    if isinstance(value, list):
        return [rename(v) if isinstance(v, str) else v for v in value]
    return value


def _map_attribute(value: Any, rename, force: bool = False) -> Any:
    if isinstance(value, list):
        return [_map_attribute(v, rename, force) for v in value]
    if not isinstance(value, dict) or not (force or value.get("type") in ATTRIBUTE_TYPES):
        return value  # a keyValues value, or a bad attribute that validation reports
    out = {}
    for key, member in value.items():
        if key == "@context":
            continue
        if key in _INSTANCE_KEYWORDS:
            out[key] = _map_types(member, rename) if key == "objectType" else member
        else:
            out[rename(key)] = _map_attribute(member, rename)
    return out


def canonical_q(expr: Any, context: LdContext) -> Any:
    """Rename the attribute paths of a parsed ``q`` expression to stored names.

    ``expr`` is a tree from :func:`cityos.core.ngsi_ld.qlang.parse_q`; the attribute and
    sub-attribute names are renamed, compound ``[key]`` parts (inside a value) are not.
    With the core context the expression is returned unchanged.
    """
    from dataclasses import replace

    from cityos.core.ngsi_ld.qlang import Term

    if expr is None or context.is_core:
        return expr
    if isinstance(expr, Term):
        path = expr.path
        return replace(expr, path=replace(
            path, name=context.to_canonical(path.name),
            sub=tuple(context.to_canonical(s) for s in path.sub)))
    return type(expr)(tuple(canonical_q(part, context) for part in expr.parts))


# ------------------------------------------------------ media negotiation
def _media_ranges(header: str) -> list[tuple[float, int, str]]:
    ranges = []
    for position, part in enumerate(header.split(",")):
        pieces = [p.strip() for p in part.split(";")]
        media = pieces[0].lower()
        if not media:
            continue
        quality = 1.0
        for param in pieces[1:]:
            if param.lower().startswith("q="):
                try:
                    quality = float(param[2:])
                except ValueError:
                    quality = 0.0
        ranges.append((quality, position, media))
    return ranges


def negotiate(request: Request, offered: tuple[str, ...] = (JSON, JSON_LD)) -> str:
    """The response media type for a request's ``Accept`` header.

    ``*/*``, ``application/*`` and no header at all give ``application/json``.

    Raises
    ------
    NotAcceptable
        When ``Accept`` lists none of ``offered``.
    """
    header = request.headers.get("accept")
    if not header:
        return JSON
    best: tuple[float, int, str] | None = None
    for quality, position, media in _media_ranges(header):
        if quality <= 0:
            continue
        if media in ("*/*", "application/*"):
            choice = JSON
        elif media in offered:
            choice = media
        else:
            continue
        if best is None or quality > best[0] or (quality == best[0] and position < best[1]):
            best = (quality, position, choice)
    if best is None:
        raise NotAcceptable(f"Accept: {header!r} names none of {', '.join(offered)}")
    return best[2]


def accept_json(request: Request) -> str:
    """FastAPI dependency: JSON or JSON-LD output."""
    return negotiate(request)


def accept_geojson(request: Request) -> str:
    """FastAPI dependency: JSON, JSON-LD or GeoJSON output."""
    return negotiate(request, (JSON, JSON_LD, GEO_JSON))


# ------------------------------------------------------------ request body
@dataclass
class LdBody:
    """A parsed JSON or JSON-LD request body and the contexts to read it with.

    Attributes
    ----------
    data : Any
        The parsed JSON.
    json_ld : bool
        True for ``Content-Type: application/ld+json``.
    link : LdContext
        The context of the ``Link`` header (core when none; ignored for JSON-LD).
    """

    data: Any
    json_ld: bool
    link: LdContext

    def context_of(self, item: Any, where: str = "") -> LdContext:
        """The context of one payload object (the body, or one entity of a batch).

        Raises
        ------
        BadRequestData
            ``application/ld+json`` without ``@context``, or ``application/json`` with one.
        """
        has_context = isinstance(item, dict) and "@context" in item
        if self.json_ld:
            if not has_context:
                raise BadRequestData(f"{where}@context is required in the body when the "
                                     f"Content-Type is {JSON_LD}")
            return resolve_context(item["@context"])
        if has_context:
            raise BadRequestData(f"{where}@context is not allowed in the body when the "
                                 f"Content-Type is {JSON}; send {JSON_LD} or a Link header")
        return self.link

    @property
    def context(self) -> LdContext:
        """The context of the body as a whole (see :meth:`context_of`)."""
        return self.context_of(self.data)


def parse_json(raw: bytes) -> Any:
    """Parse a JSON body; InvalidRequest with line and column when it is not JSON."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    try:  # the standard parser tells line and column in the client's terms
        return json.loads(raw)
    except json.JSONDecodeError as error:
        raise InvalidRequest(f"request body is not valid JSON: line {error.lineno} column "
                             f"{error.colno}: {error.msg}") from None
    except UnicodeDecodeError:
        raise InvalidRequest("request body is not valid JSON: it is not UTF-8") from None


async def read_body(request: Request) -> LdBody:
    """FastAPI dependency: the request's JSON body with its ``Content-Type`` checked.

    Raises
    ------
    UnsupportedMediaType
        For a ``Content-Type`` other than JSON, JSON-LD or merge-patch JSON.
    InvalidRequest
        For an empty or malformed body.
    """
    content_type = request.headers.get("content-type", JSON).split(";")[0].strip().lower()
    if content_type not in (JSON, JSON_LD, MERGE_PATCH):
        raise UnsupportedMediaType(f"Content-Type: {content_type!r} is not supported; send "
                                   f"{JSON} or {JSON_LD}")
    raw = await request.body()
    if not raw.strip():
        raise InvalidRequest("request body is empty; a JSON payload is required")
    data = parse_json(raw)
    json_ld = content_type == JSON_LD
    if json_ld and context_url_from_link(request.headers.get("link")) is not None:
        # 6.3.5: a JSON-LD body brings its own @context; a context link as well is refused
        raise BadRequestData(f"Link: a JSON-LD context link header is not allowed with "
                             f"Content-Type {JSON_LD} (put the context in the body)")
    return LdBody(data, json_ld, CORE if json_ld else link_context(request))
