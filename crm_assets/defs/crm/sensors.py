"""The change sensor: probes each CRM resource and syncs only those that changed or grow stale."""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import quote, unquote

import dagster as dg

from crm_assets.defs.crm.endpoints import endpoint_observations, probe_endpoints
from crm_assets.defs.crm.jobs import CRM_SYNC_JOB
from crm_assets.defs.crm.resources import CrmApiResource
from crm_assets.defs.crm.translator import asset_key, read_keys
from crm_assets.settings import OrchestrationSettings
from crm_assets.source.contract import crm_resource_names
from crm_assets.source.probe import Fingerprint, ProbeError

SENSOR_NAME = "crm_change_sensor"


@dataclass
class Plan:
    """What one tick decided: resources to sync and why, the next cursor, and failed probes."""

    changed: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    cursor: dict[str, dict[str, object]] = field(default_factory=dict)

    @property
    def to_sync(self) -> list[str]:
        return [*self.changed, *self.stale]


# A cursor entry per resource, "<name> <total> @ <newest updated_at>" (no "@" part where the API
# does not sort), joined by "; ": the tick table shows the cursor's start, and JSON there read as
# a blob cut mid-value. The API's timestamp is %-escaped where it holds ";" or "%".
_ENTRY = re.compile(r"(?P<name>\S+) (?P<total>\d+)(?: @ (?P<newest>.+))?")
_KEEP = ":+ /"  # characters of timestamps left as they are


def encode_cursor(entries: Mapping[str, Mapping[str, object]]) -> str:
    """The plan's cursor as the tick table shows it: `account 250 @ 2026-12-01T09:00:00Z; ...`."""
    parts = []
    for name, entry in sorted(entries.items()):
        newest = entry["newest_updated_at"]
        at = f" @ {quote(str(newest), safe=_KEEP)}" if newest is not None else ""
        parts.append(f"{name} {entry['total']}{at}")
    return "; ".join(parts)


def decode_cursor(text: str | None) -> dict[str, dict[str, object]]:
    """`encode_cursor`'s entries back; a JSON cursor (written before 2026-12) still reads."""
    if not text:
        return {}
    if text.startswith("{"):
        return json.loads(text)
    entries: dict[str, dict[str, object]] = {}
    for part in text.split("; "):
        match = _ENTRY.fullmatch(part)
        if match is None:
            raise ValueError(f"unreadable {SENSOR_NAME} cursor entry {part[:80]!r}")
        newest = match["newest"]
        entries[match["name"]] = {
            "total": int(match["total"]),
            "newest_updated_at": unquote(newest) if newest is not None else None,
        }
    return entries


def plan_tick(
    previous: Mapping[str, Mapping[str, object]],
    probes: Mapping[str, Fingerprint | ProbeError],
    ages: Mapping[str, timedelta | None],
    stale_after: timedelta,
) -> Plan:
    """Pure decision: changed fingerprints sync; unchanged ones sync once older than `stale_after`.

    A failed probe keeps its previous cursor entry, so the change is seen on a later tick.
    """
    plan = Plan(cursor={name: dict(entry) for name, entry in previous.items()})
    for name, seen in probes.items():
        if isinstance(seen, ProbeError):
            plan.failures.append(str(seen))
            continue
        if previous.get(name) != seen.as_json():
            plan.changed.append(name)
            plan.cursor[name] = seen.as_json()
        elif (age := ages.get(name)) is None or age >= stale_after:
            plan.stale.append(name)
    return plan


def _run_key(plan: Plan, last_materialized: Mapping[str, float | None]) -> str:
    """Same changes (or the same stale materialization) → same key, so Dagster dedupes."""
    basis = {
        "changed": {name: plan.cursor[name] for name in plan.changed},
        "stale": {name: last_materialized.get(name) for name in plan.stale},
    }
    digest = hashlib.sha256(json.dumps(basis, sort_keys=True).encode()).hexdigest()[:20]
    return f"crm-{digest}"


def _why(plan: Plan) -> str:
    """The tick's reasons in words: which resources changed (total, newest) and which are stale."""
    seen = {name: plan.cursor[name] for name in plan.changed}
    changed = [
        f"{name} (total {entry['total']}, newest {entry['newest_updated_at']})"
        for name, entry in seen.items()
    ]
    parts = [f"changed: {', '.join(changed)}"] if changed else []
    if plan.stale:
        parts.append(f"past the freshness warn window: {', '.join(plan.stale)}")
    return "; ".join(parts)


