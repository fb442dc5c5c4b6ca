"""Writes for factory verification (二检合一): authorization lifecycle, delivery, acceptance and installation,
supervisory sampling with the penalty ladder, and recalls.  Keyword-only, atomic, change-logged; the rules
themselves are the pure state machines of :mod:`jiliang.engine.factory`.  The bulk upload of unit data is
:mod:`jiliang.factory.upload`.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Mapping
from typing import Any

from django.db import transaction
from django.utils import timezone

from jiliang.accounts.roles import Scope
from jiliang.core.changelog import log_change, snapshot
from jiliang.core.errors import JiliangError, NotFound, PermissionDenied, Problem
from jiliang.engine import factory as rules
from jiliang.engine import sampling as gb2828
from jiliang.engine.rules import RuleError, evaluate_many
from jiliang.factory import policy
from jiliang.factory.models import (
    Authorization,
    AuthStatus,
    DeliveryLot,
    FactoryUnit,
    LotStatus,
    PenaltyStep,
    Recall,
    Sampling,
    UnitStatus,
)
from jiliang.registry.choices import InstrumentStatus, OrgKind
from jiliang.registry.models import Instrument, InstrumentModel, InstrumentType, Organization, OrganizationKind, Place
from jiliang.verification.models import Verification, VerificationKind

DEFAULT_AQL = "1.0"
DEFAULT_LEVEL = "II"


def _invalid(message: str, fieldname: str | None = None, code: str = "validation_failed") -> JiliangError:
    return JiliangError(message, code=code, details=[Problem(row=None, field=fieldname, reason=message)])


def _authorization_for_change(actor: Any, authorization_id: int) -> Authorization:
    a = Authorization.objects.restrict(actor, "view").select_for_update().filter(pk=authorization_id).first()
    if a is None:
        raise NotFound(f"authorization {authorization_id} not found")
    return a


def _state(a: Authorization) -> rules.AuthState:
    return rules.AuthState(a.status, a.valid_from, a.valid_until, a.renewal_requested, a.published)


def _set_state(a: Authorization, s: rules.AuthState) -> None:
    a.status, a.valid_from, a.valid_until = s.status, s.valid_from, s.valid_until
    a.renewal_requested, a.published = s.renewal_requested, s.published


def _is_manufacturer_org(org_id: int) -> bool:
    return OrganizationKind.objects.filter(organization_id=org_id, kind=OrgKind.MANUFACTURER).exists()


# ------------------------------------------------------------------------------------------- authorization

@transaction.atomic
def authorization_apply(*, actor: Any, manufacturer_id: int, conditions: Mapping[str, Any],
                        registered_metrologists: int, scope: list[Any], today: dt.date | None = None
                        ) -> Authorization:
    """A manufacturer applies (申请) listing the conditions met and the scope it asks for."""
    sc = Scope.of(actor)
    if not policy.is_manufacturer(sc, manufacturer_id):
        raise PermissionDenied("only the manufacturer itself applies for its authorization")
    if not _is_manufacturer_org(manufacturer_id):
        raise _invalid("the organization is not a registered manufacturer", "manufacturer_id")
    problems = rules.check_application(conditions, registered_metrologists)
    _items, scope_problems = rules.parse_scope(scope, InstrumentType.objects.values_list("key", flat=True))
    problems += scope_problems
    if problems:
        raise JiliangError("the application is incomplete", code="validation_failed",
                           details=[Problem(row=None, field=f, reason=r) for f, r in problems])
    if Authorization.objects.filter(manufacturer_id=manufacturer_id,
                                    status__in=("applied", "assessing", "granted", "suspended")).exists():
        raise JiliangError("the manufacturer already has an open application or an authorization",
                           code="conflict", status=409)
    a = Authorization.objects.create(
        manufacturer_id=manufacturer_id, conditions={k: str(v) for k, v in conditions.items()},
        registered_metrologists=registered_metrologists, scope=scope, applied_on=today or timezone.localdate())
    log_change(actor=actor, obj=a, action="create")
    return a


@transaction.atomic
def authorization_transition(*, actor: Any, authorization_id: int, event: str, note: str = "",
                             today: dt.date | None = None) -> Authorization:
    """One step of the authorization lifecycle (:func:`jiliang.engine.factory.apply_authorization`):
    assess, grant, reject, apply_renewal (the manufacturer), renew, suspend, reinstate, revoke."""
    a = _authorization_for_change(actor, authorization_id)
    sc = Scope.of(actor)
    if event in rules.MANUFACTURER_EVENTS:
        if not policy.is_manufacturer(sc, a.manufacturer_id):
            raise PermissionDenied("only the manufacturer applies for renewal")
    elif not policy.may_regulate(sc, region_code=a.manufacturer.region_id):
        raise PermissionDenied("only the regulator of the manufacturer's region decides on authorizations")
    if event in ("reject", "suspend", "revoke") and len(note.strip()) < 2:
        raise JiliangError(f"{event}: a reason is required", code="validation_failed",
                           details=[Problem(row=None, field="note", reason="a reason is required")])
    today = today or timezone.localdate()
    try:
        new = rules.apply_authorization(_state(a), event, today=today)
    except rules.TransitionError as exc:
        raise JiliangError(str(exc), code="invalid_state", status=409) from exc
    before = snapshot(a)
    _set_state(a, new)
    if event == "grant" and not a.number:
        a.number = f"EJHY-{today.year}-{a.pk:05d}"  # 二检合一 certificate number
    if event in ("assess", "grant", "reject", "renew"):
        a.assessment_note = note[:500]
    if event in ("suspend", "revoke"):
        a.reason = note[:500] or a.reason
    if event == "reinstate":
        a.reason = ""
    a.save()
    log_change(actor=actor, obj=a, action="update", before=before)
    return a


# ------------------------------------------------------------------------------------- delivery, acceptance

@transaction.atomic
def lot_deliver(*, actor: Any, manufacturer_id: int, utility_id: int, lot_no: str, serials: list[str],
                delivered_on: dt.date | None = None) -> DeliveryLot:
    """Deliver verified units of one model to a utility (交付): the lot that may be sampled, then accepted."""
    sc = Scope.of(actor)
    if not policy.is_manufacturer(sc, manufacturer_id):
        raise PermissionDenied("only the manufacturer delivers its units")
    if not OrganizationKind.objects.filter(organization_id=utility_id, kind=OrgKind.UTILITY).exists():
        raise _invalid("the receiving organization is not a utility", "utility_id")
    if not lot_no.strip() or len(lot_no) > 64:
        raise _invalid("give a lot number of at most 64 characters", "lot_no")
    if not serials:
        raise _invalid("a lot needs at least one unit", "serials")
    if DeliveryLot.objects.filter(manufacturer_id=manufacturer_id, lot_no=lot_no).exists():
        raise _invalid("this lot number is already used", "lot_no")
    units = {u.serial: u for u in FactoryUnit.objects.filter(manufacturer_id=manufacturer_id, serial__in=serials)}
    problems = []
    for k, s in enumerate(serials):
        u = units.get(s)
        if u is None:
            problems.append(Problem(row=k + 1, field="serials", reason="no factory verification uploaded", value=s))
        elif not u.conforming:
            problems.append(Problem(row=k + 1, field="serials", reason="the unit failed factory verification", value=s))
        elif u.status != UnitStatus.IN_STOCK:
            problems.append(Problem(row=k + 1, field="serials", reason=f"the unit is {u.status}", value=s))
    model_ids = {u.model_id for u in units.values()}
    if len(model_ids) > 1:
        problems.append(Problem(row=None, field="serials", reason="a lot holds units of one model"))
    if problems:
        raise JiliangError("the lot cannot be delivered", code="validation_failed", details=problems)
    model_id = model_ids.pop()
    auth = Authorization.objects.filter(manufacturer_id=manufacturer_id).order_by("-id").first()
    if auth is not None and model_id in auth.stopped_models:
        raise _invalid("sales of this model are stopped during rectification (整改期间不得销售)", "serials")
    lot = DeliveryLot.objects.create(manufacturer_id=manufacturer_id, utility_id=utility_id, model_id=model_id,
                                     lot_no=lot_no, size=len(serials),
                                     delivered_on=delivered_on or timezone.localdate())
    FactoryUnit.objects.filter(pk__in=[u.pk for u in units.values()]).update(
        lot=lot, utility_id=utility_id, status=UnitStatus.DELIVERED)
    log_change(actor=actor, obj=lot, action="create")
    return lot


def _lot_for_change(actor: Any, lot_id: int) -> DeliveryLot:
    lot = DeliveryLot.objects.restrict(actor, "view").select_for_update().filter(pk=lot_id).first()
    if lot is None:
        raise NotFound(f"lot {lot_id} not found")
    return lot


@transaction.atomic
def lot_accept(*, actor: Any, lot_id: int) -> DeliveryLot:
    """The utility's acceptance (验收登记) of a delivered lot; not while it is being sampled or returned,
    nor while the model's sales are stopped."""
    lot = _lot_for_change(actor, lot_id)
    if not policy.is_utility(Scope.of(actor), lot.utility_id):
        raise PermissionDenied("only the receiving utility accepts a lot")
    if lot.status not in (LotStatus.DELIVERED, LotStatus.PASSED):
        raise JiliangError(f"the lot cannot be accepted: it is {lot.get_status_display()}", code="invalid_state",
                           status=409)
    auth = Authorization.objects.filter(manufacturer_id=lot.manufacturer_id).order_by("-id").first()
    if auth is not None and lot.model_id in auth.stopped_models:
        raise JiliangError("sales of this model are stopped during rectification", code="invalid_state", status=409)
    before = snapshot(lot)
    lot.status = LotStatus.ACCEPTED
    lot.save(update_fields=["status"])
    FactoryUnit.objects.filter(lot=lot, status=UnitStatus.DELIVERED).update(status=UnitStatus.ACCEPTED)
    log_change(actor=actor, obj=lot, action="update", before=before)
    return lot


