"""``jiliang demo``: build the simulated city (模拟城市) into the database and describe it.

The city (:mod:`jiliang.simulation.city`) is loaded through the registry importers, so every generated row
is validated exactly like a regulator's spreadsheet, and the change log records it (actor
``system:demo``).  The whole build is one transaction: a failure leaves the database as it was.

``fresh=True`` (the default of ``jiliang demo``) first empties what a demo creates, so the demo starts
from an empty registry: organisations, places, models, instruments, users, API tokens, sessions, the
change log, and every table whose rows point at them (so verifications, telemetry or alerts added by
later apps go too).  Reference data stays: regions and the instrument catalogue.  **This is a demo-only
reset.**  The change log is append-only through the ORM (its queryset refuses ``delete()``); the reset
bypasses that on purpose with the backend's flush SQL (``TRUNCATE … RESTART IDENTITY CASCADE`` on
PostgreSQL, ``DELETE FROM`` on SQLite), which is never used outside the demo.

``fresh=False`` (``jiliang demo --keep``) keeps what is there and adds the part of the city that is
missing (matched by credit code, place key, device id and username), so running it twice adds nothing.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
import unicodedata
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from django.contrib.sessions.models import Session
from django.core.management.color import no_style
from django.db import connection, models, transaction
from django.db.models import Count
from django.utils import timezone
from tqdm import tqdm

from jiliang.accounts.models import ApiToken, SystemPrincipal, User
from jiliang.accounts.roles import Role
from jiliang.accounts.services import user_create
from jiliang.core.context import reset_request_id, set_request_id
from jiliang.core.models import ChangeLog
from jiliang.registry import importing
from jiliang.registry.models import (
    Instrument,
    InstrumentModel,
    InstrumentType,
    Organization,
    OrganizationKind,
    Place,
)
from jiliang.registry.tabular import Table
from jiliang.simulation.city import (
    DEMO_PASSWORD,
    INSTRUMENT_COLUMNS,
    ORGANIZATION_COLUMNS,
    PLACE_COLUMNS,
    SCALES,
    City,
    DemoUser,
    Row,
    generate_city,
)
from jiliang.simulation.fuel import FuelSpec, generate_fuel
from jiliang.simulation.fuel import dumps_truth as dumps_fuel_truth
from jiliang.simulation.telemetry import TelemetrySpec, dumps_truth, generate_telemetry
from jiliang.simulation.verifications import VERIFICATION_COLUMNS, generate_verifications
from jiliang.verification.importing import import_verifications

#: Instruments are imported in chunks of this many rows so the progress bar moves during the writes.
INSTRUMENT_CHUNK = 10_000

#: Tables a fresh demo empties (plus, by cascade, every table that references them).
def _reset_models() -> tuple[type[models.Model], ...]:
    """Everything a fresh demo empties.  The telemetry, alert and detector tables reference instruments
    without database-level foreign keys (ADR 0007), so no cascade reaches them: they are listed here, or a
    rebuilt city (whose ids start again at 1) would inherit the old city's records."""
    from jiliang.factory import models as fac
    from jiliang.monitoring import models as mon
    from jiliang.supervision import models as sup
    from jiliang.verification import models as ver

    return (ChangeLog, fac.FactoryUnit, fac.BatchPointStat, fac.FactoryUpload, fac.PenaltyStep, fac.Sampling,
            fac.Recall, fac.DeliveryLot, fac.Authorization, mon.ScaleTxn, mon.ScaleEvent, mon.ScaleRecheck,
            mon.ChargerSession, mon.DispenserSale, mon.TankReading, mon.TankDelivery, mon.MeterReading,
            mon.Quarantine, mon.Alert, mon.DetectorCursor, mon.TelemetrySegment, mon.SegmentMark, sup.Case,
            sup.Finding, sup.InspectionTask,
            sup.ConflictDeclaration, sup.CreditRegradeRun, sup.CreditEvent, sup.CreditGrade, sup.InspectionPlan,
            ver.Certificate, ver.Reminder, ver.Verification,
            Instrument, InstrumentModel, Place, OrganizationKind, Organization, ApiToken, User, Session)

