"""`crm-sandbox`, the console script `make dev` starts."""

import subprocess
import time

import requests

from crm_assets_tests.conftest import free_port
from crm_sandbox import SandboxServer
from crm_sandbox.runs import venv_script


def test_console_script_serves_the_api_until_stopped() -> None:
    port = free_port()
    command = [
        venv_script("crm-sandbox"),
        "--port",
        str(port),
        "--records",
        "12",
        "--api-key",
        "cli-key",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}/v1/opportunity"
        deadline, response = time.monotonic() + 20, None
        while response is None and time.monotonic() < deadline:
            try:
                response = requests.get(url, params={"api_key": "cli-key"}, timeout=1)
            except requests.ConnectionError:
                time.sleep(0.1)
        assert response is not None
        assert response.json()["total"] == 12
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_churn_keeps_changing_data_in_the_background(sandbox: SandboxServer) -> None:
    before = {n: sandbox.store.records(n) for n in sandbox.store.resources}
    sandbox.churn_every(0.02, seed=1)

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        now = {n: sandbox.store.records(n) for n in sandbox.store.resources}
        if sum(a != b for n in now for a, b in zip(now[n], before[n], strict=False)) >= 3:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the sandbox did not change by itself")
