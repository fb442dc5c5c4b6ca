"""Factory verification replacing first verification (二检合一): the pure rules.

No Django.  Three state machines and the batch statistics, each a function of plain values:

* the authorization (专项计量授权) lifecycle: application (申请) → assessment (考核) → granted (授权, a
  certificate valid three years) or rejected; renewal (延续) opens six months before expiry; suspension
  (暂停) and revocation (取消);
* the penalty ladder (惩戒阶梯) of the Tai'an plan (泰安方案 三(五)2): one failing unit in supervisory
  sampling returns the whole batch (整批次退回); a second failure orders rectification and stops sales of
  the model (限期整改，整改期间不得销售); failed rectification suspends the pilot and publishes it (停止试点并
  公示); a third failure revokes the qualification (取消资质);
* the seeded draw of the serials to test in pre-installation sampling (安装前监督抽样);
* per-batch statistics (批次统计): whether the batch's mean indication error tends to zero (平均示值误差
  趋向于零), a one-sample t-test from (n, mean, M2) aggregates.

>>> a = apply_authorization(AuthState(), "assess", today=dt.date(2025, 1, 2))
>>> a = apply_authorization(a, "grant", today=dt.date(2025, 1, 10))
>>> (a.status, a.valid_until.isoformat(), renewal_opens(a.valid_until).isoformat())
('granted', '2028-01-09', '2027-07-09')
>>> s = apply_penalty(PenaltyState(), "sampling_failed")
>>> (s.stage, s.failures, s.actions)
('batch_returned', 1, ('return_lot',))
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

VALIDITY_YEARS = 3
RENEWAL_WINDOW_MONTHS = 6


class TransitionError(ValueError):
    """A transition that the state machine does not allow; the message says why."""


# ----------------------------------------------------------------------------------------- conditions

@dataclass(frozen=True)
class Condition:
    key: str
    title: str
    source: str


# The authorization conditions of the Shanghai plan (上海方案 四(二)1-4) and the Tai'an plan (泰安方案
# 三(三)1(1)-(5), 附件1).  ``REQUIRED_CONDITIONS`` are the four that both plans demand.
CONDITIONS: tuple[Condition, ...] = (
    Condition("standards", "有满足计量检定项目要求的计量标准、检定装置和配套设施", "上海 四(二)1；泰安 三(三)1(2)"),
    Condition("environment", "工作环境能适应检定任务的需要", "上海 四(二)2；泰安 三(三)1(2)"),
    Condition("registered_metrologists", "检定人员经考核合格并取得注册计量师职业资格", "上海 四(二)3；泰安 三(三)1(4)"),
    Condition("management_system", "具有保证检定结果公正、准确的工作制度和管理体系", "上海 四(二)4；泰安 附件1 三"),
    Condition("type_approval", "具有相关计量器具的型式批准证书", "泰安 三(三)1(1)"),
    Condition("iso_certified", "通过 ISO 9001 质量管理体系和 ISO 10012 测量管理体系认证", "泰安 三(三)1(1)"),
    Condition("clean_record", "近三年监督检查无不合格，无不良信用记录", "泰安 三(三)1(1)"),
    Condition("automatic_bench", "配备可实时电子原始记录的自动检定装置，表位数量与产量匹配", "泰安 三(三)1(3)"),
    Condition("remote_supervision", "具备远程监管和风险预警的技术条件", "泰安 三(三)1(2)"),
    Condition("partner_institute", "联合当地市级法定计量检定机构共同开展", "泰安 三(三)1(5)"),
    Condition("self_declaration", "签署自我声明公开承诺书", "泰安 附件1"),
)
CONDITION_KEYS = tuple(c.key for c in CONDITIONS)
REQUIRED_CONDITIONS = ("standards", "environment", "registered_metrologists", "management_system")
MIN_REGISTERED_METROLOGISTS = 2  # 泰安 三(三)1(4): 注册计量师或工程师以上 不得少于2名


def check_application(conditions: Mapping[str, Any], registered_metrologists: int,
                      required: Sequence[str] = REQUIRED_CONDITIONS,
                      min_metrologists: int = MIN_REGISTERED_METROLOGISTS) -> list[tuple[str, str]]:
    """Problems of an application as (field, reason); empty when it may go to assessment.

    ``conditions`` maps a condition key to the evidence offered (certificate numbers, a description)."""
    out: list[tuple[str, str]] = []
    for key in conditions:
        if key not in CONDITION_KEYS:
            out.append((f"conditions.{key}", f"unknown condition (known: {', '.join(CONDITION_KEYS)})"))
    for key in required:
        v = conditions.get(key)
        if not isinstance(v, str) or not v.strip():
            out.append((f"conditions.{key}", "required condition is not met: give the evidence"))
    if registered_metrologists < min_metrologists:
        out.append(("registered_metrologists",
                    f"at least {min_metrologists} registered metrologists (注册计量师) are required"))
    return out


# ------------------------------------------------------------------------------------------------ scope

@dataclass(frozen=True)
class ScopeItem:
    """One line of an authorization's scope: an instrument type and a nominal-size range (DN, mm)."""

    instrument_type: str
    dn_min: int
    dn_max: int

    def covers(self, instrument_type: str, dn: int) -> bool:
        return instrument_type == self.instrument_type and self.dn_min <= dn <= self.dn_max

    def label(self) -> str:
        return f"{self.instrument_type} DN{self.dn_min}–DN{self.dn_max}"


