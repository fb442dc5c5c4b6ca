"""The pure rules of 二检合一 (jiliang/engine/factory.py): no database."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from scipy import stats

from jiliang.engine import factory as f

D = dt.date


GRANT_DAY = D(2025, 1, 10)


def granted(on: D = GRANT_DAY) -> f.AuthState:
    s = f.apply_authorization(f.AuthState(), "assess", today=on)
    return f.apply_authorization(s, "grant", today=on)


def test_authorization_lifecycle_and_three_year_certificate() -> None:
    s = granted()
    assert (s.status, s.valid_from, s.valid_until) == ("granted", D(2025, 1, 10), D(2028, 1, 9))
    assert f.may_verify(s, D(2028, 1, 9)) is None
    assert f.effective_status(s, D(2028, 1, 10)) == "expired"
    assert f.may_verify(s, D(2028, 1, 10)) == "the authorization has expired"
    rejected = f.apply_authorization(f.apply_authorization(f.AuthState(), "assess", today=D(2025, 1, 1)), "reject",
                                     today=D(2025, 1, 2))
    assert rejected.status == "rejected" and rejected.valid_until is None
    assert f.may_verify(f.AuthState(), D(2025, 1, 1)) == "the authorization has not been granted"


@pytest.mark.parametrize(("state", "event"), [
    (f.AuthState(), "grant"),  # not assessed
    (f.AuthState(), "suspend"),
    (f.AuthState(status="suspended", valid_until=D(2028, 1, 1)), "suspend"),
    (f.AuthState(status="granted", valid_until=D(2028, 1, 1)), "reinstate"),
    (f.AuthState(status="revoked", valid_until=D(2028, 1, 1)), "reinstate"),
    (f.AuthState(status="rejected"), "revoke"),
    (f.AuthState(status="granted", valid_until=D(2028, 1, 1)), "renew"),  # no renewal application
    (f.AuthState(), "fly"),
])
def test_forbidden_authorization_transitions(state: f.AuthState, event: str) -> None:
    with pytest.raises(f.TransitionError):
        f.apply_authorization(state, event, today=D(2026, 1, 1))


def test_suspension_is_published_and_reinstatement_and_revocation() -> None:
    s = f.apply_authorization(granted(), "suspend", today=D(2025, 6, 1))
    assert (s.status, s.published) == ("suspended", True)
    assert f.may_verify(s, D(2025, 6, 2)) == "the authorization is suspended"
    back = f.apply_authorization(s, "reinstate", today=D(2025, 7, 1))
    assert (back.status, back.published) == ("granted", False)
    gone = f.apply_authorization(s, "revoke", today=D(2025, 7, 1))
    assert (gone.status, gone.published) == ("revoked", True)


def test_renewal_window_opens_six_months_before_expiry() -> None:
    s = granted(D(2025, 1, 10))  # valid until 2028-01-09
    assert f.renewal_opens(s.valid_until or D.min) == D(2027, 7, 9)
    with pytest.raises(f.TransitionError, match="opens on 2027-07-09"):
        f.apply_authorization(s, "apply_renewal", today=D(2027, 7, 8))
    r = f.apply_authorization(s, "apply_renewal", today=D(2027, 7, 9))
    assert r.renewal_requested
    with pytest.raises(f.TransitionError, match="already"):
        f.apply_authorization(r, "apply_renewal", today=D(2027, 8, 1))
    renewed = f.apply_authorization(r, "renew", today=D(2027, 9, 1))
    assert renewed.valid_until == D(2031, 1, 9) and not renewed.renewal_requested
    with pytest.raises(f.TransitionError, match="expired"):
        f.apply_authorization(s, "apply_renewal", today=D(2028, 1, 10))


def test_penalty_ladder_every_path() -> None:
    s1 = f.apply_penalty(f.PenaltyState(), "sampling_failed")
    assert (s1.stage, s1.failures, s1.actions) == ("batch_returned", 1, ("return_lot",))
    s2 = f.apply_penalty(s1, "sampling_failed")
    assert (s2.stage, s2.failures) == ("rectifying", 2)
    assert set(s2.actions) == {"return_lot", "order_rectification", "stop_sales"}
    ok = f.apply_penalty(s2, "rectification_passed")
    assert (ok.stage, ok.failures, ok.actions) == ("rectified", 2, ("resume_sales",))
    bad = f.apply_penalty(s2, "rectification_failed")
    assert (bad.stage, bad.actions) == ("suspended", ("suspend_authorization", "publish"))
    for before in (ok, bad, s2):
        s3 = f.apply_penalty(before, "sampling_failed")
        assert (s3.stage, s3.failures) == ("revoked", 3) and "revoke_authorization" in s3.actions
        with pytest.raises(f.TransitionError, match="revoked"):
            f.apply_penalty(s3, "sampling_failed")
    with pytest.raises(f.TransitionError, match="no rectification"):
        f.apply_penalty(s1, "rectification_passed")
    with pytest.raises(f.TransitionError, match="no rectification"):
        f.apply_penalty(ok, "rectification_failed")


def test_check_application_names_missing_conditions_and_staff() -> None:
    assert f.check_application(dict.fromkeys(f.REQUIRED_CONDITIONS, "evidence"), 2) == []
    probs = dict(f.check_application({"standards": "x", "environment": " ", "bogus": "y"}, 1))
    assert set(probs) == {"conditions.environment", "conditions.registered_metrologists",
                          "conditions.management_system", "conditions.bogus", "registered_metrologists"}
    assert "注册计量师" in probs["registered_metrologists"]


def test_scope_parsing_and_cover() -> None:
    items, probs = f.parse_scope([{"instrument_type": "water_meter", "dn_min": 15, "dn_max": 40}], ["water_meter"])
    assert not probs and items[0].covers("water_meter", 40) and not items[0].covers("water_meter", 50)
    assert not items[0].covers("gas_meter", 20)
    _, probs = f.parse_scope([{"instrument_type": "water_meter", "dn_min": 40, "dn_max": 15},
                              {"instrument_type": "nope", "dn_min": 1, "dn_max": 2}], ["water_meter"])
    assert [p[0] for p in probs] == ["scope[0].dn_max", "scope[1].instrument_type"]
    assert f.parse_scope([], ["water_meter"])[1]
    assert [f.parse_dn(s) for s in ("DN15", "dn 20", "25", "D15", "")] == [15, 20, 25, None, None]


def test_draw_is_seeded_reproducible_and_within_the_lot() -> None:
    lot = [f"S{i:04d}" for i in range(500)]
    a = f.draw_serials(lot, 32, "seed-1")
    assert a == f.draw_serials(list(reversed(lot)), 32, "seed-1")
    assert len(set(a)) == 32 and set(a) <= set(lot)
    assert a != f.draw_serials(lot, 32, "seed-2")
    assert f.draw_serials(lot[:5], 8, "x") == sorted(lot[:5])


def test_moments_merge_matches_numpy() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(0.3, 0.5, 1000)
    m = f.Moments.of(x[:300]).merge(f.Moments.of(x[300:])).merge(f.Moments())
    assert m.n == 1000
    assert m.mean == pytest.approx(x.mean(), abs=1e-12)
    assert m.std == pytest.approx(x.std(ddof=1), rel=1e-12)


def test_batch_test_matches_scipy_and_flags_only_material_drift() -> None:
    rng = np.random.default_rng(11)
    for shift in (0.0, 0.05, 0.8):
        x = rng.normal(shift, 0.4, 400)
        t = f.batch_test(f.Moments.of(x), mpe=2.0)
        ref = stats.ttest_1samp(x, 0.0)
        assert t.t == pytest.approx(ref.statistic, rel=1e-9)
        assert t.p_value == pytest.approx(ref.pvalue, rel=1e-6, abs=1e-300)
        assert t.consistent_with_zero == (ref.pvalue >= 0.01)
    # 0.8 % on a 2 % MPE: significant and material; a tiny but significant bias is not "drifting"
    assert f.batch_test(f.Moments.of(rng.normal(0.8, 0.4, 400)), mpe=2.0).drifting
    tiny = f.batch_test(f.Moments.of(rng.normal(0.1, 0.1, 5000)), mpe=2.0)
    assert not tiny.consistent_with_zero and not tiny.drifting
    assert f.batch_test(f.Moments.of([0.5]), mpe=2.0).consistent_with_zero  # one unit: no test
