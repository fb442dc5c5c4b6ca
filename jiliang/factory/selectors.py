"""Reads for factory verification (二检合一), always through the restricted querysets; the public list of
authorizations is the one read without a principal (泰安方案: 授权结果公示)."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from jiliang.core.errors import NotFound
from jiliang.engine import factory as rules
from jiliang.engine.sampling import acceptance_probability
from jiliang.factory.models import (
    Authorization,
    BatchPointStat,
    DeliveryLot,
    FactoryUnit,
    PenaltyStep,
    Recall,
    Sampling,
)

PUBLIC_STATUSES = ("granted", "suspended", "revoked")


def public_authorizations(today: dt.date | None = None) -> list[dict[str, Any]]:
    """The public list: every decided authorization with name, scope, validity, status (an expired one
    shows ``expired``), and the published penalty steps (suspension, revocation, stopped sales)."""
    today = today or timezone.localdate()
    out = []
    qs = (Authorization.objects.filter(status__in=PUBLIC_STATUSES).select_related("manufacturer")
          .order_by("manufacturer__name", "id"))
    for a in qs:
        status = rules.effective_status(rules.AuthState(a.status, a.valid_from, a.valid_until), today)
        out.append({
            "id": a.pk, "number": a.number, "manufacturer": a.manufacturer.name, "uscc": a.manufacturer.uscc,
            "scope": [rules.ScopeItem(str(s["instrument_type"]), int(s["dn_min"]), int(s["dn_max"])).label()
                      for s in a.scope],
            "valid_from": a.valid_from, "valid_until": a.valid_until, "status": status,
            "penalty_stage": a.penalty_stage, "failures": a.failures, "sales_stopped": bool(a.stopped_models),
            "reason": a.reason if a.published else "",
        })
    return out


def authorization_list(*, principal: Any) -> QuerySet[Authorization]:
    return Authorization.objects.restrict(principal, "view").select_related("manufacturer")


def authorization_get(*, principal: Any, pk: int) -> Authorization:
    a = authorization_list(principal=principal).filter(pk=pk).first()
    if a is None:
        raise NotFound(f"authorization {pk} not found")
    return a


def penalty_steps(a: Authorization) -> list[PenaltyStep]:
    return list(a.penalty_steps.order_by("id"))


def unit_list(*, principal: Any) -> QuerySet[FactoryUnit]:
    return FactoryUnit.objects.restrict(principal, "view").order_by("-id")


def lot_list(*, principal: Any) -> QuerySet[DeliveryLot]:
    return DeliveryLot.objects.restrict(principal, "view").select_related("manufacturer", "utility", "model")


def lot_get(*, principal: Any, pk: int) -> DeliveryLot:
    lot = lot_list(principal=principal).filter(pk=pk).first()
    if lot is None:
        raise NotFound(f"lot {pk} not found")
    return lot


def sampling_list(*, principal: Any) -> QuerySet[Sampling]:
    return Sampling.objects.restrict(principal, "view").select_related("lot", "manufacturer")


def sampling_get(*, principal: Any, pk: int) -> Sampling:
    s = sampling_list(principal=principal).filter(pk=pk).first()
    if s is None:
        raise NotFound(f"sampling {pk} not found")
    return s


def recall_list(*, principal: Any) -> QuerySet[Recall]:
    return Recall.objects.restrict(principal, "view").select_related("manufacturer", "model")


# -------------------------------------------------------------------------------------------- statistics

@dataclass
class BatchRow:
    manufacturer_id: int
    manufacturer: str
    model_id: int
    model: str
    batch: str
    point: str
    first_date: dt.date
    mpe: float
    test: rules.BatchTest


def batch_stats(*, principal: Any, manufacturer_id: int | None = None, model_id: int | None = None
                ) -> list[BatchRow]:
    """Per model, batch and flow point: n, mean error, standard deviation and the t-test of "mean = 0"."""
    qs = BatchPointStat.objects.restrict(principal, "view").select_related("manufacturer", "model")
    if manufacturer_id is not None:
        qs = qs.filter(manufacturer_id=manufacturer_id)
    if model_id is not None:
        qs = qs.filter(model_id=model_id)
    out = []
    for s in qs.order_by("manufacturer_id", "model_id", "first_date", "batch", "point"):
        t = rules.batch_test(rules.Moments(s.n, s.mean, s.m2), s.mpe)
        out.append(BatchRow(s.manufacturer_id, s.manufacturer.name, s.model_id, s.model.name, s.batch, s.point,
                            s.first_date, s.mpe, t))
    return out


def drifting_manufacturers(rows: list[BatchRow], min_batches: int = 2) -> dict[int, list[str]]:
    """Manufacturers flagged for drift: at least ``min_batches`` batches whose mean error at some point is
    significantly non-zero and a sizeable share of the MPE.  Value: "model batch point" of each such batch."""
    hits: dict[int, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r.test.drifting:
            hits[r.manufacturer_id][f"{r.model} {r.batch}"].append(r.point)
    return {mid: [f"{b} {'/'.join(pts)}" for b, pts in batches.items()]
            for mid, batches in sorted(hits.items()) if len(batches) >= min_batches}


def chart_data(rows: list[BatchRow]) -> dict[str, Any]:
    """ECharts data: per (model, point) the batch means over time with the ±MPE band."""
    series: dict[str, dict[str, Any]] = {}
    for r in rows:
        key = f"{r.manufacturer} {r.model} {r.point}"
        s = series.setdefault(key, {"name": key, "mpe": r.mpe, "data": []})
        s["data"].append([r.first_date.isoformat(), round(r.test.mean, 4), r.batch, r.test.n,
                          round(r.test.std, 4), None if r.test.p_value != r.test.p_value else round(r.test.p_value, 6)])
    mpe = max((s["mpe"] for s in series.values()), default=0.0)
    return {"series": list(series.values()), "mpe": mpe}


def oc_curve(n: int, ac: int, lot_size: int | None = None, points: int = 41) -> dict[str, Any]:
    """The operating characteristic (抽检特性曲线): P(accept) against the defect rate, for the GB/T 2828.1
    plan's Ac and for the pilot's rule that one failing unit returns the lot (Ac = 0)."""
    top = min(1.0, max(0.05, 8.0 / max(n, 1)))
    rates = [top * k / (points - 1) for k in range(points)]
    return {
        "n": n, "ac": ac,
        "plan": [[round(p * 100, 3), round(acceptance_probability(n, ac, p), 5)] for p in rates],
        "zero": [[round(p * 100, 3), round(acceptance_probability(n, 0, p), 5)] for p in rates],
    }
