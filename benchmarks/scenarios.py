"""`make bench` scenarios against the sandbox in a separate process: the project, side by side with
the plain-fetch limit and the seed's config on plain dlt defaults.

S1 many records, no latency; S2 latency per request; S3 the same under a server rate limit;
S4 an incremental sync after 1% of the records changed, in the issue's example (1M records,
100 ms a request: a run's fixed ~3 s of start-up and load would dominate any smaller sync);
S5 200k records of the sandbox's edge dialect (2-4 kB each, ids past 64 bits, long texts) with
default settings: a load that must not run out of memory on records unlike the sandbox's own.
S8 history mode's cost: full and 1%-changed incremental syncs of 100k records, with
`opportunity` and `account` in history mode and without.
S6 a run's fixed cost: `dg launch --assets group:crm` against a CRM with no records, timed from
the command's start to its exit, as a user waits for it. S7 61k records at 50 ms a request
through that same command, against the seed's config on plain dlt.
Each variant runs in a child process, so its peak RSS is its own. Writes a markdown table (and a
PNG chart when matplotlib is installed) and says, per target, met or not. Numbers, not a test.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

KEY = "bench-key"
RESOURCES = ("account", "contact", "lead", "opportunity")
CONCURRENCY = 8
RESULTS = Path(__file__).parent / "results"


@dataclass(frozen=True)
class Scenario:
    name: str
    records_per_resource: int
    latency_ms: float = 0.0
    server_rate_limit: float | None = None
    incremental: bool = False
    dialect: str = "default"
    variants: tuple[str, ...] = ("fetch", "fetch_concurrent", "seed_defaults", "project")
    targets: dict[str, str] = field(default_factory=dict)


SCENARIOS = {
    # The seed on dlt defaults is left out at 1M: it peaked at 4.1 GB for 100k records.
    "S1": Scenario(
        "S1",
        250_000,
        variants=("fetch", "fetch_concurrent", "project"),
        targets={"time": "project <= 3x fetch", "rss": "<= 400 MB, flat from 100k"},
    ),
    "S1@100k": Scenario("S1@100k", 25_000, variants=("project",)),
    "S2": Scenario("S2", 25_000, latency_ms=100, targets={"time": "<= 1.2x pages*latency/8"}),
    "S3": Scenario(
        "S3",
        25_000,
        latency_ms=100,
        server_rate_limit=20,
        targets={"time": "<= 1.15x pages/rate", "429": "< 1% of requests"},
    ),
    # The issue's own example: 1M records, 100 ms a request, 1% changed.
    "S4": Scenario(
        "S4",
        250_000,
        latency_ms=100,
        incremental=True,
        variants=("project_full", "project_incremental"),
        targets={"time": "incremental <= 5% of full"},
    ),
    "S5": Scenario(
        "S5",
        50_000,
        dialect="edge",
        variants=("project",),
        targets={"load": "succeeds with default settings; peak RSS reported"},
    ),
    "S8": Scenario(
        "S8",
        25_000,
        incremental=True,
        variants=("project_full", "history_full", "project_incremental", "history_incremental"),
        targets={"cost": "history's extra time, reported"},
    ),
    "S6": Scenario("S6", 0, variants=("project_cli",), targets={"time": "<= 8 s wall"}),
    "S7": Scenario(
        "S7",
        15_250,
        latency_ms=50,
        variants=("seed_defaults", "project_cli"),
        targets={"time": "project_cli <= 0.25x seed_defaults"},
    ),
}


# --- the variants, each run in a child process -------------------------------------------------


def _pages(
    session: requests.Session, base_url: str, name: str, offset: int, pace: Any = None
) -> int:
    if pace is not None:
        pace.acquire()
    response = session.get(
        f"{base_url}/v1/{name}", params={"offset": offset, "limit": 100, "api_key": KEY}
    )
    response.raise_for_status()
    body = response.json()  # parse, store nothing
    return int(body["total"])


def fetch(base_url: str, concurrent: bool, rate_limit: float | None) -> None:
    """The limit: a keep-alive client that pages and parses, sequentially or concurrently.

    Under a server rate limit it keeps to that rate, as the limit then is pages / rate.
    """
    from crm_assets.source.ratelimit import RateLimiter

    pace = RateLimiter(rate_limit) if rate_limit else None
    with requests.Session() as session:
        adapter = requests.adapters.HTTPAdapter(pool_maxsize=CONCURRENCY)
        session.mount("http://", adapter)
        for name in RESOURCES:
            total = _pages(session, base_url, name, 0, pace)
            offsets = range(100, total, 100)
            if concurrent:
                with ThreadPoolExecutor(CONCURRENCY) as pool:
                    list(pool.map(lambda o, n=name: _pages(session, base_url, n, o, pace), offsets))
            else:
                for offset in offsets:
                    _pages(session, base_url, name, offset, pace)


def seed_defaults(base_url: str, workdir: str) -> None:
    """The seed's rest_api_source config, run by plain dlt with its defaults."""
    import dlt
    from dlt.sources.rest_api import rest_api_source

    config: Any = {
        "client": {
            "base_url": base_url,
            "auth": {"type": "api_key", "name": "api_key", "api_key": KEY, "location": "query"},
        },
        "resource_defaults": {"primary_key": "id", "write_disposition": "merge"},
        "resources": [
            {
                "name": name,
                "endpoint": {
                    "path": f"/v1/{name}",
                    "data_selector": "data",
                    "paginator": {"type": "offset", "limit": 100, "total_path": "total"},
                },
            }
            for name in RESOURCES
        ],
    }
    pipeline = dlt.pipeline(
        pipeline_name="seed",
        destination=dlt.destinations.duckdb(f"{workdir}/seed.duckdb"),
        dataset_name="crm",
        pipelines_dir=f"{workdir}/pipelines",
    )
    pipeline.run(rest_api_source(config)).raise_on_failed_jobs()


