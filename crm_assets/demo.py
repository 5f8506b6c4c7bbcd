"""`make demo`: the sandbox CRM, one real `dagster job execute` of `crm_sync_job`, a summary."""

import os
import subprocess
import sys
from pathlib import Path

import duckdb

from crm_assets.contract import crm_resource_names
from crm_assets.jobs import CRM_SYNC_JOB
from crm_assets.resources import ANALYTICS_SCHEMA, DEFAULT_DATASET, DEFAULT_DUCKDB_PATH
from crm_assets.sandbox import DEFAULT_SANDBOX_KEY, CrmStore, SandboxServer
from crm_assets.schema import DELETED_AT

_TOP_ACCOUNTS = f"""
select account_name, currency, contact_count, open_opportunity_count, open_amount
from {ANALYTICS_SCHEMA}.account_summary order by open_amount desc, account_id limit 3
"""


def main() -> int:
    warehouse = Path(os.environ.get("CRM_DUCKDB_PATH", DEFAULT_DUCKDB_PATH))
    with SandboxServer(CrmStore(), api_key=DEFAULT_SANDBOX_KEY) as sandbox:
        print(f"sandbox CRM API on {sandbox.base_url}; warehouse {warehouse}", flush=True)
        env = {
            **os.environ,
            "CRM_API_BASE_URL": sandbox.base_url,
            "CRM_API_KEY": DEFAULT_SANDBOX_KEY,
            "CRM_DUCKDB_PATH": str(warehouse),
        }
        dagster = str(Path(sys.executable).parent / "dagster")
        command = [dagster, "job", "execute", "--job", CRM_SYNC_JOB]
        subprocess.run([*command, "-m", "crm_assets.definitions"], env=env, check=True)
        expected = {name: sandbox.store.total(name) for name in crm_resource_names()}

    with duckdb.connect(str(warehouse), read_only=True) as connection:
        print(f"\n{'table':<24}{'rows':>8}{'in CRM':>8}")
        mismatched = 0
        for name, total in expected.items():
            table = f"{DEFAULT_DATASET}.{name}"
            query = f"select count(distinct id) from {table} where {DELETED_AT} is null"
            rows = connection.execute(query).fetchone()[0]
            mismatched += rows != total
            print(f"{table:<24}{rows:>8}{total:>8}{'' if rows == total else '  MISMATCH'}")
        print(f"\n{ANALYTICS_SCHEMA}.account_summary, top accounts by open amount:")
        top = connection.execute(_TOP_ACCOUNTS).fetchall()
        for name, currency, contacts, deals, amount in top:
            counts = f"{contacts:>3} contacts{deals:>3} open deals"
            print(f"  {name:<30}{counts}{amount:>14,.2f} {currency}")
    return 1 if mismatched else 0


if __name__ == "__main__":
    sys.exit(main())
