"""Running the detectors over stored telemetry and keeping alerts (``jiliang detect``).

Each detector reads its telemetry table past its high-water mark in chunks, gets the rows as NumPy
columns sorted by device and time (plus registry columns it needs), and runs; its findings open or update
alerts (one open alert per device and detector), and its cursor and state advance in the same
transaction, so a crash never skips or double-counts a chunk.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from django.db import transaction
from django.utils import timezone

from jiliang.core.changelog import log_change
from jiliang.core.errors import JiliangError, NotFound, PermissionDenied
from jiliang.engine.detectors import REGISTRY, Detector, Finding
from jiliang.monitoring.models import (
    Alert,
    ChargerSession,
    DetectorConfig,
    DetectorCursor,
    MeterReading,
    ScaleEvent,
    ScaleRecheck,
    ScaleTxn,
)
from jiliang.registry.models import Instrument
from jiliang.verification.models import Verification

SOURCES: dict[str, tuple[Any, tuple[str, ...], str]] = {
    # kind: (model, columns, time column used for ordering)
    "scale.txn": (ScaleTxn, ("id", "device_id", "ts", "seq", "net_g", "tare_g", "unit_price_fen_per_kg",
                             "amount_fen"), "ts"),
    "scale.event": (ScaleEvent, ("id", "device_id", "ts", "seq", "event", "sw_id", "sw_hash"), "ts"),
    "scale.recheck": (ScaleRecheck, ("id", "device_id", "ts", "claimed_g", "actual_g"), "ts"),
    "meter.reading": (MeterReading, ("id", "device_id", "ts", "seq", "register_milli", "flags"), "ts"),
    "charger.session": (ChargerSession, ("id", "device_id", "start_ts", "seq", "meter_start_wh", "meter_end_wh",
                                         "energy_wh", "ocmf"), "start_ts"),
}
CHUNK = 500_000
SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}


@dataclass
class DetectorReport:
    key: str
    rows: int = 0
    findings: int = 0
    opened: int = 0
    updated: int = 0


@dataclass
class RunReport:
    detectors: list[DetectorReport] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(d.rows for d in self.detectors)


def _epoch(values: list[Any]) -> npt.NDArray[np.float64]:
    return np.array([v.timestamp() for v in values], dtype=np.float64)


def _columns(kind: str, rows: list[tuple[Any, ...]]) -> dict[str, npt.NDArray[Any]]:
    _model, cols, tcol = SOURCES[kind]
    out: dict[str, npt.NDArray[Any]] = {}
    for j, c in enumerate(cols):
        values = [r[j] for r in rows]
        name = "device" if c == "device_id" else ("ts" if c == tcol else c)
        if isinstance(values[0], dt.datetime):
            out[name] = _epoch(values)
        elif isinstance(values[0], str):
            out[name] = np.array(values, dtype=object)
        else:
            out[name] = np.array(values, dtype=np.int64)
    order = np.lexsort((out["ts"], out["device"]))
    return {k: v[order] for k, v in out.items()}


# Registry data some detectors need beside the telemetry, as extra columns.
def _filed_hash(batch: dict[str, npt.NDArray[Any]]) -> None:
    filed = dict(Instrument.objects.filter(pk__in=np.unique(batch["device"]).tolist()).values_list("id", "sw_hash"))
    batch["filed_sw_hash"] = np.array([filed.get(int(d), "") for d in batch["device"]], dtype=object)


def _verification_distance(batch: dict[str, npt.NDArray[Any]]) -> None:
    days: dict[int, list[float]] = defaultdict(list)
    for dev, date in Verification.objects.filter(instrument_id__in=np.unique(batch["device"]).tolist()).values_list(
            "instrument_id", "date"):
        days[dev].append(dt.datetime.combine(date, dt.time(12), tzinfo=dt.UTC).timestamp() / 86400)
    out = np.full(batch["device"].size, np.inf)
    for i, (d, t) in enumerate(zip(batch["device"], batch["ts"], strict=True)):
        vs = days.get(int(d))
        if vs:
            out[i] = min(abs(t / 86400 - v) for v in vs)
    batch["days_from_verification"] = out


def _place(batch: dict[str, npt.NDArray[Any]]) -> None:
    places = dict(Instrument.objects.filter(pk__in=np.unique(batch["device"]).tolist()).values_list("id", "place_id"))
    batch["place"] = np.array([places.get(int(d)) or -int(d) for d in batch["device"]], dtype=np.int64)


DEFAULT_CAPACITY_MILLI_PER_H = {"water_meter": 3125.0, "gas_meter": 6000.0, "electricity_meter": 13800.0}


def _capacity(batch: dict[str, npt.NDArray[Any]]) -> None:
    """Water: Q4 = 1.25 Q3 (m³/h → L/h); gas: qmax; electricity: Imax × 230 V (Wh/h)."""
    caps: dict[int, float] = {}
    for pk, itype, params in Instrument.objects.filter(pk__in=np.unique(batch["device"]).tolist()).values_list(
            "id", "instrument_type_id", "params"):
        p = params or {}
        if itype == "water_meter" and p.get("Q3_m3h"):
            caps[pk] = 1.25 * float(p["Q3_m3h"]) * 1000
        elif itype == "gas_meter" and p.get("qmax_m3h"):
            caps[pk] = float(p["qmax_m3h"]) * 1000
        elif itype == "electricity_meter" and p.get("Imax_a"):
            caps[pk] = float(p["Imax_a"]) * 230
        else:
            caps[pk] = DEFAULT_CAPACITY_MILLI_PER_H.get(itype, 13800.0)
    batch["max_rate_milli_per_h"] = np.array([caps.get(int(d), 13800.0) for d in batch["device"]])


def _public_key(batch: dict[str, npt.NDArray[Any]]) -> None:
    keys = dict(Instrument.objects.filter(pk__in=np.unique(batch["device"]).tolist())
                .values_list("id", "public_key_hex"))
    batch["public_key"] = np.array([keys.get(int(d), "") for d in batch["device"]], dtype=object)


EXTRAS: dict[str, Callable[[dict[str, npt.NDArray[Any]]], None]] = {
    "charger.ocmf_signature": _public_key,
    "scale.software_checksum": _filed_hash,
    "scale.unauthorized_event": _verification_distance,
    "meter.stuck_register": _place,
    "meter.implausible_jump": _capacity,
}


def _upsert_alerts(key: str, findings: list[Finding], report: DetectorReport) -> None:
    if not findings:
        return
    now = timezone.now()
    devices = {f.device for f in findings}
    open_alerts = {a.device_id: a for a in Alert.objects.filter(detector=key, status__in=Alert.OPEN,
                                                                device_id__in=devices)}
    info = {pk: (owner, region) for pk, owner, region in
            Instrument.objects.filter(pk__in=devices).values_list("id", "owner_id", "region_id")}
    for f in findings:
        a = open_alerts.get(f.device)
        if a is None:
            owner, region = info[f.device]
            Alert.objects.create(detector=key, device_id=f.device, owner_id=owner, region_id=region,
                                 severity=f.severity, opened_at=now, updated_at=now, evidence=f.evidence)
            report.opened += 1
        else:
            if SEVERITY_RANK[f.severity] > SEVERITY_RANK[a.severity]:
                a.severity = f.severity
            a.evidence, a.updated_at, a.occurrences = f.evidence, now, a.occurrences + 1
            a.save(update_fields=["severity", "evidence", "updated_at", "occurrences"])
            report.updated += 1


def enabled_detectors() -> list[Detector]:
    configs = {c.key: c for c in DetectorConfig.objects.all()}
    out = []
    for key, cls in REGISTRY.items():
        c = configs.get(key)
        if c is None or c.enabled:
            out.append(cls(**(c.params if c else {})))
    return out


def run_detectors(*, keys: list[str] | None = None, chunk: int = CHUNK) -> RunReport:
    report = RunReport()
    for det in enabled_detectors():
        if keys and det.key not in keys:
            continue
        model, cols, _t = SOURCES[det.kind]
        rep = DetectorReport(det.key)
        while True:
            with transaction.atomic():
                cursor, _ = DetectorCursor.objects.select_for_update().get_or_create(key=det.key)
                rows = list(model.objects.filter(id__gt=cursor.last_id).order_by("id").values_list(*cols)[:chunk])
                if not rows:
                    break
                batch = _columns(det.kind, rows)
                if det.key in EXTRAS:
                    EXTRAS[det.key](batch)
                findings, state = det.run(batch, cursor.state)
                _upsert_alerts(det.key, findings, rep)
                cursor.last_id = max(r[0] for r in rows)
                cursor.state = state
                cursor.save()
                rep.rows += len(rows)
                rep.findings += len(findings)
            if len(rows) < chunk:
                break
        report.detectors.append(rep)
    return report


TRANSITIONS = {"new": {"triaged", "confirmed", "dismissed"}, "triaged": {"confirmed", "dismissed"},
               "confirmed": set(), "dismissed": set()}


@transaction.atomic
def alert_decide(*, actor: Any, alert_id: int, status: str, reason: str = "") -> Alert:
    """Move an alert along new → triaged → confirmed / dismissed; dismissing needs a reason."""
    if not Alert.objects.restrict(actor, "view").filter(pk=alert_id).exists():
        raise NotFound(f"alert {alert_id} not found")
    if not Alert.objects.restrict(actor, "change").filter(pk=alert_id).exists():
        raise PermissionDenied("you may not decide this alert")
    a = Alert.objects.select_for_update().get(pk=alert_id)
    if status not in TRANSITIONS.get(a.status, set()):
        raise JiliangError(f"an alert cannot go from {a.status} to {status}", code="validation_failed")
    if status == "dismissed" and not reason.strip():
        raise JiliangError("dismissing an alert needs a reason", code="validation_failed")
    from jiliang.core.changelog import snapshot

    before = snapshot(a)
    a.status, a.decision_reason = status, reason.strip()
    a.decided_by = str(getattr(actor, "username", actor))[:150]
    a.updated_at = timezone.now()
    a.save(update_fields=["status", "decision_reason", "decided_by", "updated_at"])
    log_change(actor=actor, obj=a, action="update", before=before)
    if status == "confirmed":  # a confirmed alert enters the owner's credit file (C4 feeds C6)
        from jiliang.supervision.services import credit_event_record

        credit_event_record(actor=actor, entity_id=a.owner_id, kind="alert_confirmed",
                            occurred_on=timezone.localdate(), source=f"alert:{a.pk}", note=a.detector)
    return a


def alerts_as_json(qs: Any) -> list[dict[str, Any]]:
    """SPEC 3.7: id, device (device_id), detector, severity, status, opened_at, evidence, and more."""
    return [{"id": a.id, "device": a.device.device_id, "detector": a.detector, "severity": a.severity,
             "status": a.status, "opened_at": a.opened_at.isoformat(), "updated_at": a.updated_at.isoformat(),
             "occurrences": a.occurrences, "owner": a.owner.name, "region": a.region_id, "evidence": a.evidence}
            for a in qs.select_related("device", "owner")]