def project(
    base_url: str,
    workdir: str,
    mode: str,
    rate_limit: float | None,
    history: tuple[str, ...] = (),
) -> None:
    """This project through Dagster, as a run of the sync asset (`history`: in history mode)."""
    import dagster as dg
    from dagster_dlt import DagsterDltResource

    from crm_assets.defs.crm.assets import build_crm_assets
    from crm_assets.defs.crm.resources import CrmApiResource
    from crm_assets.warehouse.resource import WarehouseResource

    api = CrmApiResource(
        base_url=base_url,
        api_key=KEY,
        max_concurrent_requests=CONCURRENCY,
        rate_limit_per_s=rate_limit,
        incremental_param="updated_since",
        progress_every_s=60,
    )
    file = f"{workdir}/wh_history.duckdb" if history else f"{workdir}/wh.duckdb"
    result = dg.materialize(
        [build_crm_assets(history=history)],
        resources={
            "dlt": DagsterDltResource(),
            "crm_api": api,
            "warehouse": WarehouseResource(duckdb_path=file),
        },
        run_config={"ops": {"crm_sync": {"config": {"mode": mode}}}},
    )
    assert result.success


def project_cli(base_url: str, workdir: str) -> None:
    """This project as a user runs it: `dg launch --assets group:crm`, a process of its own with
    the `make dev` instance (.dagster/dagster.yaml) in `workdir`."""
    from crm_sandbox.runs import cli_env, dg_command, prepare_dagster_home

    root = Path(__file__).parents[1]
    home = prepare_dagster_home(Path(workdir, "dagster_home"), root / ".dagster" / "dagster.yaml")
    env = cli_env(
        dagster_home=home, base_url=base_url, api_key=KEY, duckdb_path=f"{workdir}/cli.duckdb"
    )
    done = subprocess.run(
        dg_command("launch", "--assets", "group:crm"), cwd=root, env=env, capture_output=True
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr.decode(errors="replace")[-500:])


