"""Serves the sandbox on a loopback socket: in a thread for tests and the demo, or `crm-sandbox`."""

from __future__ import annotations

import argparse
import logging
import os
import random
import socket
import threading
import time
from types import TracebackType

import uvicorn

from crm_sandbox.app import create_app
from crm_sandbox.bad_answers import quiet_resets
from crm_sandbox.data import DEFAULT_RECORDS_PER_RESOURCE, CrmStore
from crm_sandbox.dialects import DIALECTS
from crm_sandbox.faults import FaultPlan, FaultSettings

DEFAULT_SANDBOX_KEY = "sandbox-key"
DEFAULT_PORT = 8765


class SandboxServer:
    """A uvicorn server for the sandbox app on 127.0.0.1; port 0 picks a free port."""

    def __init__(
        self,
        store: CrmStore | None = None,
        faults: FaultPlan | None = None,
        api_key: str = DEFAULT_SANDBOX_KEY,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.store = store or CrmStore()
        self.faults = faults or FaultPlan()
        self.api_key = api_key
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.host, self.port = self._socket.getsockname()[:2]
        config = uvicorn.Config(
            create_app(self.store, self.faults, api_key),
            log_level="warning",
            lifespan="off",
            access_log=False,
        )
        self._server = uvicorn.Server(config)
        logging.getLogger("uvicorn.error").addFilter(quiet_resets)  # after uvicorn set it up
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def serve_forever(self) -> None:
        self._server.run(sockets=[self._socket])

    def churn_every(self, seconds: float, seed: int = 0) -> None:
        """Changes one record every `seconds` in a daemon thread, so sensors have news to see."""
        rng = random.Random(seed)

        def loop() -> None:
            while not self._server.should_exit:
                time.sleep(seconds)
                self.store.churn(rng)

        threading.Thread(target=loop, name="crm-sandbox-churn", daemon=True).start()

    def start(self, timeout_s: float = 10.0) -> SandboxServer:
        self._thread = threading.Thread(target=self.serve_forever, name="crm-sandbox", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"sandbox did not start on {self.base_url}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._socket.close()

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    """`crm-sandbox`: serve the sandbox CRM API until interrupted."""
    parser = argparse.ArgumentParser(prog="crm-sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument(
        "--api-key",
        default=os.environ.get("CRM_API_KEY", DEFAULT_SANDBOX_KEY),
        help="key clients must send as ?api_key= (default: $CRM_API_KEY, else sandbox-key)",
    )
    parser.add_argument("--records", type=int, default=DEFAULT_RECORDS_PER_RESOURCE)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--dialect",
        choices=DIALECTS,
        default="default",
        help="foreign: a CRM our schema was not written for (string ids and numbers, ...);"
        " edge: what real vendor payloads carry (uint64 and UUID ids, NULs, mixed timestamps, ...)",
    )
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--rate-limit", type=float, default=None, help="requests per second")
    parser.add_argument("--rate-burst", type=int, default=10)
    parser.add_argument("--fault-rate", type=float, default=0.0, help="share of transient 5xx/429")
    parser.add_argument("--max-page-size", type=int, default=100)
    parser.add_argument(
        "--churn-every", type=float, default=0.0, help="seconds between random changes (0: off)"
    )
    args = parser.parse_args(argv)
    settings = FaultSettings(
        latency_ms=args.latency_ms,
        rate_limit_per_s=args.rate_limit,
        rate_limit_burst=args.rate_burst,
        transient_fault_rate=args.fault_rate,
        max_page_size=args.max_page_size,
        seed=args.seed,
    )
    server = SandboxServer(
        store=CrmStore(args.records, seed=args.seed, dialect=args.dialect),
        faults=FaultPlan(settings),
        api_key=args.api_key,
        host=args.host,
        port=args.port,
    )
    print(
        f"crm-sandbox serving {args.records} {args.dialect} records per resource on"
        f" {server.base_url}",
        flush=True,
    )
    if args.churn_every > 0:
        server.churn_every(args.churn_every, seed=args.seed)
    server.serve_forever()


if __name__ == "__main__":
    main()
