"""The change sensor against the real sandbox: what each tick requests, skips and remembers."""

import time
from collections.abc import Callable, Iterator
from datetime import timedelta

import dagster as dg
import pytest

from crm_assets.definitions import defs
from crm_assets.defs.analytics.assets import ACCOUNT_SUMMARY, build_account_summary_asset
from crm_assets.defs.analytics.stage_durations import STAGE_DURATIONS, build_stage_durations_asset
from crm_assets.defs.crm.assets import build_crm_assets
from crm_assets.defs.crm.resources import CrmApiResource
from crm_assets.defs.crm.sensors import (
    build_crm_change_sensor,
    decode_cursor,
    encode_cursor,
    plan_tick,
)
from crm_assets.defs.crm.translator import asset_key
from crm_assets.settings import OrchestrationSettings
from crm_assets.source.probe import Fingerprint, ProbeError
from crm_assets.warehouse.resource import WarehouseResource
from crm_assets_tests.conftest import TEST_KEY, SandboxFactory, materialize
from crm_assets_tests.support import failure_message
from crm_sandbox import SandboxServer

ALL = ["account", "contact", "lead", "opportunity"]


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.DagsterInstance.ephemeral() as test_instance:
        yield test_instance


class Ticker:
    """Evaluates the sensor tick after tick, carrying the cursor like the daemon does."""

    def __init__(
        self,
        sandbox: SandboxServer,
        instance: dg.DagsterInstance,
        clock: Callable[[], float] = time.time,
        settings: OrchestrationSettings | None = None,
        models: list[dg.AssetsDefinition] | None = None,
        **api: object,
    ) -> None:
        settings = settings or OrchestrationSettings()
        self.sensor = build_crm_change_sensor(settings, clock, models or [])
        self.api = CrmApiResource(base_url=sandbox.base_url, api_key=TEST_KEY, **api)
        self.instance, self.cursor = instance, None

    def tick(self) -> dg.SensorResult:
        context = dg.build_sensor_context(
            instance=self.instance, cursor=self.cursor, resources={"crm_api": self.api}
        )
        result = self.sensor(context)
        self.cursor = result.cursor
        return result


def requested(result: dg.SensorResult) -> list[str]:
    (request,) = result.run_requests or []
    return sorted(key.path[-1] for key in request.asset_selection or [])


def materialize_requested(
    crm_assets_def: dg.AssetsDefinition,
    sandbox: SandboxServer,
    instance: dg.DagsterInstance,
    warehouse: WarehouseResource,
    names: list[str],
) -> None:
    """What the requested run does: sync those assets into the instance's history."""
    selection = [f"crm/{name}" for name in names]
    result = materialize([crm_assets_def], sandbox, warehouse, selection, instance=instance)
    assert result.success, failure_message(result)


def report_synced(instance: dg.DagsterInstance, names: list[str]) -> None:
    """What the sensor sees of a requested run that succeeded: a materialization of each asset
    (the runs themselves are exercised by the tests that call `materialize_requested`)."""
    for name in names:
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key(name)))


@pytest.fixture
def synced(
    make_sandbox: SandboxFactory, instance: dg.DagsterInstance
) -> tuple[SandboxServer, Ticker]:
    """A sandbox whose first tick has been acted on: every table synced, cursor stored."""
    sandbox = make_sandbox(120)
    ticker = Ticker(sandbox, instance)
    assert requested(ticker.tick()) == ALL
    report_synced(instance, ALL)
    return sandbox, ticker


def test_first_tick_requests_every_resource(
    sandbox: SandboxServer, instance: dg.DagsterInstance
) -> None:
    ticker = Ticker(sandbox, instance)

    result = ticker.tick()

    assert requested(result) == ALL
    assert set(decode_cursor(result.cursor)) == set(ALL)
    probes = sandbox.faults.log
    assert len(probes) == 4
    assert {(r.offset, r.limit) for r in probes} == {(0, 1)}


def _observed(result: dg.SensorResult) -> dict[str, tuple[int, str, str]]:
    """Per endpoint asset the tick observed: total, newest updated_at, data version."""
    return {
        event.asset_key.path[-1]: (
            event.metadata["total"].value,
            event.metadata["newest_updated_at"].value,
            (event.tags or {})["dagster/data_version"],
        )
        for event in result.asset_events
        if isinstance(event, dg.AssetObservation)
    }


