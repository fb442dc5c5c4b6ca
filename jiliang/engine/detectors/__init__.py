"""Detectors (检测规则): pure, vectorised over batches of telemetry, with per-device state kept between runs.

A detector is a small class with a stable registry ``key``, its parameters validated on construction
(``params_schema`` is the JSON Schema the database stores beside the parameters), and ``run(batch, state)``
that returns findings and the new state.  It never mutates its input and is deterministic.  The
registry ``REGISTRY`` maps keys to classes; ``docs`` in each class docstring has a runnable example.
"""

from __future__ import annotations

from jiliang.engine.detectors.base import Detector, DetectorParamsError, Finding
from jiliang.engine.detectors.chargers import ChargerOcmfSignature, ChargerRegisterContinuity
from jiliang.engine.detectors.meters import (
    MeterContinuousFlow,
    MeterImplausibleJump,
    MeterReverseFlow,
    MeterStuckRegister,
)
from jiliang.engine.detectors.scales import (
    ScaleAmountMismatch,
    ScaleRecheckShortfall,
    ScaleSoftwareChecksum,
    ScaleUnauthorizedEvent,
    ScaleZeroDrift,
)

REGISTRY: dict[str, type[Detector]] = {d.key: d for d in (
    ScaleAmountMismatch, ScaleRecheckShortfall, ScaleZeroDrift, ScaleSoftwareChecksum, ScaleUnauthorizedEvent,
    MeterReverseFlow, MeterStuckRegister, MeterImplausibleJump, MeterContinuousFlow, ChargerRegisterContinuity,
    ChargerOcmfSignature,
)}

__all__ = ["REGISTRY", "Detector", "DetectorParamsError", "Finding"]