_HISTORY = ("opportunity", "account")


def child(variant: str, base_url: str, workdir: str, rate_limit: float | None) -> dict[str, float]:
    runs: dict[str, Callable[[], None]] = {
        "fetch": lambda: fetch(base_url, False, rate_limit),
        "fetch_concurrent": lambda: fetch(base_url, True, rate_limit),
        "seed_defaults": lambda: seed_defaults(base_url, workdir),
        "project": lambda: project(base_url, workdir, "full", rate_limit),
        "project_full": lambda: project(base_url, workdir, "full", rate_limit),
        "project_incremental": lambda: project(base_url, workdir, "incremental", rate_limit),
        "project_cli": lambda: project_cli(base_url, workdir),
        "history_full": lambda: project(base_url, workdir, "full", rate_limit, _HISTORY),
        "history_incremental": lambda: project(
            base_url, workdir, "incremental", rate_limit, _HISTORY
        ),
    }
    started = time.perf_counter()
    runs[variant]()
    seconds = time.perf_counter() - started
    who = resource.RUSAGE_CHILDREN if variant == "project_cli" else resource.RUSAGE_SELF
    return {"seconds": seconds, "peak_rss_mb": resource.getrusage(who).ru_maxrss / 1024}


# --- the driver ---------------------------------------------------------------------------------


class Sandbox:
    """`crm-sandbox` in its own process on a free loopback port."""

    def __init__(self, scenario: Scenario) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        command = [str(Path(sys.executable).parent / "crm-sandbox"), "--port", str(self.port)]
        command += ["--api-key", KEY, "--records", str(scenario.records_per_resource)]
        command += ["--latency-ms", str(scenario.latency_ms), "--dialect", scenario.dialect]
        if scenario.server_rate_limit:  # a token bucket that allows bursts of 10, as APIs do
            command += ["--rate-limit", str(scenario.server_rate_limit), "--rate-burst", "10"]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 600  # generating a million records takes a while
        while time.monotonic() < deadline:
            try:
                requests.get(f"{self.base_url}/admin/stats", params={"api_key": KEY}, timeout=1)
                return
            except requests.ConnectionError:
                time.sleep(0.2)
        raise RuntimeError("the sandbox did not start")

    def stats(self) -> dict[str, int]:
        response = requests.get(f"{self.base_url}/admin/stats", params={"api_key": KEY})
        return {status: int(n) for status, n in response.json().items()}

    def change(self, share: float, scenario: Scenario) -> int:
        """Updates `share` of each resource's records through the admin API."""
        step = max(1, int(1 / share))
        changed = 0
        with requests.Session() as session:
            for name in RESOURCES:
                for record_id in range(1, scenario.records_per_resource + 1, step):
                    session.patch(
                        f"{self.base_url}/admin/{name}/{record_id}",
                        params={"api_key": KEY},
                        json={"title": "bench"},
                    )
                    changed += 1
        return changed

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def _run_variant(
    variant: str, sandbox: Sandbox, workdir: str, rate_limit: float | None, timeout_s: float
) -> dict[str, Any]:
    before = sandbox.stats()
    command = [sys.executable, str(Path(__file__)), "--child", variant, sandbox.base_url, workdir]
    command += [str(rate_limit or 0)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"variant": variant, "error": f"over {timeout_s:.0f} s"}
    if done.returncode != 0:
        return {"variant": variant, "error": done.stderr.strip().splitlines()[-1][:200]}
    after = sandbox.stats()
    requests_sent = sum(after.values()) - sum(before.values())
    throttled = after.get("429", 0) - before.get("429", 0)
    return {
        "variant": variant,
        **json.loads(done.stdout.strip().splitlines()[-1]),
        "requests": requests_sent,
        "429s": throttled,
    }