def parse_scope(items: Any, known_types: Iterable[str]) -> tuple[list[ScopeItem], list[tuple[str, str]]]:
    """Validate scope data ``[{"instrument_type", "dn_min", "dn_max"}, ...]``."""
    known = set(known_types)
    out: list[ScopeItem] = []
    problems: list[tuple[str, str]] = []
    if not isinstance(items, list) or not items:
        return [], [("scope", "the scope must be a non-empty list of {instrument_type, dn_min, dn_max}")]
    for i, it in enumerate(items):
        where = f"scope[{i}]"
        if not isinstance(it, Mapping):
            problems.append((where, "must be an object"))
            continue
        t = it.get("instrument_type")
        if t not in known:
            problems.append((f"{where}.instrument_type", f"unknown instrument type {t!r}"))
            continue
        lo, hi = it.get("dn_min"), it.get("dn_max")
        if not isinstance(lo, int) or not isinstance(hi, int) or isinstance(lo, bool) or isinstance(hi, bool):
            problems.append((f"{where}.dn_min", "dn_min and dn_max must be whole millimetres"))
            continue
        if lo <= 0 or hi < lo:
            problems.append((f"{where}.dn_max", "need 0 < dn_min <= dn_max"))
            continue
        out.append(ScopeItem(str(t), lo, hi))
    return out, problems


def parse_dn(text: str) -> int | None:
    """``"DN15"``, ``"dn 15"`` or ``"15"`` → 15; anything else None."""
    s = text.strip().upper().removeprefix("DN").strip()
    return int(s) if s.isdigit() and 0 < int(s) < 10000 else None


# ----------------------------------------------------------------------------------------- authorization

AUTH_STATUSES = ("applied", "assessing", "granted", "rejected", "suspended", "revoked")
AUTH_EVENTS = ("assess", "grant", "reject", "apply_renewal", "renew", "suspend", "reinstate", "revoke")
# who performs each event: the manufacturer applies for renewal, the authority does the rest
MANUFACTURER_EVENTS = frozenset({"apply_renewal"})


def add_years(d: dt.date, years: int) -> dt.date:
    try:
        return d.replace(year=d.year + years)
    except ValueError:  # 29 February
        return d.replace(year=d.year + years, day=28)


def add_months(d: dt.date, months: int) -> dt.date:
    m = d.month - 1 + months
    y, m = d.year + m // 12, m % 12 + 1
    for day in (d.day, 30, 29, 28):
        try:
            return dt.date(y, m, day)
        except ValueError:
            continue
    raise AssertionError("unreachable")


def certificate_valid_until(granted_on: dt.date, years: int = VALIDITY_YEARS) -> dt.date:
    """The last day a certificate granted on ``granted_on`` covers (three years less a day)."""
    return add_years(granted_on, years) - dt.timedelta(days=1)


def renewal_opens(valid_until: dt.date, months: int = RENEWAL_WINDOW_MONTHS) -> dt.date:
    """The first day a renewal may be applied for (有效期满前六个月)."""
    return add_months(valid_until, -months)


