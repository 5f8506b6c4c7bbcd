"""`make demo`: the sandbox CRM, one real `dg launch --job crm_sync_job`, a summary.

With `opportunity` in CRM_HISTORY, deals then move on a stage and a second run records it; the
summary ends with their stage history."""

import os
import subprocess
import sys
from pathlib import Path

from crm_assets.defs.crm.jobs import CRM_SYNC_JOB
from crm_assets.settings import OrchestrationSettings
from crm_assets.source.contract import crm_resource_names
from crm_assets.source.schema import DELETED_AT
from crm_assets.warehouse.models import ACCOUNT_SUMMARY_TABLE, STAGE_DURATIONS_TABLE
from crm_assets.warehouse.resource import WarehouseResource
from crm_sandbox.data import CrmStore
from crm_sandbox.runs import cli_env, dg_command
from crm_sandbox.server import DEFAULT_SANDBOX_KEY, SandboxServer

_INFO_LOGS = Path(__file__).with_name("demo_run_config.yaml")
_TOP_ACCOUNTS = f"""
select account_name, currency, contact_count, open_opportunity_count, open_amount
from {ACCOUNT_SUMMARY_TABLE} order by open_amount desc, account_id limit 3
"""


_MOVED_DEALS = 5
_STAGE_CHANGES = f"""
select opportunity_id, stint_number, stage, entered_at, left_at from {STAGE_DURATIONS_TABLE}
where opportunity_id in (select opportunity_id from {STAGE_DURATIONS_TABLE} where stint_number > 1)
order by opportunity_id, stint_number limit 10
"""


def main() -> int:
    warehouse = WarehouseResource.from_env(os.environ)  # CRM_DESTINATION=postgres works too
    history = "opportunity" in OrchestrationSettings.from_env(os.environ).history
    with SandboxServer(CrmStore(), api_key=DEFAULT_SANDBOX_KEY) as sandbox:
        where = warehouse.path if warehouse.is_duckdb else warehouse.table_name("*")
        print(f"sandbox CRM API on {sandbox.base_url}; warehouse {where}", flush=True)
        env = cli_env(
            base_url=sandbox.base_url,
            api_key=DEFAULT_SANDBOX_KEY,
            duckdb_path=warehouse.path,
            keep_crm_settings=True,
        )
        # INFO, not Dagster's DEBUG stream: the sync's progress lines, warnings and failures.
        command = dg_command("launch", "--job", CRM_SYNC_JOB, "-c", str(_INFO_LOGS))
        subprocess.run(command, env=env, check=True)
        if history:  # deals move on, and a second sync records their new stages
            moved = sandbox.store.advance_stages(_MOVED_DEALS)
            print(f"\nmoved {moved} deals to their next stage; syncing again", flush=True)
            subprocess.run(command, env=env, check=True)
        expected = {name: sandbox.store.total(name) for name in crm_resource_names()}

    with warehouse.sql_client() as client:
        print(f"\n{'table':<24}{'rows':>8}{'in CRM':>8}")
        mismatched = 0
        for name, total in expected.items():
            table = f"{warehouse.dataset_name}.{name}"
            query = (
                f"select count(distinct id) from {client.make_qualified_table_name(name)}"
                f" where {DELETED_AT} is null"
            )
            rows = client.execute_sql(query)[0][0]
            mismatched += rows != total
            print(f"{table:<24}{rows:>8}{total:>8}{'' if rows == total else '  MISMATCH'}")
        print(f"\n{ACCOUNT_SUMMARY_TABLE}, top accounts by open amount:")
        for name, currency, contacts, deals, amount in client.execute_sql(_TOP_ACCOUNTS):
            counts = f"{contacts:>3} contacts{deals:>3} open deals"
            print(f"  {name:<30}{counts}{amount:>14,.2f} {currency}")
        if history:
            print(f"\n{STAGE_DURATIONS_TABLE}, deals that changed stage:")
            for deal, stint, stage, entered, left in client.execute_sql(_STAGE_CHANGES):
                until = f"{left:%H:%M:%S}" if left else "now"
                print(f"  deal {deal:<6} {stint}. {stage:<14} {entered:%H:%M:%S} -> {until}")
    return 1 if mismatched else 0


if __name__ == "__main__":
    sys.exit(main())
