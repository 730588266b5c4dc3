"""The dashboard's message catalogues: one JSON file per language in ``locales/``.

``en.json`` is the reference: every key the interface uses is there. Another
language is offered once its file exists; a key it lacks falls back to English in
the browser, and :func:`missing_keys` says which keys those are (a catalogue is
complete when none are). Adding a language is adding a file: copy ``en.json`` to
``<code>.json``, translate the values, and add the code to :data:`LANGUAGES` if it
is not there yet.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

LOCALES_DIR = Path(__file__).parent / "locales"
REFERENCE = "en"
#: Languages the dashboard is laid out for (code -> name in that language); a
#: language is offered in the menu once its catalogue file exists.
LANGUAGES = {
    "en": "English",
    "ja": "日本語",
    "ms": "Bahasa Melayu",
    "id": "Bahasa Indonesia",
    "vi": "Tiếng Việt",
    "uz": "Oʻzbekcha",
    "ru": "Русский",
}


def catalogue_path(code: str) -> Path:
    """The file of language ``code`` (which may not exist)."""
    return LOCALES_DIR / f"{code}.json"


@lru_cache(maxsize=16)
def load_catalogue(code: str) -> dict[str, str]:
    """The messages of ``code``; KeyError for a language that is not laid out."""
    if code not in LANGUAGES:
        raise KeyError(code)
    return json.loads(catalogue_path(code).read_text(encoding="utf-8"))


def available_languages() -> list[dict]:
    """The languages with a catalogue: ``{"code", "name", "complete"}`` each."""
    found = []
    for code, name in LANGUAGES.items():
        if catalogue_path(code).exists():
            found.append({"code": code, "name": name, "complete": not missing_keys(code)})
    return found


def missing_keys(code: str) -> list[str]:
    """Keys of the English catalogue that ``code`` does not translate."""
    reference = load_catalogue(REFERENCE)
    messages = load_catalogue(code)
    return sorted(k for k in reference if not messages.get(k))
