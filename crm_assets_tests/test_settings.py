"""Orchestration settings from env vars: defaults, overrides, and errors that name the variable."""

from datetime import timedelta

import pytest

from crm_assets.settings import OrchestrationSettings, SettingsError


def test_defaults() -> None:
    settings = OrchestrationSettings.from_env({})
    assert (settings.freshness_warn, settings.freshness_fail) == (
        timedelta(hours=12),
        timedelta(hours=24),
    )
    assert (settings.sensor_interval_s, settings.reconcile_cron, settings.timezone) == (
        60,
        "0 3 * * *",
        "UTC",
    )


def test_overrides() -> None:
    settings = OrchestrationSettings.from_env(
        {
            "CRM_FRESHNESS_WARN_MINUTES": "30",
            "CRM_FRESHNESS_FAIL_MINUTES": "90",
            "CRM_SENSOR_INTERVAL_SECONDS": "15",
            "CRM_RECONCILE_CRON": "*/30 * * * *",
            "CRM_TIMEZONE": "Europe/Berlin",
            "CRM_RUN_PER_RESOURCE": "true",
            "CRM_HISTORY": "opportunity, account",
        }
    )
    assert settings == OrchestrationSettings(
        timedelta(minutes=30),
        timedelta(minutes=90),
        15,
        "*/30 * * * *",
        "Europe/Berlin",
        True,
        ("opportunity", "account"),
    )


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"CRM_FRESHNESS_WARN_MINUTES": "soon"}, "CRM_FRESHNESS_WARN_MINUTES"),
        ({"CRM_FRESHNESS_WARN_MINUTES": "2000"}, "CRM_FRESHNESS_FAIL_MINUTES"),
        ({"CRM_SENSOR_INTERVAL_SECONDS": "0"}, "CRM_SENSOR_INTERVAL_SECONDS"),
        ({"CRM_RECONCILE_CRON": "daily"}, "CRM_RECONCILE_CRON"),
        # croniter takes both; a Dagster schedule neither (seconds field, 30 February)
        ({"CRM_RECONCILE_CRON": "0 * * * * *"}, "CRM_RECONCILE_CRON"),
        ({"CRM_RECONCILE_CRON": "0 3 30 2 *"}, "CRM_RECONCILE_CRON"),
        ({"CRM_TIMEZONE": "Mars/Olympus"}, "CRM_TIMEZONE"),
        ({"CRM_RUN_PER_RESOURCE": "sometimes"}, "CRM_RUN_PER_RESOURCE"),
        ({"CRM_HISTORY": "opportunity,deals"}, "CRM_HISTORY names 'deals'"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        OrchestrationSettings.from_env(env)
