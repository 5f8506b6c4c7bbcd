"""The key never survives in a log record, whichever logger writes it, or in a raised error."""

import io
import logging
from urllib.parse import quote, quote_plus

import pytest

from crm_assets.source.http import RetryPolicy
from crm_assets.sync.errors import describe_sync_failure
from crm_assets.sync.redaction import leaked_secret, redact, redacted_logs, variants

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


# One-, three- and four-character secrets: too short to mask inside words, where they occur by
# chance, yet masked wherever they stand as a whole token.
PASSWORD, SHORT_KEY, WORD_PASSWORD = "x", "abc", "pass"
SHORT = {v for secret in (PASSWORD, SHORT_KEY, WORD_PASSWORD) for v in variants(secret)}
WORDS = (
    "max_retry_count",
    "Exiting",
    "box",
    "abcdef",
    "cabc1",
    "xabc",
    "password authentication failed",
    "bypassed",
)


@pytest.mark.parametrize("text", WORDS)
def test_a_short_secret_inside_a_word_is_left_alone(text: str) -> None:
    assert redact(text, SHORT) == text


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("postgresql://crm:x@127.0.0.1/db", "postgresql://crm:***@127.0.0.1/db"),
        ("GET /v1/lead?api_key=abc&offset=0", "GET /v1/lead?api_key=***&offset=0"),
        ("GET /v1/lead?offset=0&api_key=abc", "GET /v1/lead?offset=0&api_key=***"),
        ("password x, max_retry_count 3. Exiting", "password ***, max_retry_count 3. Exiting"),
        ("postgresql://crm:pass@h/db (password)", "postgresql://crm:***@h/db (password)"),
    ],
)
def test_a_short_secret_standing_as_a_whole_token_is_masked(text: str, masked: str) -> None:
    assert redact(text, SHORT) == masked


@pytest.mark.parametrize("encoded", ENCODINGS)
def test_a_long_key_is_masked_wherever_it_appears_even_inside_a_word(encoded: str) -> None:
    assert len(KEY) >= 12
    secrets = variants(KEY)
    assert redact(f"prefix{encoded}suffix", secrets) == "prefix***suffix"
    assert redact(f"api_key={encoded}&offset=0", secrets) == "api_key=***&offset=0"


def test_a_short_secret_inside_a_word_is_not_a_leak_but_as_a_token_it_is() -> None:
    assert leaked_secret(ValueError("max_retry_count reached. Exiting"), [PASSWORD]) is None

    message = leaked_secret(ValueError("cannot reach postgresql://crm:x@127.0.0.1/db"), [PASSWORD])

    assert message is not None
    assert "postgresql://crm:***@127.0.0.1/db" in message
    assert "ValueError" in message


def test_a_failure_message_with_a_short_secret_is_not_garbled() -> None:
    error = RuntimeError("max_retry_count reached at postgresql://crm:x@127.0.0.1/db. Exiting")

    message = describe_sync_failure(error, RetryPolicy(), [PASSWORD, SHORT_KEY])

    assert "max_retry_count reached at postgresql://crm:***@127.0.0.1/db. Exiting" in message
    assert "***" not in message.replace("crm:***@", "")


def test_a_failure_message_masks_each_encoding_of_a_long_secret() -> None:
    error = RuntimeError(f"GET /v1/lead?api_key={quote_plus(KEY)} failed; raw {KEY}")

    message = describe_sync_failure(error, RetryPolicy(), [KEY])

    assert "api_key=*** failed; raw ***" in message
    assert not any(encoded in message for encoded in ENCODINGS)


def test_a_log_record_keeps_words_holding_a_short_password_and_masks_it_as_a_token() -> None:
    with redacted_logs([PASSWORD, SHORT_KEY]):
        words = _log_through_a_handler("a.library", "max_retry_count reached. %s", "Exiting")
        url = _log_through_a_handler("a.library", "connecting to %s", "postgresql://crm:x@h/db")
        query = _log_through_a_handler("a.library", "GET /v1/lead?api_key=%s&offset=0", "abc")

    assert words == "max_retry_count reached. Exiting\n"
    assert url == "connecting to postgresql://crm:***@h/db\n"
    assert query == "GET /v1/lead?api_key=***&offset=0\n"


def test_an_empty_secret_masks_nothing() -> None:
    assert variants("") == set()
    assert redact("nothing to mask", variants("")) == "nothing to mask"
