"""What a CRM answer that breaks the contract raises, and how a message says where it happened."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit


def where(url: str | None) -> tuple[str, str]:
    """(path, offset) of a request URL for a message, never its query string: it holds the key.

    ("?", "?") when the URL is unknown; offset "0" when the URL has none (a first page).
    """
    if not url:
        return "?", "?"
    parts = urlsplit(url)
    return parts.path, parse_qs(parts.query).get("offset", ["0"])[0]


class CrmResponseError(ValueError):
    """An answer that breaks the contract; says where, never what the records held."""

    def __init__(self, path: str, offset: int | str, problem: str) -> None:
        super().__init__(f"GET {path} at offset {offset}: {problem}")
        self.path, self.offset, self.problem = path, offset, problem
