"""``q`` terms on linked entities (clause 4.9): ``managedBy{name}=="Pisa Tower"``.

The part before the braces is a Relationship of the entity; the term inside applies to
the entities it points at (any of them), optionally restricted by an entity type hint
(``managedBy{Building:name}``); braces nest, one per hop. The other terms are evaluated
as usual (:func:`cityos.core.ngsi_ld.qlang.q_matches`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace

from cityos.core.entities import attribute_instances, entity_types
from cityos.core.ngsi_ld.qlang import And, Or, QExpr, Term, iter_terms, q_matches

_LINKED = re.compile(r"(?P<rel>[^{}]+)\{(?:(?P<hint>[^{}:/]+):(?!//))?(?P<inner>.+)\}")
#: The renamed form: the hint (an IRI, maybe with ':') ends at a unit separator.
_RENAMED = re.compile(r"(?P<rel>[^{}]+)\{(?:(?P<hint>[^{}\x1f]+)\x1f)?(?P<inner>.+)\}")

#: ids -> the linked entities (canonical bodies) by id
Fetch = Callable[[list[str]], dict[str, dict]]


def hops(expr: QExpr) -> int:
    """How many relationship hops the deepest term reaches (0: none)."""
    return max((term.path.name.count("{") for term in iter_terms(expr)), default=0)


def rename_linked(expr: QExpr, rename: Callable[[str], str]) -> QExpr:
    """Rename every name of the expression, inside braces too (a client's context)."""
    if isinstance(expr, Term):
        return replace(expr, path=replace(expr.path, name=_rename_name(expr.path.name,
                                                                          rename),
                                          sub=tuple(rename(s) for s in expr.path.sub)))
    return type(expr)(tuple(rename_linked(part, rename) for part in expr.parts))


def _rename_name(name: str, rename: Callable[[str], str]) -> str:
    match = _LINKED.fullmatch(name)
    if not match:
        return rename(name)
    hint = f"{rename(match['hint'])}\x1f" if match["hint"] else ""
    return f"{rename(match['rel'])}{{{hint}{_rename_name(match['inner'], rename)}}}"


def linked_matches(expr: QExpr, entity: dict, fetch: Fetch) -> bool:
    """True when the entity satisfies ``expr`` (renamed by :func:`rename_linked`),
    following linked terms with ``fetch``."""
    if isinstance(expr, And):
        return all(linked_matches(part, entity, fetch) for part in expr.parts)
    if isinstance(expr, Or):
        return any(linked_matches(part, entity, fetch) for part in expr.parts)
    match = _RENAMED.fullmatch(expr.path.name)
    if not match:
        return q_matches(expr, entity)
    objects: list[str] = []
    for instance in attribute_instances(entity.get(match["rel"]) or []):
        if isinstance(instance, dict) and instance.get("type") == "Relationship":
            obj = instance.get("object")
            objects += obj if isinstance(obj, list) else [obj]
    inner = replace(expr, path=replace(expr.path, name=match["inner"]))
    for linked in fetch([o for o in objects if isinstance(o, str)]).values():
        if match["hint"] and match["hint"] not in entity_types(linked):
            continue
        if linked_matches(inner, linked, fetch):
            return True
    return False
