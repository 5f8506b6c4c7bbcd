"""The test run's isolation from the developer's shell."""

import os

from crm_assets_tests.conftest import shell_settings


def test_every_product_variable_is_cleared_but_the_test_runs_own() -> None:
    environ = {
        "CRM_SCHEMA_ENFORCEMENT": "strict",
        "CRM_SOMETHING_ADDED_LATER": "1",
        "SOURCES__CRM__API_KEY": "k",
        "DESTINATION__POSTGRES__CREDENTIALS": "postgresql://x",
        "CRM_TEST_POSTGRES_URL": "postgresql://y",
        "CRM_TEST_NO_SKIPS": "1",
        "PATH": "/usr/bin",
    }

    assert sorted(shell_settings(environ)) == [
        "CRM_SCHEMA_ENFORCEMENT",
        "CRM_SOMETHING_ADDED_LATER",
        "DESTINATION__POSTGRES__CREDENTIALS",
        "SOURCES__CRM__API_KEY",
    ]


def test_no_product_variable_reaches_a_test() -> None:
    assert shell_settings(os.environ) == []