def test_endpoints_are_observed_on_the_first_tick_and_when_they_change(
    sandbox: SandboxServer, instance: dg.DagsterInstance, capfd: pytest.CaptureFixture[str]
) -> None:
    ticker = Ticker(sandbox, instance)
    first = _observed(ticker.tick())
    report_synced(instance, ALL)
    quiet = _observed(ticker.tick())  # the same state again: no observation marks tables behind
    sandbox.faults.inject("lead", [503, 503])
    sandbox.store.insert("lead", {"first_name": "Missed"})
    changed = sandbox.store.insert("account", {"name": "New"})
    capfd.readouterr()

    result = ticker.tick()

    total, newest = sandbox.store.total("account"), changed["updated_at"]
    assert sorted(first) == [f"{name}_endpoint" for name in ALL]
    assert quiet == {}
    assert _observed(result) == {"account_endpoint": (total, newest, f"{total} @ {newest}")}
    assert first["account_endpoint"][2] != f"{total} @ {newest}"
    # a launching tick says what it saw, where a skipped one says why it skipped
    assert f"syncing changed: account (total {total}, newest {newest})" in capfd.readouterr().err


def test_the_first_sync_on_an_empty_instance_builds_the_model_in_the_same_run(
    sandbox: SandboxServer,
    instance: dg.DagsterInstance,
    crm_assets_def: dg.AssetsDefinition,
    warehouse: WarehouseResource,
) -> None:
    model = build_account_summary_asset()
    ticker = Ticker(sandbox, instance, models=[model])

    (request,) = ticker.tick().run_requests or []
    selection = list(request.asset_selection or [])
    result = materialize([crm_assets_def, model], sandbox, warehouse, selection, instance=instance)

    assert selection == [*(dg.AssetKey(["crm", n]) for n in ALL), ACCOUNT_SUMMARY]
    assert result.success, failure_message(result)
    assert instance.get_latest_materialization_event(ACCOUNT_SUMMARY) is not None
    split = Ticker(
        sandbox, instance, settings=OrchestrationSettings(run_per_resource=True), models=[model]
    )
    split_requests = split.tick().run_requests or []
    assert [r.asset_selection for r in split_requests] == [[asset_key(n)] for n in ALL]


def test_with_history_on_a_sensor_sync_writes_the_history_and_rebuilds_its_model(
    sandbox: SandboxServer, instance: dg.DagsterInstance, warehouse: WarehouseResource
) -> None:
    """The history table is written by its resource's read: a run that syncs the resource
    without it would leave every change the sensor syncs out of the history."""
    settings = OrchestrationSettings(history=("opportunity",))
    crm, model = build_crm_assets(history=settings.history), build_stage_durations_asset()
    ticker = Ticker(sandbox, instance, settings=settings, models=[model])

    (request,) = ticker.tick().run_requests or []
    selection = list(request.asset_selection or [])
    result = materialize([crm, model], sandbox, warehouse, selection, instance=instance)

    assert result.success, failure_message(result)
    assert asset_key("opportunity_history") in selection
    assert STAGE_DURATIONS in selection
    with warehouse.sql_client() as client:
        history = client.make_qualified_table_name("opportunity_history")
        (versions,) = client.execute_sql(f"select count(*) from {history}")[0]
    assert versions == sandbox.store.total("opportunity")
    split_settings = OrchestrationSettings(run_per_resource=True, history=settings.history)
    split = Ticker(sandbox, instance, settings=split_settings, models=[model])
    split_requests = split.tick().run_requests or []
    selections = {tuple(k.path[-1] for k in r.asset_selection or []) for r in split_requests}
    assert ("opportunity", "opportunity_history") in selections


def test_no_change_skips_at_one_request_per_resource(
    synced: tuple[SandboxServer, Ticker], capfd: pytest.CaptureFixture[str]
) -> None:
    sandbox, ticker = synced
    before = len(sandbox.faults.log)
    capfd.readouterr()

    result = ticker.tick()

    assert not result.run_requests
    assert "no CRM resource changed" in str(result.skip_reason)
    assert len(sandbox.faults.log) - before == 4
    # the tick's log says why, where the UI's tick list shows only "0 runs requested"
    assert "skipped: no CRM resource changed or grew stale" in capfd.readouterr().err


