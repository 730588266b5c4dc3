"""Dead letters: device messages that could not be stored, kept with the reason why.

A malformed or unauthorised message never stops ingestion: it is recorded here (as a
store document of kind ``deadletter``) and acknowledged. A message whose topic names
no usable tenant is filed under :data:`UNROUTED_TENANT`, a system tenant no API key
can select (tenant names never start with ``@``).
"""

from __future__ import annotations

import secrets
from typing import Any

import orjson

from cityos.core.timefmt import format_datetime, now_utc, to_micros

DEAD_LETTER_KIND = "deadletter"
UNROUTED_TENANT = "@unrouted"
#: Payloads longer than this are cut (and flagged) so one huge message cannot bloat
#: the table.
MAX_PAYLOAD_CHARS = 64 * 1024
#: PostgreSQL's jsonb cannot hold U+0000, which a binary payload often has: it is kept
#: as U+FFFD so that recording the dead letter cannot fail (and stop ingestion).
_NUL, _REPLACEMENT = "\x00", "\ufffd"


def record_dead_letter(store, tenant: str | None, source: str, payload: Any,
                       reason: str) -> dict:
    """Keep one rejected message with its reason.

    Parameters
    ----------
    store : ContextStore
    tenant : str or None
        The tenant the message was meant for; None files it under ``@unrouted``.
    source : str
        The MQTT topic, or ``"http"`` for the HTTP batch endpoint.
    payload : bytes, str or any JSON value
        What the device sent; bytes are decoded as UTF-8 (bad bytes replaced), JSON
        values serialised.
    reason : str
        Why it was rejected, naming the field at fault.

    Returns
    -------
    dict
        The stored record: ``id``, ``tenant``, ``source``, ``payload``,
        ``payloadTruncated``, ``payloadBytes``, ``reason``, ``receivedAt``.
    """
    now = now_utc()
    text = _payload_text(payload).replace(_NUL, _REPLACEMENT)
    record = {
        "id": f"{to_micros(now):017d}-{secrets.token_hex(4)}",  # sorts by time
        "tenant": tenant or UNROUTED_TENANT,
        "source": source,
        "payload": text[:MAX_PAYLOAD_CHARS],
        "payloadTruncated": len(text) > MAX_PAYLOAD_CHARS,
        "payloadBytes": len(payload) if isinstance(payload, bytes) else len(text.encode()),
        "reason": reason.replace(_NUL, _REPLACEMENT),
        "receivedAt": format_datetime(now),
    }
    store.put_document(record["tenant"], DEAD_LETTER_KIND, record["id"], record)
    return record


def list_dead_letters(store, tenant: str, limit: int = 100, offset: int = 0, *,
                      newest_first: bool = False) -> list[dict]:
    """The tenant's dead letters, oldest first (newest first with ``newest_first``).

    Parameters
    ----------
    store : ContextStore
    tenant : str
        ``@unrouted`` lists the messages whose topic named no usable tenant.
    limit, offset : int
        One page of the list.
    newest_first : bool
        Page from the most recent message back, as an operator reads them.
    """
    return store.list_documents(tenant, DEAD_LETTER_KIND, limit=limit, offset=offset,
                                newest_first=newest_first)


def _payload_text(payload: Any) -> str:
    if isinstance(payload, bytes):
        # cut before decoding: a huge binary payload need not be decoded whole
        return payload[:MAX_PAYLOAD_CHARS * 4 + 4].decode("utf-8", errors="replace")
    if isinstance(payload, str):
        return payload
    try:
        return orjson.dumps(payload).decode()
    except TypeError:
        return repr(payload)
