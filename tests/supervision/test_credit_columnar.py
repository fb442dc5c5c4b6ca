"""The columnar regrade (列式信用评定) equals the per-entity computation it replaced, on random data: the
same entities graded, the same scores, grades and event counts; only changed rows rewritten; every change
of letter logged."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from django.db.models import Q

from jiliang.core.models import ChangeLog
from jiliang.engine import credit
from jiliang.registry.models import Organization, OrganizationKind
from jiliang.supervision import grading
from jiliang.supervision.models import CreditEvent, CreditGrade
from jiliang.supervision.services import GRADED_KINDS, credit_entity_score, credit_regrade
from tests.world import World, make_uscc

pytestmark = pytest.mark.django_db
TODAY = dt.date(2026, 11, 23)


def _previous(today: dt.date, cfg: credit.CreditConfig) -> dict[int, tuple[float, str, int]]:
    """The per-entity computation credit_regrade did before it went columnar (kept here as the reference)."""
    ids = list(Organization.objects.filter(Q(kinds__kind__in=GRADED_KINDS) | Q(credit_events__isnull=False))
               .distinct().order_by("id").values_list("id", flat=True))
    out = {}
    for pk in ids:
        rows = list(CreditEvent.objects.filter(entity_id=pk).values_list("kind", "occurred_on"))
        total = cfg.base
        for kind, on in rows:
            w, hl = cfg.events[kind]
            total += w * 0.5 ** ((today - on).days / hl)
        s = min(cfg.clamp[1], max(cfg.clamp[0], total))
        out[pk] = (s, credit.grades(cfg, [s])[0], len(rows))
    return out


def _random_city(world: World, rng: np.random.Generator, n_orgs: int, n_events: int) -> None:
    kinds = list(credit.DEFAULT_EVENTS)
    orgs = [Organization(uscc=make_uscc("440304", 200 + i, "92"), name=f"随机商户{i}", region_id="440304")
            for i in range(n_orgs)]
    Organization.objects.bulk_create(orgs)
    orgs = list(Organization.objects.filter(name__startswith="随机商户").order_by("id"))
    # two thirds are market entities (graded even without events); the rest only through their events
    OrganizationKind.objects.bulk_create([OrganizationKind(organization=o, kind="market_entity")
                                          for o in orgs[: 2 * n_orgs // 3]])
    pool = orgs + list(world.orgs.values())
    ev = [CreditEvent(entity=pool[int(rng.integers(len(pool)))], kind=kinds[int(rng.integers(len(kinds)))],
                      occurred_on=TODAY - dt.timedelta(days=int(rng.integers(0, 1200))), source=f"r:{i}")
          for i in range(n_events)]
    CreditEvent.objects.bulk_create(ev)


def _stored() -> dict[int, tuple[float, str, int]]:
    return {e: (s, g, n) for e, s, g, n in CreditGrade.objects.values_list("entity_id", "score", "grade", "events")}


def _assert_same(got: dict[int, tuple[float, str, int]], want: dict[int, tuple[float, str, int]]) -> None:
    assert set(got) == set(want)
    for k, (s, g, n) in want.items():
        assert got[k][0] == pytest.approx(s, abs=1e-9), k
        assert got[k][1:] == (g, n), k


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_columnar_regrade_equals_the_per_entity_result(world: World, seed: int) -> None:
    rng = np.random.default_rng(seed)
    _random_city(world, rng, n_orgs=120, n_events=1500)
    cfg = credit.CreditConfig.default()
    report = credit_regrade(actor=world.users["admin"], today=TODAY)
    want = _previous(TODAY, cfg)
    _assert_same(_stored(), want)
    assert report.entities == len(want) and report.created == len(want)
    assert report.by_grade == {g: sum(1 for v in want.values() if v[1] == g) for g in credit.GRADES}
    # the explanation page's per-entity score agrees too
    for pk in list(want)[::7]:
        s, g, n = credit_entity_score(pk, today=TODAY, config=cfg)
        assert (s, g, n) == (pytest.approx(want[pk][0], abs=1e-9), want[pk][1], want[pk][2])

    # a year later, with more events: only the changed rows are rewritten, every change of letter logged
    before = _stored()
    later = TODAY + dt.timedelta(days=365)
    CreditEvent.objects.bulk_create([CreditEvent(entity_id=pk, kind="alert_confirmed", occurred_on=later,
                                                 source="r:later") for pk in list(want)[::5]])
    logged = ChangeLog.objects.filter(model="creditgrade", action="update").count()
    report2 = credit_regrade(actor=world.users["admin"], today=later)
    want2 = _previous(later, cfg)
    _assert_same(_stored(), want2)
    letters = {k for k in want2 if before[k][1] != want2[k][1]}
    assert report2.changed == len(letters) and report2.created == 0
    assert ChangeLog.objects.filter(model="creditgrade", action="update").count() - logged == len(letters)
    # nothing changes on a second run the same day: nothing is rewritten
    report3 = credit_regrade(actor=world.users["admin"], today=later)
    assert report3.updated == 0 and report3.changed == 0


def test_new_grades_are_logged_as_import_entries(world: World) -> None:
    credit_regrade(actor=world.users["admin"], today=TODAY)
    entry = ChangeLog.objects.get(model="creditgrade", action="import")
    assert entry.after["count"] == CreditGrade.objects.count()
    assert entry.after["columns"][:3] == ["entity_id", "score", "grade"]


def test_events_after_the_as_of_date_are_not_counted(world: World) -> None:
    stall = world.orgs["stall_f"]
    CreditEvent.objects.create(entity=stall, kind="case_penalty", occurred_on=TODAY, source="x")
    credit_regrade(actor=world.users["admin"], today=TODAY - dt.timedelta(days=1))
    assert CreditGrade.objects.get(entity=stall).events == 0
    credit_regrade(actor=world.users["admin"], today=TODAY)
    assert CreditGrade.objects.get(entity=stall).events == 1


def test_positions_with_sparse_and_dense_ids() -> None:
    ids = np.array([3, 10, 2_000_000_000], dtype=np.int64)
    assert grading.positions(ids, np.array([10, 2_000_000_000, 3], dtype=np.int64)).tolist() == [1, 2, 0]
    dense = np.arange(1, 100, dtype=np.int64)
    assert grading.positions(dense, np.array([1, 99, 50], dtype=np.int64)).tolist() == [0, 98, 49]