PLACE_KIND_LABELS = {
    "market": "农贸市场 farmers' markets",
    "charging_station": "充电站 charging stations",
    "fuel_station": "加油站 fuel stations",
    "residence": "住宅楼栋 residential buildings",
    "other": "其他 other places",
}
ROLE_LABELS: dict[str, str] = {
    Role.ADMIN: "系统管理员 admin", Role.REGULATOR: "监管人员 regulator", Role.INSPECTOR: "执法人员 inspector",
    Role.INSTITUTE: "检定机构 institute", Role.MANUFACTURER: "制造单位 manufacturer",
    Role.UTILITY: "供水/供气 utility", Role.MARKET_ENTITY: "经营者 market entity", Role.PUBLIC: "公众 public",
}


@dataclass
class DemoSummary:
    """What a demo build produced (演示数据概况): counts read back from the database and the demo logins."""

    scale: str
    seed: int
    database: str
    seconds: float
    organizations: int
    places: dict[str, int]
    instruments: dict[str, int]
    instrument_names: dict[str, str]
    statuses: dict[str, int]
    districts: int
    users: list[DemoUser]
    created: dict[str, int] = field(default_factory=dict)
    telemetry: dict[str, Any] = field(default_factory=dict)
    password: str = DEMO_PASSWORD

    @property
    def instrument_total(self) -> int:
        return sum(self.instruments.values())

    @property
    def place_total(self) -> int:
        return sum(self.places.values())

    def url(self, host: str, port: int) -> str:
        shown = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host  # noqa: S104 (display only)
        if ":" in shown:
            shown = f"[{shown}]"
        return f"http://{shown}:{port}/"

    def describe(self, host: str = "127.0.0.1", port: int = 8000) -> str:
        """Multi-line Chinese + English text: URL, counts, and the table of demo logins."""
        lines = [
            "Jiliang 计量监管平台 — 模拟城市已建成 / the simulated city is built",
            f"  网址 URL:        {self.url(host, port)}",
            f"  规模 scale:      {self.scale}   种子 seed: {self.seed}   用时 built in {self.seconds:.1f} s",
            f"  数据库 database: {self.database}",
            "",
            f"  单位 organizations {self.organizations:,} · 场所 places {self.place_total:,} · "
            f"计量器具 instruments {self.instrument_total:,} · 区 districts {self.districts}",
        ]
        for kind, n in self.places.items():
            lines.append(f"    {_pad(PLACE_KIND_LABELS.get(kind, kind), 44)}{n:>9,}")
        for itype, n in self.instruments.items():
            lines.append(f"    {_pad(self.instrument_names.get(itype, itype), 44)}{n:>9,}")
        status_text = ", ".join(f"{k} {v:,}" for k, v in self.statuses.items())
        lines.append(f"    状态 status: {status_text}")
        if self.created and sum(self.created.values()) < self.organizations + self.place_total + self.instrument_total:
            added = ", ".join(f"{k} {v:,}" for k, v in self.created.items())
            lines.append(f"    本次新增 added this run (--keep): {added}")
        if self.telemetry:
            t = self.telemetry
            lines.append(f"  在线监测 telemetry: {t['records']:,} records over {t['days']} days, "
                         f"{t['alerts']:,} alerts "
                         f"(ground truth: {t['truth']})")
        lines += [
            "",
            f"  演示账户 demo logins — 密码 password: {self.password}",
            f"    {_pad('用户名 username', 20)}{_pad('角色 role', 24)}可见范围 what it sees",
        ]
        for u in self.users:
            lines.append(f"    {_pad(u.username, 20)}{_pad(ROLE_LABELS.get(u.role, u.role), 24)}{u.sees}")
        lines += ["", "  演示数据仅供体验，请勿用于生产 / demo data only, do not use in production."]
        return "\n".join(lines)


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _pad(text: str, width: int) -> str:
    """Left-justify for a terminal, counting CJK characters as two columns."""
    return text + " " * max(1, width - _width(text))