@dataclass(frozen=True)
class AuthState:
    status: str = "applied"
    valid_from: dt.date | None = None
    valid_until: dt.date | None = None
    renewal_requested: bool = False
    published: bool = False  # a suspension or revocation is published (予以公示)


def effective_status(state: AuthState, today: dt.date) -> str:
    """The status a member of the public sees: a granted certificate past its validity is ``expired``."""
    if state.status == "granted" and state.valid_until is not None and state.valid_until < today:
        return "expired"
    return state.status


def apply_authorization(state: AuthState, event: str, *, today: dt.date) -> AuthState:
    """The state after ``event``; :class:`TransitionError` says why an event is not allowed now."""
    s = state.status
    if event not in AUTH_EVENTS:
        raise TransitionError(f"unknown event {event!r} (use {', '.join(AUTH_EVENTS)})")
    if event == "assess":
        if s != "applied":
            raise TransitionError(f"only an application can go to assessment (status is {s})")
        return replace(state, status="assessing")
    if event in ("grant", "reject"):
        if s != "assessing":
            raise TransitionError(f"only an authorization under assessment can be {event}ed (status is {s})")
        if event == "reject":
            return replace(state, status="rejected")
        return replace(state, status="granted", valid_from=today, valid_until=certificate_valid_until(today))
    if event == "apply_renewal":
        if s != "granted" or state.valid_until is None:
            raise TransitionError(f"only a granted authorization can be renewed (status is {s})")
        if state.renewal_requested:
            raise TransitionError("a renewal has already been applied for")
        opens = renewal_opens(state.valid_until)
        if today < opens:
            raise TransitionError(f"the renewal window opens on {opens.isoformat()} (six months before expiry)")
        if today > state.valid_until:
            raise TransitionError("the certificate has expired: apply for a new authorization")
        return replace(state, renewal_requested=True)
    if event == "renew":
        if s != "granted" or not state.renewal_requested or state.valid_until is None:
            raise TransitionError("renewal needs a granted authorization with a renewal application")
        if today > state.valid_until:
            raise TransitionError("the certificate has expired: apply for a new authorization")
        new_until = add_years(state.valid_until, VALIDITY_YEARS)
        return replace(state, valid_until=new_until, renewal_requested=False)
    if event == "suspend":
        if s != "granted":
            raise TransitionError(f"only a granted authorization can be suspended (status is {s})")
        return replace(state, status="suspended", published=True)
    if event == "reinstate":
        if s != "suspended":
            raise TransitionError(f"only a suspended authorization can be reinstated (status is {s})")
        return replace(state, status="granted", published=False)
    # revoke
    if s not in ("granted", "suspended"):
        raise TransitionError(f"only a granted or suspended authorization can be revoked (status is {s})")
    return replace(state, status="revoked", published=True, renewal_requested=False)


def may_verify(state: AuthState, today: dt.date) -> str | None:
    """None when the manufacturer may perform factory verification today, else the reason."""
    st = effective_status(state, today)
    if st == "granted":
        return None
    return {"expired": "the authorization has expired", "suspended": "the authorization is suspended",
            "revoked": "the authorization has been revoked"}.get(st, "the authorization has not been granted")


# ------------------------------------------------------------------------------------------ penalty ladder

PENALTY_STAGES = ("clear", "batch_returned", "rectifying", "rectified", "suspended", "revoked")
PENALTY_EVENTS = ("sampling_failed", "rectification_passed", "rectification_failed")
REVOKE_AFTER = 3


@dataclass(frozen=True)
class PenaltyState:
    stage: str = "clear"
    failures: int = 0
    actions: tuple[str, ...] = field(default=())  # what the last transition requires the service to do