@transaction.atomic
def lot_reject(*, actor: Any, lot_id: int, reason: str) -> DeliveryLot:
    """The receiving utility refuses a delivered lot (拒收) with its reason: the lot and its units go back to
    the manufacturer (整批退回).  Only what could have been accepted can be refused."""
    lot = _lot_for_change(actor, lot_id)
    if not policy.is_utility(Scope.of(actor), lot.utility_id):
        raise PermissionDenied("only the receiving utility refuses a lot")
    if not reason.strip():
        raise _invalid("give the reason for refusing the lot", "reason")
    if lot.status not in (LotStatus.DELIVERED, LotStatus.PASSED):
        raise JiliangError(f"the lot cannot be refused: it is {lot.get_status_display()}", code="invalid_state",
                           status=409)
    before = snapshot(lot)
    lot.status, lot.rejection_reason = LotStatus.RETURNED, reason.strip()[:300]
    lot.save(update_fields=["status", "rejection_reason"])
    FactoryUnit.objects.filter(lot=lot, status=UnitStatus.DELIVERED).update(status=UnitStatus.RETURNED)
    log_change(actor=actor, obj=lot, action="update", before=before)
    return lot


@transaction.atomic
def unit_install(*, actor: Any, manufacturer_id: int, serial: str, install_date: dt.date, reading: float,
                 address: str = "", place_key: str = "") -> FactoryUnit:
    """Register a unit's installation (安装登记): it becomes a registry instrument with its factory
    verification as its first verification.  Refused unless the unit passed factory verification and the
    utility accepted it."""
    sc = Scope.of(actor)
    u = FactoryUnit.objects.select_for_update().filter(manufacturer_id=manufacturer_id, serial=serial).first()
    if u is None:
        raise _invalid(f"serial {serial}: no factory verification has been uploaded for this unit, so it cannot be "
                       "registered as installed (二检合一: only verified units may be installed)", "serial")
    if not policy.is_utility(sc, u.utility_id):
        if u.utility_id is None and sc.role == "utility":
            raise _invalid(f"serial {serial}: the unit has not been delivered to you", "serial")
        raise NotFound(f"unit {serial} not found")
    if not u.conforming:
        raise _invalid(f"serial {serial}: the unit failed factory verification and cannot be installed", "serial")
    if u.status != UnitStatus.ACCEPTED:
        raise _invalid(f"serial {serial}: the unit is {u.get_status_display()}, not accepted; accept its lot first",
                       "serial")
    if install_date < u.verification_date or install_date > timezone.localdate():
        raise _invalid("the installation date must lie between the verification date and today", "install_date")
    if u.valid_until is not None and install_date > u.valid_until:
        raise _invalid("the factory verification has expired", "install_date")
    if reading < 0:
        raise _invalid("the reading cannot be negative", "reading")
    place = None
    if place_key:
        place = Place.objects.filter(key=place_key, operator_id=u.utility_id).first()
        if place is None:
            raise _invalid("no place with this key is operated by the utility", "place_key")
    if not place and not address.strip():
        raise _invalid("give the installation address or a place", "address")
    assert u.utility_id is not None  # is_utility above needs a receiving utility (or an administrator)
    utility = Organization.objects.get(pk=u.utility_id)
    model = InstrumentModel.objects.get(pk=u.model_id)
    inst = Instrument(device_id=f"FV{u.manufacturer_id}-{u.serial}"[:64], serial=u.serial, model=model,
                      instrument_type_id=u.instrument_type, maker_id=u.manufacturer_id, owner=utility, place=place,
                      region_id=place.region_id if place else utility.region_id, status=InstrumentStatus.INSTALLED,
                      accuracy_class=u.accuracy_class, params={**(model.params or {}), "DN_mm": u.size_dn},
                      install_date=install_date, last_verified_on=u.verification_date,
                      last_verification_conforming=True, valid_until=u.valid_until)
    inst.full_clean()
    inst.save()
    log_change(actor=actor, obj=inst, action="create")
    from jiliang.factory.upload import points_from_text

    points = points_from_text(u.points)
    req = {"instrument_type": u.instrument_type, "accuracy_class": u.accuracy_class or None,
           "params": model.params or {}, "points": points}
    res = evaluate_many([req])[0]
    v = Verification.objects.create(instrument=inst, kind=VerificationKind.FACTORY, date=u.verification_date,
                                    institution_id=u.manufacturer_id, points=points,
                                    results=[] if isinstance(res, RuleError) else res["points"],
                                    conforming=True, valid_until=u.valid_until)
    log_change(actor=actor, obj=v, action="create")
    before = snapshot(u)
    u.status, u.instrument, u.install_date, u.install_reading = UnitStatus.INSTALLED, inst, install_date, reading
    u.install_address = (address or (place.address if place else ""))[:300]
    u.save(update_fields=["status", "instrument", "install_date", "install_reading", "install_address"])
    log_change(actor=actor, obj=u, action="update", before=before)
    return u