def test_an_update_requests_exactly_that_asset(synced: tuple[SandboxServer, Ticker]) -> None:
    sandbox, ticker = synced
    sandbox.store.update("account", 17, {"name": "Changed"})  # same total, newer updated_at

    assert requested(ticker.tick()) == ["account"]


def test_an_insert_requests_exactly_that_asset(synced: tuple[SandboxServer, Ticker]) -> None:
    sandbox, ticker = synced
    sandbox.store.insert("lead", {"first_name": "New"})

    result = ticker.tick()

    assert requested(result) == ["lead"]
    assert result.run_requests[0].tags["crm/changed"] == "lead"
    assert "crm/stale" not in result.run_requests[0].tags  # no empty "crm/stale:" tag


def test_without_a_sort_param_only_totals_are_seen(
    make_sandbox: SandboxFactory,
    instance: dg.DagsterInstance,
    crm_assets_def: dg.AssetsDefinition,
    warehouse: WarehouseResource,
) -> None:
    sandbox = make_sandbox(30)
    ticker = Ticker(sandbox, instance, newest_first_params={})
    ticker.tick()
    materialize_requested(crm_assets_def, sandbox, instance, warehouse, ALL)
    sandbox.store.update("contact", 3, {"title": "CEO"})

    unseen = ticker.tick()
    sandbox.store.insert("contact", {"title": "CTO"})
    seen = ticker.tick()

    assert decode_cursor(ticker.cursor)["contact"]["newest_updated_at"] is None
    assert not unseen.run_requests  # an update that keeps the total is left to the backstop
    assert requested(seen) == ["contact"]


def test_api_down_skips_naming_resources_and_keeps_the_cursor(
    synced: tuple[SandboxServer, Ticker],
) -> None:
    sandbox, ticker = synced
    cursor = ticker.cursor
    sandbox.store.insert("account", {"name": "unseen while down"})
    sandbox.stop()

    result = ticker.tick()

    assert not result.run_requests
    reason = str(result.skip_reason)
    assert all(f"probe of {name!r}" in reason for name in ALL)
    assert "ConnectionError" in reason
    assert TEST_KEY not in reason
    assert result.cursor == cursor


def test_a_rejected_key_skips_with_the_status_and_without_the_key(
    sandbox: SandboxServer, instance: dg.DagsterInstance
) -> None:
    ticker = Ticker(sandbox, instance)
    ticker.api = CrmApiResource(base_url=sandbox.base_url, api_key="wrong-key-31f0a9")

    result = ticker.tick()

    assert "HTTP 401" in str(result.skip_reason)
    assert "wrong-key-31f0a9" not in str(result.skip_reason)
    assert result.cursor == ""


def test_one_failed_probe_does_not_block_the_others(synced: tuple[SandboxServer, Ticker]) -> None:
    sandbox, ticker = synced
    lead_before = decode_cursor(ticker.cursor)["lead"]
    sandbox.faults.inject("lead", [503, 503])
    sandbox.store.insert("lead", {"first_name": "Missed"})
    sandbox.store.insert("opportunity", {"name": "Seen"})

    result = ticker.tick()

    assert requested(result) == ["opportunity"]
    assert decode_cursor(result.cursor)["lead"] == lead_before
    assert requested(ticker.tick()) == ["lead"]  # seen on the next tick


def test_stale_assets_are_refreshed_without_a_change(
    make_sandbox: SandboxFactory,
    instance: dg.DagsterInstance,
    crm_assets_def: dg.AssetsDefinition,
    warehouse: WarehouseResource,
) -> None:
    sandbox = make_sandbox(20)
    offset = [0.0]
    ticker = Ticker(sandbox, instance, clock=lambda: time.time() + offset[0])
    ticker.tick()
    materialize_requested(crm_assets_def, sandbox, instance, warehouse, ALL)
    assert not ticker.tick().run_requests

    offset[0] = timedelta(hours=12, minutes=1).total_seconds()  # past the default warn window
    result = ticker.tick()

    assert requested(result) == ALL
    assert result.run_requests[0].tags["crm/stale"] == "account,contact,lead,opportunity"
    assert "crm/changed" not in result.run_requests[0].tags


