"""The Dagster UI in a real browser: Debian's chromium, driven by Playwright, against `dagster dev`
on loopback with the sandbox CRM; screenshots go to CRM_TEST_UI_ARTIFACTS (default artifacts/ui/).

Needs the `playwright` package (dev extra) and /usr/bin/chromium (`.ci/run` installs it);
without them the test is skipped, and pytest says why.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

# Dagster's staleness as the UI computes it; there is no public API for it in 1.13.
from dagster._core.definitions.data_version import StaleStatus
from dagster._utils.test.data_versions import get_stale_status_resolver

from crm_assets.definitions import defs
from crm_assets.defs.analytics.assets import ACCOUNT_SUMMARY
from crm_assets.defs.crm.translator import api_asset_key, asset_key
from crm_assets_tests.conftest import REPO, SandboxFactory, sandbox_cli_env
from crm_assets_tests.ui.dagster_dev import dagster_dev

playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
CHROMIUM = os.environ.get("CRM_TEST_CHROMIUM", "/usr/bin/chromium")
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason=f"no browser at {CHROMIUM}: apt-get install chromium"
)
# As root in a container, without the sandbox; no calls to Google's services (closed network).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
RECORDS = 240
LOCATION = "crm_assets"  # [tool.dg.project] code_location_name, and workspace.yaml's
SLOW_MS = 240_000  # a run through the queue, on a loaded CI machine


@pytest.fixture(scope="module")
def artifacts() -> Path:
    folder = Path(os.environ.get("CRM_TEST_UI_ARTIFACTS", REPO / "artifacts" / "ui"))
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


@pytest.fixture
def ui(make_sandbox: SandboxFactory, tmp_path: Path) -> Iterator[tuple[str, object]]:
    sandbox = make_sandbox(RECORDS)
    env = sandbox_cli_env(tmp_path, sandbox) | {"CRM_HISTORY": "opportunity"}
    with dagster_dev(env, REPO, tmp_path / "dagster_dev.log") as base_url:
        yield base_url, sandbox


def _skip_dialogs(page) -> None:
    """Dagster's first-visit "Join the community" dialog covers the page until skipped; it
    appears late on a loaded machine, so Playwright skips it whenever it shows."""
    skip = page.get_by_role("button", name="Skip")
    page.add_locator_handler(skip, lambda: skip.click())


def _wait_for_run(home: Path, run_id: str) -> str:
    """Until the run whose id starts with `run_id` has ended (its status in the instance); its
    whole id."""
    deadline = time.monotonic() + SLOW_MS / 1000
    with dg.DagsterInstance.from_config(str(home)) as instance:
        while time.monotonic() < deadline:
            runs = [r for r in instance.get_runs(limit=10) if r.run_id.startswith(run_id)]
            if runs and runs[0].is_finished:
                return runs[0].run_id
            time.sleep(1)
    raise AssertionError(f"run {run_id} did not end in {SLOW_MS / 1000:.0f} s")


def _rebuilt_by_automation(home: Path, key: dg.AssetKey) -> dg.DagsterRun:
    """Until `key` is synced with its inputs again (no "Unsynced" in the UI), as the automation
    sensor's next tick leaves it after a run of its inputs; the run that last materialized it."""
    deadline = time.monotonic() + SLOW_MS / 1000
    assets = list(defs().assets or [])
    with dg.DagsterInstance.from_config(str(home)) as instance:
        while time.monotonic() < deadline:
            staleness = get_stale_status_resolver(instance, assets)
            if staleness.get_status(key) == StaleStatus.FRESH:
                event = instance.get_latest_materialization_event(key)
                run = instance.get_run_by_id(event.run_id) if event else None
                if run and run.is_finished:
                    return run
            time.sleep(1)
    raise AssertionError(f"{key.to_user_string()} not synced in {SLOW_MS / 1000:.0f} s")


def _follow(page, path: str) -> None:
    """Open `path` within the app, as following one of its links does: the UI's code and its
    workspace load once, not once per view (a page load costs chromium and the webserver
    ~2 CPU-s here). Returns once the app has rendered the new view, not the one before."""
    page.evaluate(
        """path => {
            history.pushState({}, "", path);
            dispatchEvent(new PopStateEvent("popstate"));
            return new Promise(done => requestAnimationFrame(() => setTimeout(done)));
        }""",
        path,
    )


def _loaded(page) -> None:
    """Until the page shows no "Loading..." (the run's logs, the lineage's nodes), for the
    screenshot; what the test asserts it has already waited for."""
    with contextlib.suppress(playwright.Error):
        page.get_by_text(re.compile("^Loading")).first.wait_for(state="detached")


