"""The sandbox's HTTP contract, spoken to over a real loopback socket."""

import time

import pytest
import requests

from crm_assets_tests.conftest import TEST_KEY, SandboxFactory
from crm_sandbox import SandboxServer


def get(sandbox: SandboxServer, path: str, **params: object) -> requests.Response:
    return requests.get(
        f"{sandbox.base_url}{path}", params={"api_key": TEST_KEY, **params}, timeout=5
    )


def test_pages_carry_data_and_total(make_sandbox: SandboxFactory) -> None:
    sandbox = make_sandbox({"contact": 130})

    first, last = get(sandbox, "/v1/contact", limit=100), get(sandbox, "/v1/contact", offset=100)

    assert first.status_code == 200
    assert [len(first.json()["data"]), len(last.json()["data"])] == [100, 30]
    assert first.json()["total"] == last.json()["total"] == 130
    assert last.json()["data"][0] == sandbox.store.records("contact")[100]


def test_page_size_is_capped(make_sandbox: SandboxFactory) -> None:
    sandbox = make_sandbox({"lead": 300}, max_page_size=100)
    assert len(get(sandbox, "/v1/lead", limit=250).json()["data"]) == 100


@pytest.mark.parametrize(
    ("path", "params", "status"),
    [
        pytest.param("/v1/account", {"api_key": "nope"}, 401, id="bad-key"),
        pytest.param("/v1/account", {"api_key": ""}, 401, id="missing-key"),
        pytest.param("/v1/invoice", {}, 404, id="unknown-resource"),
        pytest.param("/v1/account", {"offset": -1}, 400, id="negative-offset"),
        pytest.param("/v1/account", {"limit": 0}, 400, id="zero-limit"),
        pytest.param("/v1/account", {"limit": "ten"}, 400, id="text-limit"),
    ],
)
def test_errors(sandbox: SandboxServer, path: str, params: dict, status: int) -> None:
    response = get(sandbox, path, **params)
    assert response.status_code == status
    assert "error" in response.json()
    assert TEST_KEY not in response.text


def test_injected_faults_come_in_order_with_retry_after(sandbox: SandboxServer) -> None:
    sandbox.faults.inject("account", [429, 502], offset=0, retry_after_s=3)

    answers = [get(sandbox, "/v1/account", offset=0) for _ in range(3)]

    assert [a.status_code for a in answers] == [429, 502, 200]
    assert answers[0].headers["Retry-After"] == "3"
    assert get(sandbox, "/v1/account", offset=100).status_code == 200


def test_rate_limit_answers_429_with_retry_after(make_sandbox: SandboxFactory) -> None:
    sandbox = make_sandbox(5, rate_limit_per_s=0.5, rate_limit_burst=2)

    statuses = [get(sandbox, "/v1/lead").status_code for _ in range(3)]
    limited = get(sandbox, "/v1/lead")

    assert statuses == [200, 200, 429]
    assert int(limited.headers["Retry-After"]) >= 1


def test_transient_fault_rate_is_seeded(make_sandbox: SandboxFactory) -> None:
    runs = []
    for _ in range(2):
        sandbox = make_sandbox(5, transient_fault_rate=0.5, seed=7)
        runs.append([get(sandbox, "/v1/lead").status_code for _ in range(20)])
    assert runs[0] == runs[1]
    assert {200} < set(runs[0]) <= {200, 429, 500, 502, 503, 504}


def test_latency_is_added(make_sandbox: SandboxFactory) -> None:
    sandbox = make_sandbox(5, latency_ms=150)
    started = time.monotonic()
    get(sandbox, "/v1/lead")
    assert time.monotonic() - started >= 0.15


def test_admin_endpoints_change_data(sandbox: SandboxServer) -> None:
    url, auth = f"{sandbox.base_url}/admin/account", {"api_key": TEST_KEY}

    created = requests.post(url, params=auth, json={"name": "Via HTTP"}, timeout=5)
    patched = requests.patch(f"{url}/1", params=auth, json={"status": "churned"}, timeout=5)
    deleted = requests.delete(f"{url}/2", params=auth, timeout=5)
    missing = requests.delete(f"{url}/2", params=auth, timeout=5)
    refused = requests.delete(f"{url}/3", params={"api_key": "nope"}, timeout=5)

    assert [created.status_code, patched.status_code, deleted.status_code] == [201, 200, 204]
    assert [missing.status_code, refused.status_code] == [404, 401]
    ids = [r["id"] for r in sandbox.store.records("account")]
    assert created.json()["id"] in ids
    assert 2 not in ids
    assert 3 in ids
    assert sandbox.store.records("account")[0]["status"] == "churned"


def test_request_log_never_holds_the_key(sandbox: SandboxServer) -> None:
    get(sandbox, "/v1/account")
    assert TEST_KEY not in repr(sandbox.faults.log)
    assert sandbox.faults.log[0].resource == "account"


def test_sort_newest_first_serves_the_latest_update(make_sandbox: SandboxFactory) -> None:
    sandbox = make_sandbox({"account": 50})
    sandbox.store.update("account", 9, {"name": "Touched"})

    newest = get(sandbox, "/v1/account", limit=1, sort="-updated_at").json()

    assert newest["data"][0]["id"] == 9
    assert newest["total"] == 50
    assert get(sandbox, "/v1/account", sort="name").status_code == 400
