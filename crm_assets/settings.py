"""Orchestration settings fixed when the code location loads: freshness windows, tick, cron.

They shape definitions (a sensor's interval, a schedule's cron), so Dagster run config cannot
carry them; they come from env vars read by `definitions.py` at load time, never at import.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import dagster as dg

from crm_assets.source.contract import crm_resource_names


class SettingsError(ValueError):
    """An orchestration env var with a value that cannot work; names the variable."""


def is_dagster_cron(cron: str) -> bool:
    """Whether a schedule accepts `cron`: asked of `ScheduleDefinition` itself, so the rule is
    Dagster's (five fields, no 30 February), checked when the code location loads."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the real schedule warns about odd intervals itself
            dg.ScheduleDefinition(name="cron_probe", cron_schedule=cron, job_name="cron_probe")
    except dg.DagsterInvalidDefinitionError:
        return False
    return True


@dataclass(frozen=True)
class OrchestrationSettings:
    """Defaults: warn after 12 h, fail after 24 h, probe every 60 s, reconcile daily 03:00 UTC."""

    freshness_warn: timedelta = timedelta(hours=12)
    freshness_fail: timedelta = timedelta(hours=24)
    sensor_interval_s: int = 60
    reconcile_cron: str = "0 3 * * *"
    timezone: str = "UTC"
    # One run per CRM resource (sensor and schedule): each can go to its own worker (one pod
    # each with dagster-k8s's run launcher) and, on Postgres, load at the same time.
    run_per_resource: bool = False
    # resources that keep every version of their records too, in crm.<name>_history
    history: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not timedelta(minutes=1) <= self.freshness_warn < self.freshness_fail:
            raise SettingsError(  # Dagster's freshness windows are at least a minute
                "CRM_FRESHNESS_WARN_MINUTES must be at least 1 and below CRM_FRESHNESS_FAIL_MINUTES"
            )
        if self.sensor_interval_s < 1:
            raise SettingsError("CRM_SENSOR_INTERVAL_SECONDS must be at least 1")
        if not is_dagster_cron(self.reconcile_cron):
            raise SettingsError(f"CRM_RECONCILE_CRON {self.reconcile_cron!r} is not a cron string")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise SettingsError(f"CRM_TIMEZONE {self.timezone!r} is not an IANA zone") from None
        if unknown := [name for name in self.history if name not in crm_resource_names()]:
            raise SettingsError(
                f"CRM_HISTORY names {unknown[0]!r}, not a CRM resource: one or more of"
                f" {', '.join(crm_resource_names())}, separated by commas"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> OrchestrationSettings:
        defaults = cls()

        def number(name: str, default: float) -> float:
            raw = env.get(name)
            if raw is None or raw == "":
                return default
            try:
                return float(raw)
            except ValueError:
                raise SettingsError(f"{name} must be a number, got {raw!r}") from None

        def flag(name: str, default: bool) -> bool:
            raw = (env.get(name) or "").strip().lower()
            if not raw:
                return default
            if raw not in ("1", "true", "yes", "0", "false", "no"):
                raise SettingsError(f"{name} must be true or false, got {raw!r}")
            return raw in ("1", "true", "yes")

        warn_min = defaults.freshness_warn.total_seconds() / 60
        fail_min = defaults.freshness_fail.total_seconds() / 60
        return cls(
            freshness_warn=timedelta(minutes=number("CRM_FRESHNESS_WARN_MINUTES", warn_min)),
            freshness_fail=timedelta(minutes=number("CRM_FRESHNESS_FAIL_MINUTES", fail_min)),
            sensor_interval_s=int(
                number("CRM_SENSOR_INTERVAL_SECONDS", defaults.sensor_interval_s)
            ),
            reconcile_cron=env.get("CRM_RECONCILE_CRON") or defaults.reconcile_cron,
            timezone=env.get("CRM_TIMEZONE") or defaults.timezone,
            run_per_resource=flag("CRM_RUN_PER_RESOURCE", defaults.run_per_resource),
            history=tuple(
                n.strip() for n in (env.get("CRM_HISTORY") or "").split(",") if n.strip()
            ),
        )
