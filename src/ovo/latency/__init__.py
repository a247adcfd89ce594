"""Latency lookup tables of a space's building blocks on one device (:mod:`ovo.latency.table`),
timed in a runtime (:mod:`ovo.latency.runtime`) under :class:`Conditions`
(:mod:`ovo.latency.timing`). ``python -m ovo.latency`` is :mod:`ovo.commands.latency`."""

from ovo.latency.table import (
    LatencyTable,
    load_table,
    measure_model_ms,
    measure_models_ms,
    measure_table,
    same_machine,
)
from ovo.latency.timing import DTYPES, Conditions, TableConditions, device_name

__all__ = [
    "DTYPES",
    "Conditions",
    "LatencyTable",
    "TableConditions",
    "device_name",
    "load_table",
    "measure_model_ms",
    "measure_models_ms",
    "measure_table",
    "same_machine",
]
