"""The analytics automation: the model rebuilds after a table it reads syncs, and only then."""

import dagster as dg
from dagster._core.definitions.asset_daemon_cursor import AssetDaemonCursor

from crm_assets.definitions import defs
from crm_assets.defs.analytics.assets import (
    ACCOUNT_SUMMARY,
    MODEL_AUTOMATION,
    build_account_summary_asset,
)
from crm_assets.defs.analytics.sensors import build_analytics_automation_sensor
from crm_assets.defs.crm.translator import asset_key


def test_the_model_rebuilds_after_a_parent_syncs_and_only_then() -> None:
    assets = defs()
    instance = dg.DagsterInstance.ephemeral()

    def synced(*names: str, reconciled: bool = True) -> None:
        for name in names:
            instance.report_runless_asset_event(dg.AssetMaterialization(asset_key(name)))
            instance.report_runless_asset_event(
                dg.AssetCheckEvaluation(
                    asset_key=asset_key(name),
                    check_name="reconciled_with_api",
                    passed=reconciled,
                    severity=dg.AssetCheckSeverity.ERROR,
                    blocking=True,
                )
            )

    def tick(cursor: AssetDaemonCursor | None) -> tuple[int, AssetDaemonCursor]:
        result = dg.evaluate_automation_conditions(assets, instance, cursor=cursor)
        return result.get_num_requested(ACCOUNT_SUMMARY), result.cursor

    requested, cursor = tick(None)
    assert requested == 0  # the first evaluation only takes stock
    synced("account", "contact", "lead", "opportunity")
    requested, cursor = tick(cursor)
    assert requested == 1
    instance.report_runless_asset_event(dg.AssetMaterialization(ACCOUNT_SUMMARY))
    assert tick(cursor)[0] == 0
    synced("lead")  # not read by the model
    requested, cursor = tick(cursor)
    assert requested == 0
    synced("opportunity", reconciled=False)  # a table short of the API: nothing built on it
    requested, cursor = tick(cursor)
    assert requested == 0
    synced("opportunity")
    assert tick(cursor)[0] == 1


def test_a_table_synced_after_the_model_within_one_tick_still_rebuilds_it() -> None:
    """The change sensor's run (table and model), then a manual sync of the table, before the
    automation's next tick: the model is behind its table and rebuilds (eager() skipped it);
    likewise for a sync between the model's request and the next tick."""

    @dg.asset(key=asset_key("account"))
    def account() -> None: ...

    @dg.asset(key=ACCOUNT_SUMMARY, deps=[account], automation_condition=MODEL_AUTOMATION)
    def summary() -> None: ...

    instance = dg.DagsterInstance.ephemeral()
    assets = [account, summary]

    def tick(cursor: AssetDaemonCursor | None) -> tuple[int, AssetDaemonCursor]:
        result = dg.evaluate_automation_conditions(assets, instance, cursor=cursor)
        return result.get_num_requested(ACCOUNT_SUMMARY), result.cursor

    job = dg.Definitions(assets=assets).resolve_implicit_global_asset_job_def()

    def run(*targets: dg.AssetsDefinition) -> None:  # with its selection, as a job's run has
        keys = [target.key for target in targets]
        assert job.execute_in_process(instance=instance, asset_selection=keys).success

    _, cursor = tick(None)
    run(account, summary)
    requested, cursor = tick(cursor)
    assert requested == 0  # the model was built in the run that synced its table
    run(account, summary)
    run(account)
    requested, cursor = tick(cursor)
    assert requested == 1
    run(account)  # synced after the model's request, maybe after its run read the table
    requested, cursor = tick(cursor)
    assert requested == 1
    run(summary)  # the requested rebuild, with nothing synced beside it
    requested, cursor = tick(cursor)
    assert requested == 0


def test_the_automation_sensor_is_on_by_default_and_targets_the_models() -> None:
    sensor = build_analytics_automation_sensor(30)
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.minimum_interval_seconds == 30
    selected = sensor.asset_selection.resolve([build_account_summary_asset()])
    assert selected == {ACCOUNT_SUMMARY}
