"""The sync job and the reconcile schedule as the code location exposes them."""

from datetime import UTC, datetime

import dagster as dg
import pytest

from crm_assets.definitions import defs

CRM_KEYS = {dg.AssetKey(["crm", name]) for name in ("account", "contact", "lead", "opportunity")}


def test_job_syncs_the_crm_group_then_the_models_with_all_checks() -> None:
    job = defs().resolve_job_def("crm_sync_job")
    model = dg.AssetKey(["analytics", "account_summary"])
    assert set(job.asset_layer.executable_asset_keys) == CRM_KEYS | {model}
    checked = {key.asset_key for key in job.asset_layer.asset_graph.asset_check_keys}
    assert checked == CRM_KEYS | {model}


def test_schedule_runs_the_job_daily_in_utc_and_starts_on() -> None:
    schedule = defs().resolve_schedule_def("crm_reconcile_schedule")
    assert schedule.job_name == "crm_sync_job"
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("0 3 * * *", "UTC")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING


def test_schedule_follows_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRM_RECONCILE_CRON", "15 */6 * * *")
    monkeypatch.setenv("CRM_TIMEZONE", "America/New_York")
    schedule = defs().resolve_schedule_def("crm_reconcile_schedule")
    assert (schedule.cron_schedule, schedule.execution_timezone) == (
        "15 */6 * * *",
        "America/New_York",
    )


def test_sensor_targets_the_job_with_the_configured_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CRM_SENSOR_INTERVAL_SECONDS", "20")
    sensor = defs().resolve_sensor_def("crm_change_sensor")
    assert sensor.job_name == "crm_sync_job"
    assert sensor.minimum_interval_seconds == 20
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING


def test_per_resource_schedule_asks_one_full_run_per_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CRM_RUN_PER_RESOURCE", "true")
    schedule = defs().resolve_schedule_def("crm_reconcile_schedule")
    tick = datetime(2026, 11, 29, 3, tzinfo=UTC)

    requests = schedule.evaluate_tick(
        dg.build_schedule_context(scheduled_execution_time=tick)
    ).run_requests

    assert requests is not None
    assert sorted(r.asset_selection[0].path[-1] for r in requests if r.asset_selection) == [
        "account",
        "contact",
        "lead",
        "opportunity",
    ]
    assert all(len(r.asset_selection or []) == 1 for r in requests)
    assert all(r.run_config["ops"]["crm_sync"]["config"]["mode"] == "full" for r in requests)


def test_per_resource_schedule_syncs_a_history_table_with_its_resource(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CRM_RUN_PER_RESOURCE", "true")
    monkeypatch.setenv("CRM_HISTORY", "opportunity")
    schedule = defs().resolve_schedule_def("crm_reconcile_schedule")
    tick = datetime(2026, 11, 29, 3, tzinfo=UTC)

    requests = (
        schedule.evaluate_tick(
            dg.build_schedule_context(scheduled_execution_time=tick)
        ).run_requests
        or []
    )

    selections = {tuple(k.path[-1] for k in r.asset_selection or []) for r in requests}
    assert selections == {
        ("account",),
        ("contact",),
        ("lead",),
        ("opportunity", "opportunity_history"),
    }
