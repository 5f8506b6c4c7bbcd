"""`dg dev` on loopback for the browser tests: started as `make dev` does, stopped whole."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from crm_assets_tests.conftest import free_port
from crm_assets_tests.support import start_group, stop_group
from crm_sandbox.runs import dg_command

STOP_S = 30  # it stops in about 5 s here; the margin is for a loaded CI machine


def _location_loaded(base_url: str) -> bool:
    query = (
        b'{"query": "{ workspaceOrError { ... on Workspace { locationEntries { loadStatus } } } }"}'
    )
    request = urllib.request.Request(
        f"{base_url}/graphql", data=query, headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            entries = json.load(response)["data"]["workspaceOrError"]["locationEntries"]
    except (OSError, KeyError, TypeError, ValueError):
        return False
    return bool(entries) and all(e["loadStatus"] == "LOADED" for e in entries)


@contextmanager
def dagster_dev(env: Mapping[str, str], cwd: Path, log: Path) -> Iterator[str]:
    """Webserver, daemon and code server of `dg dev`; yields the UI's URL once the code
    location has loaded, and stops the whole process group afterwards."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    with log.open("w") as output:
        process = start_group(
            dg_command("dev", "-h", "127.0.0.1", "-p", str(port)),
            cwd=cwd,
            env=dict(env),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while not _location_loaded(base_url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dagster dev did not come up; see {log}")
            time.sleep(0.5)
        yield base_url
    finally:
        stop_group(process, STOP_S)  # as `make dev`'s Ctrl-C or a supervisor stops it