@pytest.mark.long_running(90)
def test_the_ui_shows_lineage_runs_the_crm_group_and_describes_its_tables(
    ui, artifacts, tmp_path: Path
) -> None:
    base_url, sandbox = ui
    expect = playwright.expect
    expect.set_options(timeout=30_000)  # each page's data arrives late on a loaded machine
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.set_default_timeout(30_000)
        _skip_dialogs(page)

        # Launch group crm from its page, as a user would, and follow the run to its end.
        page.goto(f"{base_url}/locations/{LOCATION}/asset-groups/crm")
        page.get_by_role("button", name="Materialize all").first.click()
        toast = page.get_by_text("Launched run")
        expect(toast).to_be_visible(timeout=SLOW_MS)  # the launch itself waits on a busy machine
        run_id = toast.inner_text().split()[-1]  # the run id's first 8 characters
        # Its page once it has ended: a Dagster page left open renders its live data, which
        # costs more CPU than the run itself on a 2-core machine.
        page.goto("about:blank")
        run_id = _wait_for_run(tmp_path / "dagster_home", run_id)
        page.goto(f"{base_url}/runs/{run_id}")
        expect(page.get_by_text("Success", exact=True).first).to_be_visible()
        _loaded(page)
        page.screenshot(path=artifacts / "run.png")

        # The table's page: row count, qualified storage, typed and described columns, checks.
        page.set_viewport_size({"width": 1600, "height": 2600})  # the metadata table too
        _follow(page, "/assets/crm/account")
        row_count = page.get_by_text("Row count", exact=True).locator("xpath=..")
        expect(row_count).to_contain_text(f"{sandbox.store.total('account'):,}")
        expect(page.get_by_text("live_rows", exact=True)).to_be_visible()
        expect(page.get_by_text("warehouse.crm.account", exact=True).first).to_be_visible()
        expect(page.get_by_text("annual_revenue", exact=True)).to_be_visible()
        expect(page.get_by_text("decimal(38,9)").first).to_be_visible()
        expect(page.get_by_text("Company name", exact=True)).to_be_visible()
        body = page.inner_text("body")
        for noise in ("dagster_dlt/", "unserializable", "file_path", "crm/stale:"):
            assert noise not in body, noise
        page.screenshot(path=artifacts / "asset.png")
        _follow(page, "/assets/crm/opportunity_history")  # history mode's table
        expect(page.get_by_text("current_versions", exact=True)).to_be_visible()
        expect(page.get_by_text("valid_from", exact=True)).to_be_visible()
        page.set_viewport_size({"width": 1600, "height": 1000})
        _follow(page, "/assets/crm/account?view=checks")
        for check in ("reconciled_with_api", "gone_upstream", "id_unique_not_null"):
            expect(page.get_by_text(check, exact=True).first).to_be_visible()
        page.screenshot(path=artifacts / "checks.png")

        # The API side: the change sensor's ticks observe each endpoint (total, newest record).
        _follow(page, "/assets/crm_api/account_endpoint")
        expect(page.get_by_text("newest_updated_at").first).to_be_visible()
        page.screenshot(path=artifacts / "endpoint.png")
        with dg.DagsterInstance.from_config(str(tmp_path / "dagster_home")) as instance:
            latest = instance.fetch_observations(api_asset_key("account"), limit=1).records
            # the sensor's first run on this fresh instance built the model with the tables,
            # and the history of the resource in history mode with its table
            assert instance.get_latest_materialization_event(ACCOUNT_SUMMARY) is not None
            by_sensor = dg.RunsFilter(tags={"dagster/sensor_name": "crm_change_sensor"})
            (first_sync,) = instance.get_runs(filters=by_sensor)
            assert asset_key("opportunity_history") in (first_sync.asset_selection or ())
            # synced since its endpoint's last observation: the lineage shows no "Unsynced"
            staleness = get_stale_status_resolver(instance, list(defs().assets or []))
            assert staleness.get_status(asset_key("account")) == StaleStatus.FRESH
        (observed,) = [r.asset_observation for r in latest]
        total = sandbox.store.total("account")
        assert (observed.tags or {})["dagster/data_version"].startswith(f"{total} @ ")

        # Automation: both sensors and the schedule listed, each running (its switch on).
        _follow(page, "/automation")
        for name in ("crm_change_sensor", "analytics_automation_sensor", "crm_reconcile_schedule"):
            # its row (the innermost block with its name and a checkbox): selection, then switch
            checkbox = page.get_by_role("checkbox")
            row = page.locator("div").filter(has=page.get_by_text(name, exact=True))
            expect(row.filter(has=checkbox).last.get_by_role("checkbox").last).to_be_checked()
        page.screenshot(path=artifacts / "automation.png")

        # The run above left the model behind its tables ("Unsynced"); the automation sensor
        # rebuilds it (eager on its inputs), so the README's picture shows the steady state.
        page.goto("about:blank")  # no live page while the sensor's tick comes (up to a minute)
        rebuilt = _rebuilt_by_automation(tmp_path / "dagster_home", ACCOUNT_SUMMARY)
        assert rebuilt.tags.get("dagster/sensor_name") == "analytics_automation_sensor"
        assert rebuilt.status == dg.DagsterRunStatus.SUCCESS

        # Lineage: the model's upstream, two levels: API endpoint -> table -> model. Loaded
        # afresh: the app keeps the model's last run from before the rebuild.
        page.goto(
            f"{base_url}/assets/analytics/account_summary"
            "?view=lineage&lineageScope=upstream&lineageDepth=2"
        )
        for name in ("account", "contact", "opportunity"):
            expect(page.get_by_text(f"{name}_endpoint", exact=True)).to_be_visible()
            expect(page.get_by_text(name, exact=True).first).to_be_visible()
        expect(page.get_by_text("account_summary", exact=True).first).to_be_visible()
        # only what the model reads: the lead table and its endpoint are not upstream of it
        expect(page.get_by_text("lead_endpoint", exact=True)).to_have_count(0)
        expect(page.get_by_text("Unsynced")).to_have_count(0)
        _loaded(page)  # a picture without "Loading..." nodes
        page.screenshot(path=artifacts / "lineage.png")
        browser.close()