# ------------------------------------------------------------------------------ sampling and penalty ladder

@transaction.atomic
def sampling_open(*, actor: Any, lot_id: int, aql: str = DEFAULT_AQL, level: str = DEFAULT_LEVEL,
                  seed: str | None = None) -> Sampling:
    """Pre-installation supervisory sampling (安装前监督抽样): the GB/T 2828.1 plan for the lot and a seeded,
    recorded draw of the serials to test."""
    lot = _lot_for_change(actor, lot_id)
    if not policy.may_regulate(Scope.of(actor), region_code=lot.manufacturer.region_id):
        raise PermissionDenied("only the regulator of the manufacturer's region orders supervisory sampling")
    if lot.status != LotStatus.DELIVERED:
        raise JiliangError(f"only a delivered lot can be sampled (it is {lot.get_status_display()})",
                           code="invalid_state", status=409)
    try:
        p = gb2828.plan(lot_size=max(lot.size, 2), aql=aql, level=level)
    except gb2828.SamplingError as exc:
        raise _invalid(str(exc), "aql") from exc
    seed = seed or secrets.token_hex(16)
    serials = list(FactoryUnit.objects.filter(lot=lot).values_list("serial", flat=True))
    chosen = rules.draw_serials(serials, p.n, seed)
    s = Sampling.objects.create(lot=lot, manufacturer_id=lot.manufacturer_id, aql=str(aql), level=level, n=len(chosen),
                                ac=p.ac, re=p.re, seed=seed, selected=chosen)
    before = snapshot(lot)
    lot.status = LotStatus.SAMPLING
    lot.save(update_fields=["status"])
    log_change(actor=actor, obj=s, action="create")
    log_change(actor=actor, obj=lot, action="update", before=before)
    return s


