"""The base of our subclasses of dlt's destination factories (dlt's way to specialise one).

Such a factory is still dlt's own destination to the pipeline's state, its config sections and
Dagster's metadata, and it resolves once the configuration its capabilities follow. dlt's
`Destination.capabilities()`, asked without a configuration, resolves one from the config
providers (every field, in every section) on every call: a pipeline asks some 25 times per
`run` and again for each SQL client, a fifth of a small sync's CPU here (measured with py-spy).
Within one factory instance the answer cannot change: it depends on the factory's arguments and
the providers, and `WarehouseResource.dlt_pipeline` builds a factory per pipeline. The job
clients' full configuration (credentials included) is still resolved for each client.
"""

from __future__ import annotations

from typing import Any

from dlt.common.destination.reference import DestinationReference


class ResolvedOnceFactory:
    """Mixed in before one of dlt's destination factory classes."""

    _capabilities_config: Any = None

    @property
    def destination_type(self) -> str:
        dlt_factory = next(
            c for c in type(self).__mro__ if c.__module__.startswith("dlt.destinations.")
        )
        return DestinationReference.normalize_type(dlt_factory.__name__)

    def configuration(self, initial_config: Any, accept_partial: bool = False) -> Any:
        # In dlt 1.31 only `capabilities()` asks for a partial configuration, built from this
        # factory's own arguments each time; the complete one is a job client's.
        if not accept_partial:
            return super().configuration(initial_config, accept_partial)  # type: ignore[misc]
        if self._capabilities_config is None:
            self._capabilities_config = super().configuration(  # type: ignore[misc]
                initial_config, accept_partial=True
            )
        return self._capabilities_config
