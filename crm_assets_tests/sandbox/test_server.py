"""`crm-sandbox`, the console script `make dev` starts."""

import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

CRM_SANDBOX = str(Path(sys.executable).parent / "crm-sandbox")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_console_script_serves_the_api_until_stopped() -> None:
    port = _free_port()
    command = [CRM_SANDBOX, "--port", str(port), "--records", "12", "--api-key", "cli-key"]
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