@transaction.atomic
def sampling_record(*, actor: Any, sampling_id: int, results: Mapping[str, list[Any]],
                    today: dt.date | None = None) -> Sampling:
    """Record the supervisory verification of every drawn unit (its test points, judged by the rule engine).
    One failing unit returns the whole lot and moves the manufacturer one step up the penalty ladder."""
    s = Sampling.objects.restrict(actor, "view").select_for_update().filter(pk=sampling_id).first()
    if s is None:
        raise NotFound(f"sampling {sampling_id} not found")
    lot = DeliveryLot.objects.select_for_update().get(pk=s.lot_id)
    if not policy.may_regulate(Scope.of(actor), region_code=lot.manufacturer.region_id):
        raise PermissionDenied("only the regulator of the manufacturer's region records sampling results")
    if s.outcome != Sampling.Outcome.OPEN:
        raise JiliangError("the results of this sampling are already recorded", code="invalid_state", status=409)
    problems = [Problem(row=None, field=f"results.{k}", reason="this serial was not drawn") for k in results
                if k not in s.selected]
    problems += [Problem(row=None, field=f"results.{k}", reason="no result for this drawn serial") for k in s.selected
                 if k not in results]
    if problems:
        raise JiliangError("the results must cover exactly the drawn serials", code="validation_failed",
                           details=problems)
    model = InstrumentModel.objects.get(pk=lot.model_id)
    reqs: list[Mapping[str, Any]] = [{"instrument_type": model.instrument_type_id,
                                      "accuracy_class": model.accuracy_class or None, "params": model.params or {},
                                      "points": results[k]} for k in s.selected]
    judged: dict[str, Any] = {}
    for k, res in zip(s.selected, evaluate_many(reqs), strict=True):
        if isinstance(res, RuleError):
            problems.append(Problem(row=None, field=f"results.{k}", reason=str(res)))
        else:
            judged[k] = {"points": results[k], "conforming": res["conforming"], "judged": res["points"]}
    if problems:
        raise JiliangError("some results cannot be judged", code="validation_failed", details=problems)
    before_s = snapshot(s)
    s.results = judged
    s.defectives = sum(1 for r in judged.values() if not r["conforming"])
    s.outcome = Sampling.Outcome.FAILED if s.defectives else Sampling.Outcome.PASSED
    s.save(update_fields=["results", "defectives", "outcome"])
    log_change(actor=actor, obj=s, action="update", before=before_s)
    before_l = snapshot(lot)
    lot.status = LotStatus.RETURNED if s.defectives else LotStatus.PASSED
    lot.save(update_fields=["status"])
    log_change(actor=actor, obj=lot, action="update", before=before_l)
    if s.defectives:
        FactoryUnit.objects.filter(lot=lot).update(status=UnitStatus.RETURNED)
        auth = (Authorization.objects.select_for_update().filter(manufacturer_id=lot.manufacturer_id)
                .order_by("-id").first())
        if auth is not None:
            _penalty(actor, auth, "sampling_failed", sampling=s, model_id=lot.model_id, today=today,
                     note=f"lot {lot.lot_no}: {s.defectives} of {s.n} drawn units failed")
    return s


