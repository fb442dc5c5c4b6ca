"""Reads for factory verification (二检合一), always through the restricted querysets; the public list of
authorizations is the one read without a principal (泰安方案: 授权结果公示)."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from jiliang.accounts.roles import Role, Scope
from jiliang.core.errors import NotFound
from jiliang.engine import factory as rules
from jiliang.engine.sampling import acceptance_probability
from jiliang.factory import policy
from jiliang.factory.models import (
    Authorization,
    BatchPointStat,
    DeliveryLot,
    FactoryUnit,
    LotStatus,
    PenaltyStep,
    Recall,
    Sampling,
)
from jiliang.registry.models import InstrumentModel, InstrumentType, Place

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


def authorization_list(*, principal: Any, status: str = "", manufacturer_id: int | None = None
                       ) -> QuerySet[Authorization]:
    qs = Authorization.objects.restrict(principal, "view").select_related("manufacturer")
    if status:
        qs = qs.filter(status=status)
    if manufacturer_id is not None:
        qs = qs.filter(manufacturer_id=manufacturer_id)
    return qs


def authorization_makers(*, principal: Any) -> list[tuple[int, str]]:
    """The manufacturers of the authorizations the person may see (the filter's choices)."""
    rows = (Authorization.objects.restrict(principal, "view").order_by("manufacturer__name")
            .values_list("manufacturer_id", "manufacturer__name").distinct())
    return [(int(pk), str(name)) for pk, name in rows]


def instrument_type_choices() -> list[tuple[str, str]]:
    """The catalogue (public reference data) as (key, 中文名称) for the scope rows."""
    return [(str(k), f"{n}（{k}）") for k, n in InstrumentType.objects.order_by("key").values_list("key", "name_zh")]


def may_apply(*, principal: Any) -> int | None:
    """The manufacturer a signed-in person may apply for (its own organisation), else None."""
    sc = Scope.of(principal)
    if sc.role == Role.MANUFACTURER and sc.org_id is not None and policy.is_manufacturer(sc, sc.org_id):
        return sc.org_id
    return None


def authorization_actions(*, principal: Any, a: Authorization, today: dt.date | None = None) -> list[str]:
    """The lifecycle events this person may take on ``a`` today: allowed by the state machine
    (:func:`jiliang.engine.factory.apply_authorization`) and by the policy (who decides what)."""
    sc = Scope.of(principal)
    today = today or timezone.localdate()
    state = rules.AuthState(a.status, a.valid_from, a.valid_until, a.renewal_requested, a.published)
    out = []
    for event in rules.AUTH_EVENTS:
        if event in rules.MANUFACTURER_EVENTS:
            allowed = policy.is_manufacturer(sc, a.manufacturer_id)
        else:
            allowed = policy.may_regulate(sc, region_code=a.manufacturer.region_id)
        if not allowed:
            continue
        try:
            rules.apply_authorization(state, event, today=today)
        except rules.TransitionError:
            continue
        out.append(event)
    return out


def may_record_rectification(*, principal: Any, a: Authorization) -> bool:
    """The regulator's verdict on an ordered rectification: only while one is ordered (整改中)."""
    return a.penalty_stage == "rectifying" and policy.may_regulate(Scope.of(principal),
                                                                   region_code=a.manufacturer.region_id)


def authorization_get(*, principal: Any, pk: int) -> Authorization:
    a = authorization_list(principal=principal).filter(pk=pk).first()
    if a is None:
        raise NotFound(f"authorization {pk} not found")
    return a


def penalty_steps(a: Authorization) -> list[PenaltyStep]:
    return list(a.penalty_steps.order_by("id"))


def unit_list(*, principal: Any) -> QuerySet[FactoryUnit]:
    return FactoryUnit.objects.restrict(principal, "view").order_by("-id")


def lot_list(*, principal: Any, status: str = "") -> QuerySet[DeliveryLot]:
    qs = DeliveryLot.objects.restrict(principal, "view").select_related("manufacturer", "utility", "model")
    return qs.filter(status=status) if status else qs


def lot_units(*, principal: Any, lot: DeliveryLot) -> QuerySet[FactoryUnit]:
    return FactoryUnit.objects.restrict(principal, "view").filter(lot=lot).order_by("serial")


def lot_actions(*, principal: Any, lot: DeliveryLot) -> set[str]:
    """What this person may do with the lot now: ``accept``/``reject`` (the receiving utility, while it is
    delivered or passed sampling), ``sample`` (the manufacturer's regulator, while it is delivered),
    ``install`` (the utility, once accepted)."""
    sc = Scope.of(principal)
    out: set[str] = set()
    if policy.is_utility(sc, lot.utility_id):
        if lot.status in (LotStatus.DELIVERED, LotStatus.PASSED):
            out |= {"accept", "reject"}
        if lot.status == LotStatus.ACCEPTED:
            out.add("install")
    if lot.status == LotStatus.DELIVERED and policy.may_regulate(sc, region_code=lot.manufacturer.region_id):
        out.add("sample")
    return out


def install_makers(*, principal: Any) -> list[tuple[int, str]]:
    """Manufacturers that delivered lots the person may see (the install form's choices)."""
    rows = (DeliveryLot.objects.restrict(principal, "view").order_by("manufacturer__name")
            .values_list("manufacturer_id", "manufacturer__name").distinct())
    return [(int(pk), str(name)) for pk, name in rows]


def install_places(*, principal: Any) -> list[tuple[str, str]]:
    """Places operated by the person's utility (the install form's choices)."""
    sc = Scope.of(principal)
    if sc.org_id is None:
        return []
    return [(str(k), f"{n}（{k}）") for k, n in
            Place.objects.filter(operator_id=sc.org_id).order_by("key").values_list("key", "name")]


def may_install(*, principal: Any) -> bool:
    sc = Scope.of(principal)
    return sc.is_admin or (sc.role == Role.UTILITY and sc.org_id is not None)


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


def may_record_sampling(*, principal: Any, s: Sampling) -> bool:
    return s.outcome == Sampling.Outcome.OPEN and policy.may_regulate(Scope.of(principal),
                                                                      region_code=s.manufacturer.region_id)


def sampling_penalty(s: Sampling) -> list[PenaltyStep]:
    """The penalty-ladder steps this sampling caused (none when it passed)."""
    return list(PenaltyStep.objects.filter(sampling=s).order_by("id"))


def sampling_point_labels(s: Sampling) -> dict[str, list[str]]:
    """Per drawn serial, the test-point labels of its factory verification (to prompt the sampled results)."""
    from jiliang.factory.upload import points_from_text

    units = FactoryUnit.objects.filter(lot_id=s.lot_id, serial__in=s.selected).values_list("serial", "points")
    return {serial: [str(p.get("point", "")) for p in points_from_text(text)] for serial, text in units}


def recall_list(*, principal: Any) -> QuerySet[Recall]:
    return Recall.objects.restrict(principal, "view").select_related("manufacturer", "model")


def recall_get(*, principal: Any, pk: int) -> Recall:
    r = recall_list(principal=principal).filter(pk=pk).first()
    if r is None:
        raise NotFound(f"recall {pk} not found")
    return r


def recall_units(*, recall: Recall) -> QuerySet[FactoryUnit]:
    """The units of a recall (the recall itself was read through the restricted queryset)."""
    return FactoryUnit.objects.filter(recall=recall).order_by("status", "serial")


def replacement_serials(units: list[FactoryUnit]) -> dict[int, str]:
    ids = [u.replaced_by_id for u in units if u.replaced_by_id]
    return dict(FactoryUnit.objects.filter(pk__in=ids).values_list("id", "serial")) if ids else {}


def may_replace(*, principal: Any, recall: Recall) -> bool:
    return policy.is_manufacturer(Scope.of(principal), recall.manufacturer_id) and recall.replaced < recall.units


def recall_models(*, principal: Any) -> list[tuple[int, str]]:
    """Models whose batches the person may recall: its own (a manufacturer), or those of the manufacturers
    it regulates (the authorizations it may change)."""
    sc = Scope.of(principal)
    if sc.role == Role.MANUFACTURER and sc.org_id is not None:
        makers = InstrumentModel.objects.filter(maker_id=sc.org_id)
    elif sc.is_admin or sc.role == Role.REGULATOR:
        ids = Authorization.objects.restrict(principal, "change").values_list("manufacturer_id", flat=True)
        makers = InstrumentModel.objects.filter(maker_id__in=ids)
    else:
        return []
    return [(m.pk, f"{m.maker.name} {m.name}") for m in makers.select_related("maker").order_by("maker__name", "name")]


def model_maker(model_id: int) -> int:
    """The manufacturer of a catalogue model (the recall form names the model; the service checks who may)."""
    maker = InstrumentModel.objects.filter(pk=model_id).values_list("maker_id", flat=True).first()
    if maker is None:
        raise NotFound(f"model {model_id} not found")
    return int(maker)


def recall_batches(*, principal: Any) -> list[str]:
    """Batch numbers the person may see (suggestions for the recall form)."""
    return list(BatchPointStat.objects.restrict(principal, "view").order_by("batch").values_list("batch", flat=True)
                .distinct()[:200])


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
