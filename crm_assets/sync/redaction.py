"""Secrets out of every log record, whichever library logs them and whoever captures them.

The API key travels in the query string, so any library that logs a URL at DEBUG (urllib3's
request lines, requests, dlt) would write it wherever logs go: Dagster's event log when
`python_logs` manages those loggers, compute logs, the terminal. Filters on loggers miss records
of child loggers, and handlers come and go (Dagster attaches its own per run), so redaction
happens where every record is born: the log record factory, for as long as a sync runs.

One matching rule everywhere (logs, raised errors, failure messages): a secret of at least
`_MIN_ANYWHERE` characters does not occur by chance, so it is masked wherever it appears, even
inside a word; a shorter one (a one-character Postgres password) is masked only where it stands
as a whole token, with no letter or digit either side (`crm:x@host`, `api_key=abc&`), so that it
never garbles words that merely contain it (`max_retry_count`, `Exiting`).
"""

from __future__ import annotations

import logging
import re
import threading
import traceback
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any
from urllib.parse import quote, quote_plus

MASK = "***"
_MIN_ANYWHERE = 12  # a secret this long is masked even inside a word; shorter, as a token only
_NO_LETTER_OR_DIGIT_BEFORE = r"(?<![^\W_])"  # [^\W_]: a letter or digit, any script
_NO_LETTER_OR_DIGIT_AFTER = r"(?![^\W_])"

_lock = threading.Lock()
_active: Counter[str] = Counter()  # secret variant -> syncs that registered it
_active_pattern: re.Pattern[str] | None = None  # what `_scrub` masks, compiled once per change
_previous_factory: Any = None


def variants(secret: str) -> set[str]:
    """The secret as it may appear in text: raw, and as each URL encoding writes it."""
    if not secret:
        return set()
    return {secret, quote(secret, safe=""), quote(secret), quote_plus(secret)}


@lru_cache(maxsize=64)
def _pattern(secrets: frozenset[str]) -> re.Pattern[str] | None:
    """One regex for a set of secrets: longest first, so that an encoding holding another
    variant is masked whole; the short ones only as whole tokens."""
    alternatives = [
        re.escape(secret)
        if len(secret) >= _MIN_ANYWHERE
        else f"{_NO_LETTER_OR_DIGIT_BEFORE}{re.escape(secret)}{_NO_LETTER_OR_DIGIT_AFTER}"
        for secret in sorted(filter(None, secrets), key=lambda s: (-len(s), s))
    ]
    return re.compile("|".join(alternatives)) if alternatives else None


def _masked(text: str, pattern: re.Pattern[str] | None) -> str:
    return pattern.sub(MASK, text) if pattern is not None else text


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret (each string as given: pass `variants` for the encodings)
    replaced by `***`, by the rule in this module's docstring."""
    return _masked(text, _pattern(frozenset(secrets)))


def leaked_secret(error: BaseException, secrets: Iterable[str]) -> str | None:
    """None when `error` (its text, traceback and chained errors) holds no secret; else what
    it said, redacted, to raise in its place."""
    pattern = _pattern(frozenset(v for secret in secrets for v in variants(secret)))
    text = "".join(traceback.format_exception(error))
    if pattern is None or pattern.search(text) is None:
        return None
    said = _masked(f"{type(error).__name__}: {error}", pattern)
    return f"CRM sync failed: {said} (the API key was removed from this message)"


def _scrub(record: logging.LogRecord) -> None:
    pattern = _active_pattern  # one read: replaced whole, never changed in place
    if pattern is None:
        return
    message = record.getMessage()
    cleaned = _masked(message, pattern)
    if cleaned != message:
        record.msg, record.args = cleaned, None
    if record.exc_info and record.exc_info[1] is not None:
        text = "".join(traceback.format_exception(*record.exc_info))
        cleaned = _masked(text, pattern)
        if cleaned != text:
            record.exc_info, record.exc_text = None, cleaned.rstrip("\n")
    if record.stack_info:
        record.stack_info = _masked(record.stack_info, pattern)


def _factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    record: logging.LogRecord = _previous_factory(*args, **kwargs)
    _scrub(record)
    return record


@contextmanager
def redacted_logs(secrets: Iterable[str]) -> Iterator[None]:
    """While active, no log record created in this process holds any of `secrets`."""
    global _previous_factory, _active_pattern
    mine = Counter({v for secret in secrets for v in variants(secret)})
    with _lock:
        if not _active and logging.getLogRecordFactory() is not _factory:
            _previous_factory = logging.getLogRecordFactory()
            logging.setLogRecordFactory(_factory)
        _active.update(mine)
        _active_pattern = _pattern(frozenset(_active))
    try:
        yield
    finally:
        with _lock:
            _active.subtract(mine)
            for variant in [v for v, n in _active.items() if n <= 0]:
                del _active[variant]
            _active_pattern = _pattern(frozenset(_active))
            if not _active and logging.getLogRecordFactory() is _factory:
                logging.setLogRecordFactory(_previous_factory)
