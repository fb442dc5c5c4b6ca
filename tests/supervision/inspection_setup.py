"""Helpers shared by the inspection tests (services, API cases, pages, browser, end to end): inspectors in a
district, a verification institute for the spot-checks, and a plan drawn through the real services."""

from __future__ import annotations

import datetime as dt
from typing import Any

from jiliang.accounts.models import User
from jiliang.accounts.roles import Role
from jiliang.registry.models import Organization, OrganizationKind
from jiliang.supervision.models import InspectionPlan
from jiliang.supervision.services import plan_commit, plan_create, plan_draw

# Scale test points (ACS-15, class III, e = 5 g): within and beyond the MPE.
SCALE_OK = [{"load_g": 2500, "error_g": 2.5}, {"load_g": 15000, "error_g": -5}]
SCALE_BAD = [{"load_g": 15000, "error_g": 12}]
PASSWORD = "correct horse battery"


def make_inspectors(region: str, n: int, prefix: str = "insp", password: str = PASSWORD) -> list[User]:
    out = []
    for i in range(n):
        u = User(username=f"{prefix}_{region}_{i}", role=Role.INSPECTOR, region_id=region,
                 first_name=f"检查员{i}")
        u.set_password(password)
        u.save()
        out.append(u)
    return out


def make_institute(region: str, uscc: str, name: str = "区计量检定所") -> Organization:
    org = Organization.objects.filter(uscc=uscc).first()
    if org is None:
        org = Organization.objects.create(uscc=uscc, name=name, region_id=region)
        OrganizationKind.objects.create(organization=org, kind="verification_institute")
    return org


def drawn_plan(actor: Any, region: str, *, types: tuple[str, ...] = ("scale",), beacon: str = "beacon",
               name: str = "计价秤双随机抽查") -> InspectionPlan:
    """A plan drawing every entity of the frame (all entities are B until graded; B share 100 %)."""
    today = dt.date.today()
    plan = plan_create(actor=actor, name=name, region_code=region, period_start=today,
                       period_end=today + dt.timedelta(days=30), instrument_types=list(types),
                       shares={"A": 1.0, "B": 1.0, "C": 1.0, "D": 1.0})
    plan_commit(actor=actor, plan_id=plan.pk)
    return plan_draw(actor=actor, plan_id=plan.pk, beacon=beacon)