def test_per_resource_runs_split_a_tick_one_table_each(
    synced: tuple[SandboxServer, Ticker], instance: dg.DagsterInstance
) -> None:
    sandbox, ticker = synced
    split = Ticker(sandbox, instance, settings=OrchestrationSettings(run_per_resource=True))
    split.cursor = ticker.cursor
    sandbox.store.insert("lead", {})
    sandbox.store.update("account", 3, {"name": "Changed"})

    requests = split.tick().run_requests or []

    selections = sorted(tuple(k.path[-1] for k in r.asset_selection or []) for r in requests)
    assert selections == [("account",), ("lead",)]  # one run each, free to go to its own worker
    assert len({r.run_key for r in requests}) == 2
    assert {r.tags["crm/changed"] for r in requests} == {"account", "lead"}


def test_run_keys_are_idempotent(sandbox: SandboxServer, instance: dg.DagsterInstance) -> None:
    first, second = Ticker(sandbox, instance), Ticker(sandbox, instance)

    keys = [t.tick().run_requests[0].run_key for t in (first, second)]
    sandbox.store.insert("account", {})
    changed = first.tick().run_requests[0].run_key

    assert keys[0] == keys[1]
    assert changed != keys[0]


def test_plan_tick_treats_failures_changes_and_age_separately() -> None:
    seen = Fingerprint(10, "2025-01-01T00:00:00Z")
    previous = {"a": seen.as_json(), "b": seen.as_json(), "c": seen.as_json()}
    probes = {
        "a": seen,
        "b": Fingerprint(11, "2025-01-02T00:00:00Z"),
        "c": ProbeError("probe of 'c' failed"),
        "d": seen,
    }
    ages = {"a": timedelta(hours=1), "b": timedelta(hours=1), "d": None}

    plan = plan_tick(previous, probes, ages, stale_after=timedelta(hours=2))

    assert (plan.changed, plan.stale, plan.failures) == (["b", "d"], [], ["probe of 'c' failed"])
    assert plan.cursor["c"] == seen.as_json()
    older = plan_tick(previous, {"a": seen}, {"a": timedelta(hours=3)}, timedelta(hours=2))
    assert older.stale == ["a"]


def test_a_queued_sync_is_not_stacked_and_a_failed_one_is_retried(
    sandbox: SandboxServer, instance: dg.DagsterInstance
) -> None:
    ticker = Ticker(sandbox, instance)
    assert requested(ticker.tick()) == ALL
    job = defs().resolve_job_def("crm_sync_job")
    run = instance.create_run_for_job(job_def=job)  # the requested run, queued and not done

    while_queued = ticker.tick()
    instance.report_run_failed(run)
    after_failure = ticker.tick()

    assert not while_queued.run_requests
    assert requested(after_failure) == ALL  # never synced: stale, so asked for again
    assert after_failure.run_requests[0].tags["crm/stale"] == "account,contact,lead,opportunity"


def test_a_redirected_probe_skips_naming_the_host_not_the_url(
    synced: tuple[SandboxServer, Ticker],
) -> None:
    sandbox, ticker = synced
    sandbox.faults.inject("lead", [302, 302])  # to another host, the key in the query along
    sandbox.store.insert("opportunity", {"name": "Seen"})

    result = ticker.tick()

    assert requested(result) == ["opportunity"]
    (redirect,) = [r for r in sandbox.faults.log if r.resource == "lead" and r.status == 302]
    assert redirect.offset == 0  # asked once: neither followed nor retried


def test_the_cursor_reads_as_text_and_round_trips_any_timestamp_the_api_sends() -> None:
    entries = {
        "lead": {"total": 0, "newest_updated_at": None},
        "account": {"total": 250, "newest_updated_at": "2026-12-01T09:00:00.123Z"},
        "contact": {"total": 7, "newest_updated_at": "2026-12-01 09:00:00+01:00"},
        "odd": {"total": 1, "newest_updated_at": "a; b @ 100% é"},
    }

    cursor = encode_cursor(entries)

    assert cursor.startswith("account 250 @ 2026-12-01T09:00:00.123Z; contact 7 @ 2026-12-01")
    assert "lead 0; odd 1 @ " in cursor
    assert decode_cursor(cursor) == entries
    assert decode_cursor("") == {}
    written_before = '{"lead": {"newest_updated_at": null, "total": 3}}'  # JSON, as before
    assert decode_cursor(written_before) == {"lead": {"newest_updated_at": None, "total": 3}}
    with pytest.raises(ValueError, match="unreadable crm_change_sensor cursor entry"):
        decode_cursor("account two hundred")
