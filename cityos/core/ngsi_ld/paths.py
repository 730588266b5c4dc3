"""The entity id and attribute name of an NGSI-LD request path, checked before the
store is touched: 400 BadRequestData for an id that is not a URI or a name NGSI-LD
does not allow (dot segments, ``%2e%2e`` included, are refused as names)."""

from __future__ import annotations

from urllib.parse import unquote

from cityos.core.entities import check_attribute_name, is_uri
from cityos.core.errors import BadRequestData
from cityos.core.ngsi_ld.context import LdContext


def path_entity_id(entity_id: str) -> str:
    """The entity id of a path, checked to be a URI (400 BadRequestData otherwise)."""
    if not is_uri(entity_id):
        raise BadRequestData(f"entity id {entity_id!r} in the path is not a URI")
    return entity_id


def path_attribute(attr_id: str, context: LdContext) -> str:
    """The stored name of a path's attribute name, checked."""
    decoded = attr_id
    for _ in range(3):  # a doubly encoded dot segment is still one
        if unquote(decoded) == decoded:
            break
        decoded = unquote(decoded)
    if decoded in (".", "..") or "/" in decoded:
        raise BadRequestData(f"attribute name {attr_id!r} in the path is not valid")
    check_attribute_name(attr_id)
    return context.to_canonical(attr_id)
