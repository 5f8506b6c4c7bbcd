"""Secrets out of every log record, whichever library logs them and whoever captures them.

The API key travels in the query string, so any library that logs a URL at DEBUG (urllib3's
request lines, requests, dlt) would write it wherever logs go: Dagster's event log when
`python_logs` manages those loggers, compute logs, the terminal. Filters on loggers miss records
of child loggers, and handlers come and go (Dagster attaches its own per run), so redaction
happens where every record is born: the log record factory, for as long as a sync runs.
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote, quote_plus

MASK = "***"
_MIN_SECRET_LENGTH = 4  # shorter values would mask ordinary words

_lock = threading.Lock()
_active: Counter[str] = Counter()  # secret variant -> syncs that registered it
_previous_factory: Any = None


def variants(secret: str) -> set[str]:
    """The secret as it may appear in text: raw, and as each URL encoding writes it."""
    if len(secret) < _MIN_SECRET_LENGTH:
        return set()
    return {secret, quote(secret, safe=""), quote(secret), quote_plus(secret)}


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret replaced by `***`, longest first (an encoding may contain
    another variant)."""
    for secret in sorted(secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def leaked_secret(error: BaseException, secrets: Iterable[str]) -> str | None:
    """None when `error` (its text, traceback and chained errors) holds no secret; else what
    it said, redacted, to raise in its place."""
    found = {v for secret in secrets for v in variants(secret)}
    text = "".join(traceback.format_exception(error))
    if not any(v in text for v in found):
        return None
    said = redact(f"{type(error).__name__}: {error}", found)
    return f"CRM sync failed: {said} (the API key was removed from this message)"


def _scrub(record: logging.LogRecord) -> None:
    with _lock:
        secrets = list(_active)
    if not secrets:
        return
    message = record.getMessage()
    cleaned = redact(message, secrets)
    if cleaned != message:
        record.msg, record.args = cleaned, None
    if record.exc_info and record.exc_info[1] is not None:
        text = "".join(traceback.format_exception(*record.exc_info))
        if redact(text, secrets) != text:
            record.exc_info, record.exc_text = None, redact(text, secrets).rstrip("\n")
    if record.stack_info:
        record.stack_info = redact(record.stack_info, secrets)


def _factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    record: logging.LogRecord = _previous_factory(*args, **kwargs)
    _scrub(record)
    return record


@contextmanager
def redacted_logs(secrets: Iterable[str]) -> Iterator[None]:
    """While active, no log record created in this process holds any of `secrets`."""
    global _previous_factory
    mine = Counter({v for secret in secrets for v in variants(secret)})
    with _lock:
        if not _active and logging.getLogRecordFactory() is not _factory:
            _previous_factory = logging.getLogRecordFactory()
            logging.setLogRecordFactory(_factory)
        _active.update(mine)
    try:
        yield
    finally:
        with _lock:
            _active.subtract(mine)
            for variant in [v for v, n in _active.items() if n <= 0]:
                del _active[variant]
            if not _active and logging.getLogRecordFactory() is _factory:
                logging.setLogRecordFactory(_previous_factory)
