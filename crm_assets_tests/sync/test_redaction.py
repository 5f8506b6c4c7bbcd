"""The key never survives in a log record, whichever logger writes it, or in a raised error."""

import io
import logging
from urllib.parse import quote, quote_plus

from crm_assets.sync.redaction import leaked_secret, redact, redacted_logs

KEY = "k3y/with+chars=and spaces"
ENCODINGS = (KEY, quote(KEY), quote(KEY, safe=""), quote_plus(KEY))


def _log_through_a_handler(logger_name: str, *args: object, exc: bool = False) -> str:
    """What a handler on the root logger writes for one DEBUG record of `logger_name`."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        logger = logging.getLogger(logger_name)
        if exc:
            try:
                raise RuntimeError(f"GET /v1/lead?api_key={quote_plus(KEY)} failed")
            except RuntimeError:
                logger.exception(*args)  # type: ignore[arg-type]
        else:
            logger.debug(*args)  # type: ignore[arg-type]
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    return stream.getvalue()


def test_every_encoding_of_the_key_is_masked_in_any_loggers_records() -> None:
    line = '%s "GET /v1/lead?offset=0&api_key=%s HTTP/1.1" 200'
    with redacted_logs([KEY]):
        written = [
            _log_through_a_handler("a.library.connectionpool", line, "http://h", encoded)
            for encoded in ENCODINGS
        ]
    for text in written:
        assert "api_key=*** HTTP/1.1" in text
        assert not any(encoded in text for encoded in ENCODINGS)


def test_a_logged_traceback_is_masked_too() -> None:
    with redacted_logs([KEY]):
        text = _log_through_a_handler("any.library", "request failed", exc=True)

    assert "RuntimeError: GET /v1/lead?api_key=*** failed" in text
    assert quote_plus(KEY) not in text


def test_records_are_left_alone_outside_a_sync_and_nesting_keeps_the_mask() -> None:
    factory = logging.getLogRecordFactory()
    with redacted_logs([KEY]):
        with redacted_logs(["another-secret"]):
            pass
        masked = _log_through_a_handler("another.library", "key %s", KEY)
    after = _log_through_a_handler("another.library", "key %s", KEY)

    assert masked == "key ***\n"  # the outer sync's key stays masked after the inner one ends
    assert after == f"key {KEY}\n"
    assert logging.getLogRecordFactory() is factory


def test_an_error_that_holds_the_key_anywhere_in_its_chain_is_replaced() -> None:
    try:
        try:
            raise ConnectionError(f"http://h/v1/lead?api_key={quote_plus(KEY)}")
        except ConnectionError as inner:
            raise ValueError("page failed") from inner
    except ValueError as error:
        chained = error

    message = leaked_secret(chained, [KEY])

    assert message is not None
    assert "ValueError: page failed" in message
    assert quote_plus(KEY) not in message
    assert leaked_secret(ValueError("nothing secret"), [KEY]) is None


def test_redact_masks_the_longest_variant_first() -> None:
    assert redact(f"a={quote_plus(KEY)}", {KEY, quote_plus(KEY)}) == "a=***"
