"""Where the source's connection settings come from: explicit values, else dlt's config files."""

from __future__ import annotations

import dlt

from crm_assets.source.contract import SOURCE_NAME


class CrmConfigError(ValueError):
    """Configuration that cannot work; says which setting to change."""


def resolve_base_url(explicit: str | None) -> str:
    """`explicit`, else `sources.crm.base_url` from dlt's config (`.dlt/config.toml`, env)."""
    url = explicit or dlt.config.get(f"sources.{SOURCE_NAME}.base_url", str)
    if not url:
        raise CrmConfigError(
            "CRM API base URL is not set: set CRM_API_BASE_URL or"
            f" sources.{SOURCE_NAME}.base_url in .dlt/config.toml"
        )
    return url


def resolve_api_key(explicit: str | None) -> str:
    """`explicit`, else `sources.crm.api_key` from dlt's secrets (`.dlt/secrets.toml`, env)."""
    key = explicit or dlt.secrets.get(f"sources.{SOURCE_NAME}.api_key", str)
    if not key:
        raise CrmConfigError(
            f"CRM API key is not set: set CRM_API_KEY or sources.{SOURCE_NAME}.api_key"
            " in .dlt/secrets.toml"
        )
    return key
