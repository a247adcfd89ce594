"""Latency lookup tables of a space's building blocks on one device (:mod:`ovo.latency.table`).
``python -m ovo.latency`` is :mod:`ovo.commands.latency`."""

from ovo.latency.table import (
    DTYPES,
    Conditions,
    LatencyTable,
    conditions_of,
    device_name,
    load_table,
    measure_model_ms,
    measure_models_ms,
    measure_table,
    same_machine,
)

__all__ = [
    "DTYPES",
    "Conditions",
    "LatencyTable",
    "conditions_of",
    "device_name",
    "load_table",
    "measure_model_ms",
    "measure_models_ms",
    "measure_table",
    "same_machine",
]