def apply_penalty(state: PenaltyState, event: str) -> PenaltyState:
    """The Tai'an penalty ladder.  ``actions`` of the result: ``return_lot``, ``order_rectification``,
    ``stop_sales``, ``resume_sales``, ``suspend_authorization``, ``revoke_authorization``, ``publish``.

    >>> s = PenaltyState()
    >>> for ev in ("sampling_failed", "sampling_failed", "rectification_failed", "sampling_failed"):
    ...     s = apply_penalty(s, ev)
    ...     print(s.stage, s.failures, ",".join(s.actions))
    batch_returned 1 return_lot
    rectifying 2 return_lot,order_rectification,stop_sales
    suspended 2 suspend_authorization,publish
    revoked 3 return_lot,revoke_authorization,publish
    """
    if event not in PENALTY_EVENTS:
        raise TransitionError(f"unknown event {event!r} (use {', '.join(PENALTY_EVENTS)})")
    if state.stage == "revoked":
        raise TransitionError("the qualification has been revoked; the ladder has ended")
    if event == "sampling_failed":
        n = state.failures + 1
        if n >= REVOKE_AFTER:
            return PenaltyState("revoked", n, ("return_lot", "revoke_authorization", "publish"))
        if n == 2:
            return PenaltyState("rectifying", n, ("return_lot", "order_rectification", "stop_sales"))
        return PenaltyState("batch_returned", n, ("return_lot",))
    if state.stage != "rectifying":
        raise TransitionError(f"no rectification has been ordered (stage is {state.stage})")
    if event == "rectification_passed":
        return PenaltyState("rectified", state.failures, ("resume_sales",))
    return PenaltyState("suspended", state.failures, ("suspend_authorization", "publish"))


# ------------------------------------------------------------------------------------------------ sampling

def draw_serials(serials: Sequence[str], n: int, seed: str) -> list[str]:
    """Which serials of a lot to test: a seeded, reproducible sample of ``n`` (all when n ≥ the lot).

    The lot is sorted first, so the draw depends only on the set of serials and the seed.

    >>> draw_serials(["c", "a", "b", "d"], 2, "s1") == draw_serials(["d", "b", "a", "c"], 2, "s1")
    True
    """
    lot = sorted(set(serials))
    if n >= len(lot):
        return lot
    digest = hashlib.sha256(("jiliang-factory-draw-v1\n" + seed).encode()).digest()
    rng = random.Random(int.from_bytes(digest[:8], "big"))  # noqa: S311 (a reproducible draw, not a secret)
    return sorted(rng.sample(lot, n))


# ------------------------------------------------------------------------------------------------ statistics

@dataclass(frozen=True)
class Moments:
    """Count, mean and sum of squared deviations (M2) of a set of errors; merged exactly (Chan et al.)."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0

    @staticmethod
    def of(values: Sequence[float] | Any) -> Moments:
        import numpy as np

        a = np.asarray(values, dtype=np.float64)
        if a.size == 0:
            return Moments()
        mean = float(a.mean())
        return Moments(int(a.size), mean, float(((a - mean) ** 2).sum()))

    def merge(self, other: Moments) -> Moments:
        if other.n == 0:
            return self
        if self.n == 0:
            return other
        n = self.n + other.n
        delta = other.mean - self.mean
        mean = self.mean + delta * other.n / n
        return Moments(n, mean, self.m2 + other.m2 + delta * delta * self.n * other.n / n)

    @property
    def std(self) -> float:
        """Sample standard deviation (n − 1)."""
        return math.sqrt(self.m2 / (self.n - 1)) if self.n > 1 else 0.0


@dataclass(frozen=True)
class BatchTest:
    n: int
    mean: float
    std: float
    t: float
    p_value: float
    consistent_with_zero: bool
    drifting: bool


def batch_test(m: Moments, mpe: float, *, alpha: float = 0.01, drift_fraction: float = 0.25) -> BatchTest:
    """One-sample t-test of H0 "the batch's mean error is zero" (the same as ``scipy.stats.ttest_1samp``).

    ``consistent_with_zero`` when p ≥ ``alpha``.  A batch is ``drifting`` when its mean is significantly
    non-zero AND at least ``drift_fraction`` of the MPE: with thousands of units a tiny, harmless bias is
    also significant, so significance alone does not flag a manufacturer.
    """
    from scipy import stats

    if m.n < 2:
        return BatchTest(m.n, m.mean, 0.0, math.nan, math.nan, True, False)
    sd = m.std
    if sd == 0.0:
        p = 1.0 if m.mean == 0.0 else 0.0
        t = 0.0 if m.mean == 0.0 else math.copysign(math.inf, m.mean)
    else:
        t = m.mean / (sd / math.sqrt(m.n))
        p = float(2.0 * stats.t.sf(abs(t), m.n - 1))
    ok = p >= alpha
    return BatchTest(m.n, m.mean, sd, t, p, ok, (not ok) and abs(m.mean) >= drift_fraction * mpe)