@transaction.atomic
def rectification_record(*, actor: Any, authorization_id: int, passed: bool, note: str = "",
                         today: dt.date | None = None) -> Authorization:
    """The regulator's verdict on the ordered rectification (整改): passed resumes sales; failed suspends the
    pilot and publishes it."""
    a = _authorization_for_change(actor, authorization_id)
    if not policy.may_regulate(Scope.of(actor), region_code=a.manufacturer.region_id):
        raise PermissionDenied("only the regulator of the manufacturer's region judges a rectification")
    _penalty(actor, a, "rectification_passed" if passed else "rectification_failed", note=note, today=today)
    return a


def _penalty(actor: Any, a: Authorization, event: str, *, sampling: Sampling | None = None,
             model_id: int | None = None, note: str = "", today: dt.date | None = None) -> None:
    try:
        new = rules.apply_penalty(rules.PenaltyState(a.penalty_stage, a.failures), event)
    except rules.TransitionError as exc:
        raise JiliangError(str(exc), code="invalid_state", status=409) from exc
    before = snapshot(a)
    from_stage = a.penalty_stage
    a.penalty_stage, a.failures = new.stage, new.failures
    today = today or timezone.localdate()
    for action in new.actions:
        if action == "stop_sales" and model_id is not None and model_id not in a.stopped_models:
            a.stopped_models = [*a.stopped_models, model_id]
        elif action == "resume_sales":
            a.stopped_models = []
        elif action == "suspend_authorization" and a.status == AuthStatus.GRANTED:
            _set_state(a, rules.apply_authorization(_state(a), "suspend", today=today))
            a.reason = "整改不合格，停止二检合一试点 (rectification failed)"
        elif action == "revoke_authorization" and a.status in (AuthStatus.GRANTED, AuthStatus.SUSPENDED):
            _set_state(a, rules.apply_authorization(_state(a), "revoke", today=today))
            a.reason = f"抽样检定不合格 {new.failures} 次，取消二检合一资质 (failed sampling {new.failures} times)"
        elif action == "publish":
            a.published = True
    a.save()
    PenaltyStep.objects.create(authorization=a, event=event, from_stage=from_stage, to_stage=new.stage,
                               failures=new.failures, actions=list(new.actions), sampling=sampling, note=note[:300])
    log_change(actor=actor, obj=a, action="update", before=before)


