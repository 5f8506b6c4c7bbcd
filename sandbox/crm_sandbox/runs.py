"""Runs of the `dagster` CLI on the crm_assets code location, configured as a user would: by env.

One place for the demo and the tests: which script, which DAGSTER_HOME, which CRM_* variables.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

CODE_LOCATION = "crm_assets.definitions"
_OWN_SETTINGS = ("CRM_", "SOURCES__")  # the project's env vars and dlt's source config


def venv_script(name: str) -> str:
    """A console script installed next to this interpreter (dagster, crm-sandbox)."""
    return str(Path(sys.executable).parent / name)


def dagster_command(*args: str) -> list[str]:
    """`dagster <args> -m crm_assets.definitions` from this interpreter's environment."""
    return [venv_script("dagster"), *args, "-m", CODE_LOCATION]


def dg_command(*args: str) -> list[str]:
    """`dg <args>` from this interpreter's environment, run from the project's folder."""
    return [venv_script("dg"), *args]


def prepare_dagster_home(home: Path, config: Path | None = None) -> Path:
    """A DAGSTER_HOME holding `config` as dagster.yaml, or one that only turns telemetry off."""
    home.mkdir(parents=True, exist_ok=True)
    if config is not None:
        shutil.copy(config, home / "dagster.yaml")
    else:
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return home


def cli_env(
    *,
    dagster_home: Path | None = None,
    base_url: str | None = None,
    api_key: str | None = None,
    duckdb_path: Path | str | None = None,
    inherit: Mapping[str, str] | None = None,
    keep_crm_settings: bool = False,
) -> dict[str, str]:
    """The environment of a CLI run: `inherit` (default: this process's) plus the given settings.

    CRM_* and SOURCES__* variables are inherited only with `keep_crm_settings`, so a test never
    picks up the developer's shell; dlt telemetry is always off.
    """
    base = dict(os.environ if inherit is None else inherit)
    if not keep_crm_settings:
        base = {k: v for k, v in base.items() if not k.startswith(_OWN_SETTINGS)}
    settings = {
        "DAGSTER_HOME": dagster_home,
        "CRM_API_BASE_URL": base_url,
        "CRM_API_KEY": api_key,
        "CRM_DUCKDB_PATH": duckdb_path,
    }
    given = {name: str(value) for name, value in settings.items() if value is not None}
    # the environment's own virtualenv, as activating it would say: `dg` warns when it differs
    venv = {"VIRTUAL_ENV": str(Path(sys.executable).parent.parent)}
    return {**base, "RUNTIME__DLTHUB_TELEMETRY": "false", **venv, **given}
