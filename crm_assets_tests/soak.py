"""`make soak`: many syncs against a flaky sandbox, every fifth killed with kill -9, each exact.

Between runs the data changes upstream (updates, inserts, deletions). Every run meets random
429s and 5xx, connections reset mid-body and latency, all within the retry budget; every fifth
run is first killed at a random point of a random phase (see sync/crash_child.py) and then run
again. After each completed run the warehouse must be exactly the API's snapshot, and the key
(raw or URL-encoded) must be nowhere: not in the run's output (logged at DEBUG, urllib3's
request lines included), the dlt pipeline directory or the warehouse file. Prints
`N/N exact, 0 leaks`, or what differed. Not part of `make test`: it takes minutes.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

from crm_assets.source.contract import crm_resource_names
from crm_assets.sync.redaction import variants
from crm_assets.warehouse.resource import WarehouseResource
from crm_assets_tests.conftest import TEST_KEY
from crm_assets_tests.sync.crash import SET_ASIDE, UNFIT_RECORD, differences, run_job
from crm_assets_tests.sync.crash_child import PHASES
from crm_sandbox import CrmStore, FaultPlan, FaultSettings, SandboxServer

PAGE = 100


def change_upstream(sandbox: SandboxServer, rng: random.Random) -> None:
    """A night's changes: some updates and inserts everywhere, a deletion or two.

    No opportunity is deleted: its id-less record keeps it from reconciling, and only a
    reconciled sync marks deletions (by design).
    """
    store = sandbox.store
    for _ in range(rng.randint(1, 5)):
        table = rng.choice(crm_resource_names())
        ids = [r["id"] for r in store.records(table) if "id" in r]
        store.update(table, rng.choice(ids), {"updated_by_soak": rng.randint(0, 10**6)})
    for _ in range(rng.randint(0, 3)):
        store.insert(rng.choice(crm_resource_names()), {})
    for _ in range(rng.randint(0, 2)):
        table = rng.choice([t for t in crm_resource_names() if t != "opportunity"])
        ids = [r["id"] for r in store.records(table) if "id" in r]
        store.delete(table, rng.choice(ids))


def make_flaky(sandbox: SandboxServer, rng: random.Random) -> str:
    """This run's faults, within the retry budget (4 attempts a request)."""
    settings = sandbox.faults.settings
    settings.transient_fault_rate = rng.uniform(0, 0.04)
    settings.latency_ms = rng.choice([0, 0, 5, 20])
    resets = 0
    for table in rng.sample(crm_resource_names(), k=rng.randint(0, 2)):
        pages = max(1, sandbox.store.total(table) // PAGE)
        sandbox.faults.serve_bad(table, PAGE * rng.randrange(pages), "reset_mid_body")
        resets += 1
    return (
        f"{settings.transient_fault_rate:.0%} 429/5xx, {resets} resets, "
        f"{settings.latency_ms:.0f} ms latency"
    )


def leaks(output: str, workdir: Path) -> list[str]:
    """Where a form of the key turned up: the run's output, any file next to the warehouse."""
    forms = [form.encode() for form in variants(TEST_KEY)]
    places = [("the run's output", output.encode())]
    places += [(str(p), p.read_bytes()) for p in workdir.rglob("*") if p.is_file()]
    return [where for where, content in places if any(form in content for form in forms)]


def soak(runs: int, seed: int, records: int) -> int:
    rng = random.Random(seed)
    os.environ["CRM_TEST_CHILD_DEBUG_LOGS"] = "1"  # urllib3's request lines would carry the key
    store = CrmStore(records, seed=seed)
    store.put_raw("opportunity", UNFIT_RECORD)
    faults = FaultPlan(FaultSettings(retry_after_s=0, seed=seed))
    exact = leaked = 0
    with tempfile.TemporaryDirectory() as tmp, SandboxServer(store, faults, TEST_KEY) as sandbox:
        warehouse = WarehouseResource(duckdb_path=str(Path(tmp) / "warehouse.duckdb"))
        for run in range(1, runs + 1):
            started = time.monotonic()
            change_upstream(sandbox, rng)
            flaky = make_flaky(sandbox, rng)
            killed, output = "", ""
            if run % 5 == 0:
                phase = rng.choice(PHASES)
                crashed = run_job(sandbox, warehouse, phase, rng.randrange(10**6))
                output += crashed.stdout + crashed.stderr
                killed = crashed.stdout.splitlines()[0] if crashed.stdout else phase
                if crashed.returncode != -9:
                    killed += f" (not killed: exit {crashed.returncode})"
                change_upstream(sandbox, rng)
            done = run_job(sandbox, warehouse)
            output += done.stdout + done.stderr
            problems = [f"the run failed: {done.stderr.strip()[-300:]}"] if done.returncode else []
            problems += differences(sandbox, warehouse, [SET_ASIDE])
            found = leaks(output, Path(tmp))
            exact += not problems
            leaked += bool(found)
            print(
                f"run {run}/{runs}: {'exact' if not problems else 'DIFFERS'}"
                f"{', LEAK in ' + ', '.join(found) if found else ''}; {flaky}"
                f"{'; ' + killed + ' first' if killed else ''}; {time.monotonic() - started:.1f} s",
                flush=True,
            )
            for problem in problems:
                print(f"    {problem}", flush=True)
    print(f"{exact}/{runs} exact, {leaked} leaks", flush=True)
    return 0 if exact == runs and leaked == 0 else 1


def main() -> None:
    parser = argparse.ArgumentParser(prog="make soak", description=__doc__)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--records", type=int, default=500, help="per resource, at the start")
    args = parser.parse_args()
    sys.exit(soak(args.runs, args.seed, args.records))


if __name__ == "__main__":
    main()