# ------------------------------------------------------------------------------------------------- reset

def reset_demo_data() -> None:
    """Empty what a demo creates (demo-only: see the module docstring).  Runs inside the caller's transaction."""
    tables = [m._meta.db_table for m in _reset_models()]
    sql = connection.ops.sql_flush(no_style(), tables, reset_sequences=True, allow_cascade=True)
    with connection.cursor() as cur:
        if connection.vendor == "postgresql":
            # TRUNCATE refuses a table with pending deferred foreign-key checks (rows inserted earlier in
            # the same transaction): run those checks now, then go back to deferring.
            cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
        for statement in sql:
            cur.execute(statement)
        if connection.vendor == "postgresql":
            cur.execute("SET CONSTRAINTS ALL DEFERRED")


# ------------------------------------------------------------------------------------------------- build

def _table(columns: tuple[str, ...], rows: list[Row]) -> Table:
    # Row numbers as in a CSV file of these rows (header = line 1), so an error points at a line.
    return Table(columns=list(columns), rows=[(n, r) for n, r in enumerate(rows, start=2)])


def _missing(rows: list[Row], key: str, existing: Callable[[list[str]], Iterable[str]]) -> list[Row]:
    have: set[str] = set()
    values = [r[key] for r in rows]
    for i in range(0, len(values), 5000):
        have.update(existing(values[i : i + 5000]))
    return [r for r in rows if r[key] not in have]


def _create_users(users: list[DemoUser], actor: Any, skip_existing: bool) -> int:
    existing = set(User.objects.filter(username__in=[u.username for u in users]).values_list("username", flat=True))
    orgs = dict(Organization.objects.filter(uscc__in=[u.organization_uscc for u in users if u.organization_uscc])
                .values_list("uscc", "id"))
    n = 0
    for u in users:
        if u.username in existing and skip_existing:
            continue
        user_create(actor=actor, username=u.username, password=DEMO_PASSWORD, role=u.role,
                    organization_id=orgs.get(u.organization_uscc or ""), region_code=u.region_code,
                    is_superuser=u.is_superuser)
        n += 1
    return n


def build_demo(*, scale: str, seed: int, fresh: bool, as_of: dt.date | None = None,
               progress: bool | None = None, with_telemetry: bool = True) -> DemoSummary:
    """Build the simulated city (构建模拟城市) into the default database and return its summary.

    ``as_of`` is the day the city is seen from (default: today, so install dates lie in the past and due
    dates look current).  ``progress`` shows a tqdm bar on stderr (default: only on a terminal).
    """
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r} (choose from {', '.join(SCALES)})")
    started = time.perf_counter()
    city = generate_city(scale, seed, as_of or timezone.localdate())
    actor = SystemPrincipal("system:demo")
    token = set_request_id(f"demo-{scale}-{seed}-{uuid.uuid4().hex[:12]}")
    try:
        with transaction.atomic():
            created = _load(city, actor, fresh, progress)
        telemetry = _telemetry(city, seed, progress) if fresh and with_telemetry else {}
        if fresh:
            with transaction.atomic():
                _follow_up(city, actor)
    finally:
        reset_request_id(token)
    summary = summarize(city, time.perf_counter() - started, created)
    summary.telemetry = telemetry
    return summary


