"""Helpers several test modules share: what a failed run said, what the sandbox was asked, pages
built by hand, the account summary computed in Python, and where a CLI run may have stored a
secret."""

import contextlib
import io
import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import dagster as dg
import pytest
from requests import Request

from crm_assets.source.response import CrmResponse
from crm_assets.warehouse.resource import WarehouseResource
from crm_assets_tests.conftest import TEST_KEY
from crm_sandbox import CrmStore, SandboxServer

FAST = {"backoff_factor": 0.05}  # waits 0.05 s, 0.1 s, 0.2 s


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    """The messages of the step's error and everything chained to it."""
    (failure,) = result.get_step_failure_events()
    error, messages = failure.step_failure_data.error, []
    while error is not None:
        messages.append(error.message)
        error = error.cause or error.context
    return "\n".join(messages)


def assert_key_nowhere(result: dg.ExecuteInProcessResult, caplog: pytest.LogCaptureFixture) -> None:
    assert all(TEST_KEY not in repr(event) for event in result.all_events)
    assert TEST_KEY not in caplog.text


def statuses_at(sandbox: SandboxServer, resource: str, offset: int) -> list[int]:
    return [r.status for r in sandbox.faults.requests_for(resource) if r.offset == offset]


def crm_response(
    body: bytes,
    url: str = "http://127.0.0.1:1/v1/lead?offset=300&api_key=k",
    content_type: str = "application/json",
) -> CrmResponse:
    """A `CrmResponse` holding `body`, as the adapter builds one, answering a GET of `url`."""
    response = CrmResponse()
    response.status_code = 200
    response.headers["content-type"] = content_type
    response.raw = io.BytesIO(body)
    response.request = Request("GET", url).prepare()
    response.url = url
    return response


def recorded_waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """From now on, the waits asked of `time.sleep` (dlt's retry waits through it) are recorded
    and not waited. Call it once the sandbox runs: its start-up polls with `time.sleep`."""
    waits: list[float] = []
    monkeypatch.setattr(time, "sleep", waits.append)
    return waits


def offsets(sandbox: Any, resource: str) -> list[int]:
    """Offsets requested of `resource`, sorted: pages after the first are fetched concurrently."""
    return sorted(r.offset for r in sandbox.faults.requests_for(resource) if r.offset is not None)


def expected_summary(store: CrmStore) -> dict[int, tuple]:
    accounts = {a["id"]: a for a in store.records("account")}
    contacts = Counter(c["account_id"] for c in store.records("contact"))
    open_count: Counter[int] = Counter()
    open_amount: dict[int, Decimal] = defaultdict(Decimal)
    other: Counter[int] = Counter()
    for deal in store.records("opportunity"):
        account = accounts.get(deal["customer_id"])
        if account is None or deal["is_closed"]:
            continue
        open_count[account["id"]] += 1
        if deal["currency"] == account["currency"]:
            open_amount[account["id"]] += Decimal(str(deal["amount"]))
        else:
            other[account["id"]] += 1
    return {
        i: (a["name"], contacts[i], open_count[i], open_amount[i], other[i])
        for i, a in accounts.items()
    }


# Dagster's servers map SIGTERM to SIGINT's handler: started with SIGINT ignored, as a shell
# leaves it for a background job (a CI runner may start the tests so), they ignore SIGTERM too.
_DEFAULT_SIGINT = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL);"
    " os.execvp(sys.argv[1], sys.argv[1:])"
)


def start_group(command: list[str], **popen: Any) -> subprocess.Popen:
    """`command` as the leader of a new process group, for `stop_group`, with SIGINT at its
    default whatever this process inherited, so that the servers it starts stop on SIGTERM."""
    return subprocess.Popen(
        [sys.executable, "-c", _DEFAULT_SIGINT, *command], start_new_session=True, **popen
    )


def stop_group(process: subprocess.Popen, grace_s: float = 30) -> None:
    """SIGTERMs the process group `process` leads (see `start_group`), as a supervisor stops it,
    then SIGKILLs what is left after `grace_s`."""
    os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace_s)
    with contextlib.suppress(ProcessLookupError):  # its children may outlive it
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


# Dagster's documented way to see HTTP traffic, appended to a CLI run's dagster.yaml: urllib3 and
# friends captured at DEBUG into the event log and compute logs. Every request line then carries
# the key in its query.
DEBUG_EVERYWHERE = """
python_logs:
  python_log_level: DEBUG
  managed_python_loggers: [root, urllib3, requests, dlt, crm_assets]
"""
AWKWARD_KEY = "k3y/with+chars=and spaces"  # raw, %-encoded and +-encoded all differ


def secret_forms(key: str, warehouse: WarehouseResource) -> set[str]:
    """The key as a log line may carry it (raw, %-encoded, +-encoded) and the warehouse's own."""
    return {key, quote(key), quote_plus(key), *warehouse.secrets()}


def files_containing(where: Path, text: str) -> list[Path]:
    """Files under `where` (or `where` itself) that contain `text`."""
    files = [where] if where.is_file() else [p for p in where.rglob("*") if p.is_file()]
    return [p for p in files if text.encode() in p.read_bytes()]
