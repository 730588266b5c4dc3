"""Linked-entity retrieval (``join``, ``joinLevel``; clause 4.5.23).

The entities a Relationship points at are fetched, up to ``joinLevel`` hops, and either
placed inline (``join=inline``: the Relationship gains an ``entity`` member, or, in the
simplified form, its object is replaced by the entity) or listed after the entities
asked for (``join=flat``: a flat list, each entity once). A nested ``pick`` / ``omit``
(``locatedAt{name}``) projects the linked entity; without one it comes whole. A linked
entity that does not exist, or that projection leaves empty, is left out.
"""

from __future__ import annotations

from collections.abc import Callable

from cityos.core.entities import RESERVED_KEYS, attribute_instances
from cityos.core.ngsi_ld.projection import Projection, is_empty, nested
from cityos.core.ngsi_ld.representation import Renderer
from cityos.core.store.base import StoredEntity

Fetch = Callable[[list[str]], dict[str, StoredEntity]]


def _links(renderer: Renderer, record: StoredEntity) -> list[tuple[str, list[str]]]:
    """(client name, object ids) of the record's Relationships that survive attrs."""
    out = []
    entity = renderer.canonical(record)
    for name, attr in entity.items():
        if name in RESERVED_KEYS:
            continue
        objects: list[str] = []
        for instance in attribute_instances(attr):
            if isinstance(instance, dict) and instance.get("type") == "Relationship":
                obj = instance.get("object")
                objects += [o for o in (obj if isinstance(obj, list) else [obj])
                            if isinstance(o, str)]
        if objects:
            out.append((renderer.context.from_canonical(name), objects))
    return out


def render_inline(renderer: Renderer, record: StoredEntity, fetch: Fetch, level: int,
                  pick: Projection | None, omit: Projection | None, *,
                  top: bool = True) -> dict:
    """The record rendered with its linked entities inline, ``level`` hops deep."""
    rendered = renderer.render(record, pick, omit, top=top)
    if level <= 0:
        return rendered
    if top:
        pick, omit = renderer.pick, renderer.omit
    links = [(n, ids) for n, ids in _links(renderer, record) if n in rendered]
    found = fetch(sorted({i for _, ids in links for i in ids}))
    for name, ids in links:
        linked = {}
        for entity_id in ids:
            target = found.get(entity_id)
            if target is None:
                continue
            child = render_inline(renderer, target, fetch, level - 1, nested(pick, name),
                                  nested(omit, name), top=False)
            if not is_empty(child):
                linked[entity_id] = child
        if linked:
            rendered[name] = _attach(rendered[name], linked, renderer.form)
    return rendered


def _attach(attr, linked: dict[str, dict], form: str):
    """The rendered Relationship with its linked entities attached."""
    if form == "simplified":
        if isinstance(attr, str):
            return linked.get(attr, attr)
        if isinstance(attr, list):
            return [linked.get(a, a) if isinstance(a, str) else a for a in attr]
        return attr
    instances = attr if isinstance(attr, list) else [attr]
    out = []
    for instance in instances:
        if isinstance(instance, dict) and "object" in instance:
            obj = instance["object"]
            if isinstance(obj, list):
                entities = [linked[o] for o in obj if o in linked]
                if entities:
                    instance = {**instance, "entity": entities}
            elif obj in linked:
                instance = {**instance, "entity": linked[obj]}
        out.append(instance)
    return out if isinstance(attr, list) else out[0]


def render_flat(renderer: Renderer, records: list[StoredEntity], fetch: Fetch,
                level: int) -> list[dict]:
    """The records rendered, then each entity they link to (``level`` hops), once."""
    out = []
    seen: set[str] = set()
    frontier = [(record, renderer.pick, renderer.omit, True) for record in records]
    for record, _, _, _ in frontier:
        seen.add(record.id)
    for depth in range(level + 1):
        next_frontier = []
        for record, pick, omit, top in frontier:
            rendered = renderer.render(record, pick, omit, top=top)
            if is_empty(rendered):
                continue
            out.append(rendered)
            if depth == level:
                continue
            links = [(n, ids) for n, ids in _links(renderer, record) if n in rendered]
            wanted = [i for _, ids in links for i in ids if i not in seen]
            found = fetch(sorted(set(wanted)))
            for name, ids in links:
                for entity_id in ids:
                    target = found.get(entity_id)
                    if target is None or entity_id in seen:
                        continue
                    seen.add(entity_id)
                    next_frontier.append((target, nested(pick, name), nested(omit, name),
                                          False))
        frontier = next_frontier
    return out