# Demo telemetry per scale: enough for every detector and the charger estimates, light enough that the
# city still builds in well under 90 s (the benchmarks use full volumes).  Hourly smart water meters: 1 % in
# the city (10 % would add 24 readings a day for 5,000 meters, ~45 % more records).  The small city gets more
# zero drift and leaks so that its week shows them; in the city's three days most stalls have fewer re-weighs
# than the zero-drift detector needs (5), so only a few of its zero-drift scales are flagged.
DEMO_TELEMETRY = {
    "small": TelemetrySpec(days=7, scale_txns_per_day=20, charger_sessions_per_day=10, zero_drift_share=0.05,
                           leak_share=0.2),
    "city": TelemetrySpec(days=3, scale_txns_per_day=4, charger_sessions_per_day=8, hourly_meter_share=0.01),
    "large": TelemetrySpec(days=3, scale_txns_per_day=4, charger_sessions_per_day=6, hourly_meter_share=0.01),
}


# Demo fuel telemetry (加油站): two weeks with one tank leaking and one nozzle drifting from day 7, both larger
# than the benchmark's (0.38 L/h, 0.3 %) so that two weeks show them (a week gives ~1 % false leak alarms
# per tank, 30 days none: bench/fuel_accuracy.py); the fuel alerts fit this window.
DEMO_FUEL = FuelSpec(days=14, leaking_tanks=1, leak_l_per_h=1.5, drifting_nozzles=1, drift_pct=0.8,
                     drift_extra_pct=0.0, drift_from_day=7)


def _telemetry(city: City, seed: int, progress: bool | None) -> dict[str, Any]:
    """Simulated telemetry (fuel included) ingested and analysed — the detectors and the fuel alerts; the
    ground truth is written beside the database."""
    from jiliang.config.dburl import default_sqlite_path
    from jiliang.monitoring.detection import run_detectors
    from jiliang.monitoring.fuel import fuel_alerts_run
    from jiliang.monitoring.ingest import ingest_lines
    from jiliang.monitoring.models import Alert

    spec = DEMO_TELEMETRY[city.scale]
    lines, truth = generate_telemetry(city, seed=seed, spec=spec)
    fuel_lines, fuel_truth = generate_fuel(city, seed=seed, spec=DEMO_FUEL)
    lines += fuel_lines
    disable = None if progress is None else not progress
    with tqdm(total=len(lines), desc="在线监测 telemetry", unit="rec", file=sys.stderr, disable=disable,
              dynamic_ncols=True) as bar:
        accepted = 0
        for start in range(0, len(lines), 100_000):
            chunk = lines[start : start + 100_000]
            accepted += ingest_lines(chunk, source="demo-simulator").accepted
            bar.update(len(chunk))
        bar.set_postfix_str("detectors")
        run_detectors()
        fuel = fuel_alerts_run(window_days=DEMO_FUEL.days)
    path = default_sqlite_path().parent / "demo-ground-truth.json"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dumps_truth(truth), encoding="utf-8")
        path.with_name("demo-fuel-ground-truth.json").write_text(dumps_fuel_truth(fuel_truth), encoding="utf-8")
        shown = str(path)
    except OSError:
        shown = "(not written)"
    return {"records": accepted, "days": spec.days, "alerts": Alert.objects.count(), "truth": shown,
            "fuel_records": len(fuel_lines), "fuel_days": DEMO_FUEL.days, "fuel_alerts": fuel.opened}


def _follow_up(city: City, actor: Any) -> None:
    """What a running platform would have done by now: the simulated water-meter manufacturers authorised
    and uploading factory verifications (二检合一), one lot delivered to the water utility and sampled,
    credit graded, and the due reminders sent."""
    from jiliang.factory.demo import build_factory_demo
    from jiliang.simulation.factory import FactorySpec
    from jiliang.supervision.services import credit_regrade
    from jiliang.verification.services import reminders_send

    water = next((o["uscc"] for o in city.organizations if "utility" in o["kinds"] and "水务" in o["name"]), None)
    build_factory_demo(actor=actor, spec=FactorySpec(region=_home_region(city)), utility_uscc=water)
    credit_regrade(actor=actor)
    reminders_send()


def _home_region(city: City) -> str:
    districts = sorted({p["region_code"] for p in city.places})
    return districts[0] if districts else "440306"