def run_scenario(scenario: Scenario, timeout_s: float) -> list[dict[str, Any]]:
    sandbox = Sandbox(scenario)
    rows = []
    try:
        with tempfile.TemporaryDirectory() as workdir:
            changed = False
            for variant in scenario.variants:
                if variant.endswith("_incremental") and not changed:  # once, before the first
                    sandbox.change(0.01, scenario)
                    changed = True
                rate = scenario.server_rate_limit if not variant.startswith("seed") else None
                row = _run_variant(variant, sandbox, workdir, rate, timeout_s)
                row["records"] = scenario.records_per_resource * len(RESOURCES)
                if "seconds" in row:
                    row["records_per_s"] = row["records"] / row["seconds"]
                print(f"{scenario.name} {variant}: {row}", flush=True)
                rows.append(row)
    finally:
        sandbox.stop()
    return rows


def verdicts(
    scenario: Scenario, rows: list[dict[str, Any]], small_rss: dict[str, float]
) -> list[str]:
    """Each target of the scenario, with the figures and met or not (`small_rss`: peak RSS per
    variant at 100k, for S1's flatness)."""
    by = {row["variant"]: row for row in rows if "seconds" in row}
    pages = scenario.records_per_resource * len(RESOURCES) / 100
    out = []

    def verdict(label: str, ok: bool, detail: str) -> None:
        out.append(f"{scenario.name} {label}: {detail} -> {'met' if ok else 'NOT met'}")

    if scenario.name == "S1" and {"project", "fetch"} <= set(by):
        ratio = by["project"]["seconds"] / by["fetch"]["seconds"]
        verdict("time", ratio <= 3, f"project/fetch {ratio:.2f}x (target <= 3x)")
    if scenario.name == "S1" and "project" in by:
        rss = by["project"]["peak_rss_mb"]
        verdict("memory", rss <= 400, f"peak RSS {rss:.0f} MB (target <= 400 MB)")
        if small := small_rss.get("project"):
            growth = rss / small - 1
            verdict(
                "flat",
                growth <= 0.10,
                f"{small:.0f} MB at 100k -> {rss:.0f} MB at 1M, {growth:+.0%} (target <= +10%)",
            )
    if scenario.name == "S2" and "project" in by:
        bound = 1.2 * pages * scenario.latency_ms / 1000 / CONCURRENCY
        seconds = by["project"]["seconds"]
        verdict("time", seconds <= bound, f"{seconds:.1f} s (target <= {bound:.1f} s)")
        if "seed_defaults" in by:
            speedup = by["seed_defaults"]["seconds"] / seconds
            verdict("vs seed", speedup >= 8, f"{speedup:.1f}x faster than the seed (target >= 8x)")
    if scenario.name == "S3" and "project" in by:
        bound = 1.15 * pages / (scenario.server_rate_limit or 1)
        seconds, row = by["project"]["seconds"], by["project"]
        verdict("time", seconds <= bound, f"{seconds:.1f} s (target <= {bound:.1f} s)")
        share = row["429s"] / max(1, row["requests"])
        verdict("429s", share < 0.01, f"{share:.1%} answered 429 (target < 1%)")
    if scenario.name == "S4" and {"project_full", "project_incremental"} <= set(by):
        full, incremental = by["project_full"], by["project_incremental"]
        share = incremental["seconds"] / full["seconds"]
        verdict("time", share <= 0.05, f"incremental {share:.1%} of a full sync (target <= 5%)")
        share = incremental["requests"] / max(1, full["requests"])
        verdict("requests", share <= 0.05, f"{share:.1%} of the requests (target <= 5%)")
    if scenario.name == "S5":
        row = next((r for r in rows if r["variant"] == "project"), {})
        ok = "seconds" in row
        detail = (
            f"{row['seconds']:.1f} s, peak RSS {row['peak_rss_mb']:.0f} MB"
            if ok
            else row.get("error", "not run")
        )
        verdict("load", ok, f"{detail} (target: succeeds with default settings)")
    if scenario.name == "S8" and {"project_full", "history_full"} <= set(by):
        for mode in ("full", "incremental"):
            if {f"project_{mode}", f"history_{mode}"} <= set(by):
                plain, kept = by[f"project_{mode}"]["seconds"], by[f"history_{mode}"]["seconds"]
                verdict(mode, True, f"{kept:.1f} s with history, {plain:.1f} s without")
    if scenario.name == "S6" and "project_cli" in by:
        seconds = by["project_cli"]["seconds"]
        verdict("time", seconds <= 8, f"{seconds:.1f} s wall (target <= 8 s)")
    if scenario.name == "S7" and {"seed_defaults", "project_cli"} <= set(by):
        share = by["project_cli"]["seconds"] / by["seed_defaults"]["seconds"]
        verdict("time", share <= 0.25, f"{share:.2f}x the seed's time (target <= 0.25x)")
    return out


