"""A real HTTP CRM API shipped with the project, so everything runs with no external account."""

from crm_sandbox.data import SANDBOX_RESOURCES, CrmStore
from crm_sandbox.faults import FaultPlan, FaultSettings
from crm_sandbox.server import DEFAULT_SANDBOX_KEY, SandboxServer

__all__ = [
    "DEFAULT_SANDBOX_KEY",
    "SANDBOX_RESOURCES",
    "CrmStore",
    "FaultPlan",
    "FaultSettings",
    "SandboxServer",
]