def _run_request(
    plan: Plan,
    names: list[str],
    run_key: str,
    models: Sequence[dg.AssetsDefinition] = (),
    history: Collection[str] = (),
) -> dg.RunRequest:
    """A run syncing `names` (with the history table of those in `history`: the same read writes
    it), then rebuilding the `models` that read any of them, tagged with why (only the reasons
    that apply: an empty tag shows in the UI as "crm/stale:")."""
    reasons = {
        "crm/changed": [n for n in plan.changed if n in names],
        "crm/stale": [n for n in plan.stale if n in names],
    }
    synced = [key for name in names for key in read_keys(name, history)]
    downstream = [
        key for model in models if set(synced) & model.dependency_keys for key in model.keys
    ]
    return dg.RunRequest(
        run_key=run_key,
        asset_selection=[*synced, *downstream],
        tags={tag: ",".join(which) for tag, which in reasons.items() if which},
    )


def _last_synced(instance: dg.DagsterInstance, name: str) -> float | None:
    event = instance.get_latest_materialization_event(asset_key(name))
    return event.timestamp if event else None


def _age(last_synced: float | None, now: float, in_flight: bool) -> timedelta | None:
    """How old the table is; 0 while a sync is queued or running (don't stack another)."""
    if in_flight:
        return timedelta(0)
    return None if last_synced is None else timedelta(seconds=now - last_synced)


def _sync_in_flight(instance: dg.DagsterInstance, name: str) -> bool:
    planned = instance.get_latest_planned_materialization_info(asset_key(name))
    run = instance.get_run_by_id(planned.run_id) if planned else None
    return run is not None and not run.is_finished


def build_crm_change_sensor(
    settings: OrchestrationSettings,
    clock: Callable[[], float] = time.time,
    models: Sequence[dg.AssetsDefinition] = (),
) -> dg.SensorDefinition:
    """Every `sensor_interval_s`: one small request per resource; on when deployed.

    A run it requests also rebuilds the `models` on top of what it syncs, after the sync and
    only if its blocking checks pass: the first sync on a fresh instance builds them too.
    Runs per resource leave the models to their automation sensor, which rebuilds them once.
    """

    @dg.sensor(
        name=SENSOR_NAME,
        job_name=CRM_SYNC_JOB,
        minimum_interval_seconds=settings.sensor_interval_s,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Probes each CRM resource (limit=1: total and newest updated_at) and syncs those that"
            " changed, or that passed their freshness warn window without a change."
        ),
    )
    def crm_change_sensor(
        context: dg.SensorEvaluationContext, crm_api: CrmApiResource
    ) -> dg.SensorResult:
        probes = probe_endpoints(crm_api, crm_resource_names())
        last = {name: _last_synced(context.instance, name) for name in crm_resource_names()}
        now = clock()
        ages = {
            name: _age(stamp, now, in_flight=_sync_in_flight(context.instance, name))
            for name, stamp in last.items()
        }
        previous = decode_cursor(context.cursor)
        plan = plan_tick(previous, probes, ages, settings.freshness_warn)
        for failure in plan.failures:
            context.log.warning(failure)
        cursor = encode_cursor(plan.cursor)
        observed = endpoint_observations(probes, plan.changed)
        if not plan.to_sync:
            reason = "; ".join(plan.failures) or "no CRM resource changed or grew stale"
            context.log.info(f"skipped: {reason}")  # the tick's logs, beside "0 runs requested"
            return dg.SensorResult(
                skip_reason=dg.SkipReason(reason), cursor=cursor, asset_events=observed
            )
        key = _run_key(plan, last)
        history = settings.history
        if settings.run_per_resource:
            requests = [
                _run_request(plan, [name], f"{key}-{name}", history=history)
                for name in plan.to_sync
            ]
        else:
            requests = [_run_request(plan, plan.to_sync, key, models, history)]
        context.log.info(f"syncing {_why(plan)}")  # a launching tick says what it saw too
        return dg.SensorResult(run_requests=requests, cursor=cursor, asset_events=observed)

    return crm_change_sensor