def markdown(results: dict[str, list[dict[str, Any]]]) -> str:
    lines = [
        "| scenario | variant | records | wall s | records/s | peak RSS MB | requests | 429s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, rows in results.items():
        for row in rows:
            if "error" in row:
                lines.append(
                    f"| {name} | {row['variant']} | {row['records']:,} | {row['error']} |||||"
                )
                continue
            lines.append(
                f"| {name} | {row['variant']} | {row['records']:,} | {row['seconds']:.1f}"
                f" | {row['records_per_s']:,.0f} | {row['peak_rss_mb']:.0f} | {row['requests']:,}"
                f" | {row['429s']} |"
            )
    return "\n".join(lines) + "\n"


def chart(results: dict[str, list[dict[str, Any]]], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    figure, axes = plt.subplots(1, len(results), figsize=(4 * len(results), 4))
    for axis, (name, rows) in zip(
        list(getattr(axes, "flat", [axes])), results.items(), strict=False
    ):
        done = [row for row in rows if "seconds" in row]
        axis.bar([row["variant"] for row in done], [row["seconds"] for row in done])
        axis.set_title(name)
        axis.set_ylabel("wall seconds")
        axis.tick_params(axis="x", rotation=45)
    figure.tight_layout()
    figure.savefig(path)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scenarios", default="S1@100k,S1,S2,S3,S4,S5,S6,S7,S8")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every record count")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per variant")
    parser.add_argument("--variants", default="", help="only these, e.g. fetch,project")
    parser.add_argument("--child", nargs=4, metavar=("VARIANT", "URL", "WORKDIR", "RATE"))
    args = parser.parse_args()
    if args.child:
        variant, url, workdir, rate = args.child
        print(json.dumps(child(variant, url, workdir, float(rate) or None)))
        return
    results, lines = {}, []
    for name in args.scenarios.split(","):
        base = SCENARIOS[name]
        wanted = set(args.variants.split(",")) if args.variants else set(base.variants)
        variants = tuple(v for v in base.variants if v in wanted)
        size = int(base.records_per_resource * args.scale)
        scenario = Scenario(**{**base.__dict__, "records_per_resource": size, "variants": variants})
        results[name] = run_scenario(scenario, args.timeout)
        small = {
            r["variant"]: r["peak_rss_mb"] for r in results.get("S1@100k", []) if "seconds" in r
        }
        lines += verdicts(scenario, results[name], small)
    RESULTS.mkdir(exist_ok=True)
    machine = f"{platform.platform()}, {platform.machine()}, Python {platform.python_version()}"
    table = markdown(results)
    (RESULTS / "latest.md").write_text(
        f"Machine: {machine}; scale {args.scale}\n\n{table}\n"
        + "\n".join(f"- {v}" for v in lines)
        + "\n"
    )
    print(table)
    print("\n".join(lines))
    if chart(results, RESULTS / "latest.png"):
        print(f"chart: {RESULTS / 'latest.png'}")


if __name__ == "__main__":
    main()