def _load(city: City, actor: Any, fresh: bool, progress: bool | None) -> dict[str, int]:
    orgs, places, instruments = city.organizations, city.places, city.instruments
    if fresh:
        reset_demo_data()
    else:
        orgs = _missing(orgs, "uscc", lambda c: Organization.objects.filter(uscc__in=c).values_list("uscc", flat=True))
        places = _missing(places, "key", lambda c: Place.objects.filter(key__in=c).values_list("key", flat=True))
        instruments = _missing(instruments, "device_id",
                               lambda c: Instrument.objects.filter(device_id__in=c).values_list("device_id", flat=True))
    new_devices = {i["device_id"] for i in instruments}
    verifications = [v for v in generate_verifications(city, city.seed).rows if v["device_id"] in new_devices]
    total = len(orgs) + len(places) + len(instruments) + len(verifications) + len(city.users)
    disable = None if progress is None else not progress
    with tqdm(total=total, desc=f"模拟城市 building the {city.scale} city", unit="row", file=sys.stderr,
              disable=disable, dynamic_ncols=True) as bar:
        bar.set_postfix_str("organizations")
        importing.import_organizations(table=_table(ORGANIZATION_COLUMNS, orgs), actor=actor)
        bar.update(len(orgs))
        bar.set_postfix_str("places")
        importing.import_places(table=_table(PLACE_COLUMNS, places), actor=actor)
        bar.update(len(places))
        bar.set_postfix_str("instruments")
        for start in range(0, len(instruments), INSTRUMENT_CHUNK):
            chunk = instruments[start : start + INSTRUMENT_CHUNK]
            importing.import_instruments(table=_table(INSTRUMENT_COLUMNS, chunk), actor=actor)
            bar.update(len(chunk))
        bar.set_postfix_str("verifications")
        for start in range(0, len(verifications), INSTRUMENT_CHUNK):
            chunk = verifications[start : start + INSTRUMENT_CHUNK]
            import_verifications(table=_table(VERIFICATION_COLUMNS, chunk), actor=actor)
            bar.update(len(chunk))
        bar.set_postfix_str("users")
        users = _create_users(city.users, actor, skip_existing=not fresh)
        bar.update(len(city.users))
        bar.set_postfix_str("done")
    return {"organizations": len(orgs), "places": len(places), "instruments": len(instruments),
            "verifications": len(verifications), "users": users}


def summarize(city: City, seconds: float, created: dict[str, int]) -> DemoSummary:
    """Read the counts back from the database (not from the generated rows)."""
    order = ["scale", "ev_charger_ac", "ev_charger_dc", "fuel_dispenser", "water_meter", "gas_meter"]
    by_type = dict(Instrument.objects.values_list("instrument_type").annotate(n=Count("id")).order_by())
    instruments = {k: by_type[k] for k in [*order, *sorted(set(by_type) - set(order))] if k in by_type}
    by_kind = dict(Place.objects.values_list("kind").annotate(n=Count("id")).order_by())
    places = {k: by_kind[k] for k in [*PLACE_KIND_LABELS, *sorted(set(by_kind) - set(PLACE_KIND_LABELS))]
              if k in by_kind}
    statuses = dict(Instrument.objects.values_list("status").annotate(n=Count("id")).order_by("-n"))
    names = {k: f"{zh} {en}" for k, zh, en in InstrumentType.objects.values_list("key", "name_zh", "name_en")}
    districts = Place.objects.values("region_id").distinct().count()
    db = connection.settings_dict
    database = f"{connection.vendor} {db.get('NAME')}"
    if connection.vendor == "postgresql":
        database = f"postgresql {db.get('HOST') or 'localhost'}:{db.get('PORT') or 5432}/{db.get('NAME')}"
    return DemoSummary(
        scale=city.scale, seed=city.seed, database=database, seconds=seconds,
        organizations=Organization.objects.count(), places=places, instruments=instruments,
        instrument_names=names, statuses=statuses, districts=districts, users=list(city.users), created=created,
    )
