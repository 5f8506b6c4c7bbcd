"""The CRM API resource: fallbacks to dlt's config files, clear errors for missing settings."""

import subprocess
import sys
from pathlib import Path

import pytest

from crm_assets.defs.crm.resources import CrmApiResource
from crm_assets.source.config import CrmConfigError
from crm_assets_tests.conftest import REPO


def test_missing_base_url_and_key_name_the_settings_to_change() -> None:
    api = CrmApiResource()
    with pytest.raises(CrmConfigError, match="CRM_API_BASE_URL"):
        api.resolved_base_url()
    with pytest.raises(CrmConfigError, match="CRM_API_KEY"):
        api.resolved_api_key()


def test_key_falls_back_to_dlt_secrets_toml(tmp_path: Path) -> None:
    (tmp_path / ".dlt").mkdir()
    (tmp_path / ".dlt" / "secrets.toml").write_text('[sources.crm]\napi_key = "from-toml"\n')
    (tmp_path / ".dlt" / "config.toml").write_text(
        '[sources.crm]\nbase_url = "http://127.0.0.1:9"\n'
    )
    probe = (
        "from crm_assets.defs.crm.resources import CrmApiResource\n"
        "api = CrmApiResource()\n"
        "print(api.resolved_base_url(), api.resolved_api_key() == 'from-toml')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["http://127.0.0.1:9", "True"]


def test_explicit_config_wins_over_dlt_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCES__CRM__API_KEY", "from-dlt-env")
    assert CrmApiResource().resolved_api_key() == "from-dlt-env"
    assert CrmApiResource(api_key="explicit").resolved_api_key() == "explicit"
