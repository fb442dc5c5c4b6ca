"""The public QR page shows the latest verification result and validity, and warns when overdue."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client

from jiliang.accounts.models import SystemPrincipal
from jiliang.registry.models import Instrument
from jiliang.verification.services import verification_record
from tests.world import World

pytestmark = pytest.mark.django_db


def page(world: World, key: str = "I_F") -> str:
    inst = Instrument.objects.get(pk=world.instruments[key].pk)
    r = Client().get(f"/q/{inst.qr_token}/", HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert r.status_code == 200
    return r.content.decode()


def test_no_verification_yet(world: World) -> None:
    assert "暂无检定记录" in page(world)


def test_latest_result_and_validity(world: World) -> None:
    last_year = dt.date.today() - dt.timedelta(days=100)
    verification_record(actor=SystemPrincipal(), device_id="SC-F-1", kind="periodic", date=last_year.isoformat(),
                        institution_uscc=world.orgs["inst"].uscc, points=[{"load_g": 100, "error_g": 1}])
    html = page(world)
    assert "合格" in html and "福田区计量检定所" in html and "暂无检定记录" not in html
    valid = Instrument.objects.get(device_id="SC-F-1").valid_until
    assert valid is not None and valid.isoformat() in html
    assert 'id="overdue"' not in html


def test_overdue_instrument_says_so(world: World) -> None:
    long_ago = dt.date.today() - dt.timedelta(days=800)
    verification_record(actor=SystemPrincipal(), device_id="SC-F-1", kind="periodic", date=long_ago.isoformat(),
                        institution_uscc=world.orgs["inst"].uscc, points=[{"load_g": 100, "error_g": 1}])
    html = page(world)
    assert 'id="overdue"' in html and "已超过有效期" in html


def test_failed_verification_shows_non_conforming_without_validity(world: World) -> None:
    verification_record(actor=SystemPrincipal(), device_id="SC-F-1", kind="spot_check",
                        date=(dt.date.today() - dt.timedelta(days=3)).isoformat(),
                        institution_uscc=world.orgs["inst"].uscc, points=[{"load_g": 15000, "error_g": 9}])
    html = page(world)
    assert "不合格" in html and 'id="overdue"' not in html


def test_instrument_detail_lists_verifications_and_certificates(world: World) -> None:
    from jiliang.verification.certificates import certificate_issue

    v = verification_record(actor=SystemPrincipal(), device_id="SC-F-1", kind="periodic",
                            date=(dt.date.today() - dt.timedelta(days=10)).isoformat(),
                            institution_uscc=world.orgs["inst"].uscc, points=[{"load_g": 100, "error_g": 1}])
    cert = certificate_issue(actor=world.users["admin"], verification_id=v.pk)
    c = Client()
    c.force_login(world.users["futian_regulator"])
    html = c.get(f"/instruments/{world.instruments['I_F'].pk}/", HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert 'id="verifications"' in html and cert.number in html and f"/api/v1/certificates/{cert.pk}/pdf" in html
    assert "福田区计量检定所" in html
    pdf = c.get(f"/api/v1/certificates/{cert.pk}/pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