# ---------------------------------------------------------------------------------------------------- recall

@transaction.atomic
def recall_open(*, actor: Any, manufacturer_id: int, model_id: int, batch: str, reason: str,
                today: dt.date | None = None) -> Recall:
    """Recall the units of a batch with systematic error (系统性失准召回): every unit not yet replaced."""
    sc = Scope.of(actor)
    maker = Organization.objects.filter(pk=manufacturer_id).first()
    if maker is None:
        raise NotFound(f"manufacturer {manufacturer_id} not found")
    if not (policy.is_manufacturer(sc, manufacturer_id) or policy.may_regulate(sc, region_code=maker.region_id)):
        raise PermissionDenied("only the manufacturer or its regulator opens a recall")
    if not reason.strip():
        raise _invalid("give the reason for the recall", "reason")
    if Recall.objects.filter(manufacturer_id=manufacturer_id, model_id=model_id, batch=batch).exists():
        raise JiliangError("this batch is already being recalled", code="conflict", status=409)
    units = FactoryUnit.objects.filter(manufacturer_id=manufacturer_id, model_id=model_id, batch=batch,
                                       recall__isnull=True).exclude(status=UnitStatus.REPLACED)
    count = units.count()
    if count == 0:
        raise _invalid("no unit of this batch can be recalled", "batch")
    r = Recall.objects.create(manufacturer_id=manufacturer_id, model_id=model_id, batch=batch, reason=reason[:300],
                              units=count, opened_on=today or timezone.localdate())
    units.update(recall=r, status=UnitStatus.RECALLED)
    log_change(actor=actor, obj=r, action="create")
    return r


@transaction.atomic
def recall_replace(*, actor: Any, recall_id: int, serial: str, replacement_serial: str) -> Recall:
    """Record that a recalled unit was replaced (更换) by another verified unit of the manufacturer."""
    r = Recall.objects.restrict(actor, "view").select_for_update().filter(pk=recall_id).first()
    if r is None:
        raise NotFound(f"recall {recall_id} not found")
    if not policy.is_manufacturer(Scope.of(actor), r.manufacturer_id):
        raise PermissionDenied("only the manufacturer records replacements")
    old = FactoryUnit.objects.select_for_update().filter(recall=r, serial=serial).first()
    if old is None:
        raise _invalid(f"serial {serial} is not part of this recall", "serial")
    if old.status != UnitStatus.RECALLED:
        raise _invalid(f"serial {serial} has already been replaced", "serial")
    new = FactoryUnit.objects.select_for_update().filter(manufacturer_id=r.manufacturer_id,
                                                         serial=replacement_serial).first()
    if new is None or not new.conforming or new.status != UnitStatus.IN_STOCK or new.recall_id is not None:
        raise _invalid(f"serial {replacement_serial}: the replacement must be a verified, conforming unit in stock",
                       "replacement_serial")
    before = snapshot(old)
    old.status, old.replaced_by = UnitStatus.REPLACED, new
    old.save(update_fields=["status", "replaced_by"])
    log_change(actor=actor, obj=old, action="update", before=before)
    before_new = snapshot(new)
    new.utility_id, new.lot_id = old.utility_id, old.lot_id
    new.status = UnitStatus.ACCEPTED if old.utility_id else UnitStatus.IN_STOCK
    new.save(update_fields=["utility", "lot", "status"])
    log_change(actor=actor, obj=new, action="update", before=before_new)
    before_r = snapshot(r)
    r.replaced += 1
    r.save(update_fields=["replaced"])
    log_change(actor=actor, obj=r, action="update", before=before_r)
    return r
