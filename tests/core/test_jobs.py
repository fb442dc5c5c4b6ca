"""Scheduled jobs shared by several workers (定时任务租约): each period runs once, a dead holder's job is
taken over, a failed run can be retried — and under real concurrency exactly one claimant wins."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from jiliang import cli
from jiliang.core.models import JobLease
from jiliang.core.services import job_claim, job_done, job_release

pytestmark = pytest.mark.django_db


def test_a_period_runs_once_and_the_next_period_runs_again() -> None:
    assert job_claim(name="nightly", period="2026-11-23", holder="a", lease_s=60) == "run"
    assert job_claim(name="nightly", period="2026-11-23", holder="b", lease_s=60) == "busy"
    assert job_done(name="nightly", period="2026-11-23", holder="a")
    assert job_claim(name="nightly", period="2026-11-23", holder="b", lease_s=60) == "done"
    assert job_claim(name="nightly", period="2026-11-24", holder="b", lease_s=60) == "run"
    lease = JobLease.objects.get(name="nightly")
    assert (lease.done_period, lease.period, lease.holder) == ("2026-11-23", "2026-11-24", "b")
    assert job_done(name="nightly", period="2026-11-24", holder="b")
    assert job_claim(name="nightly", period="2026-11-23", holder="late", lease_s=60) == "done"  # no rerun
    assert job_claim(name="fuel-alerts", period="2026-11-24", holder="a", lease_s=60) == "run"  # jobs are apart


def test_a_dead_holder_is_taken_over_when_its_lease_runs_out_and_cannot_finish_after() -> None:
    assert job_claim(name="nightly", period="p1", holder="dead", lease_s=60) == "run"
    JobLease.objects.filter(name="nightly").update(lease_until=timezone.now() - dt.timedelta(seconds=1))
    assert job_claim(name="nightly", period="p1", holder="alive", lease_s=60) == "run"
    assert not job_done(name="nightly", period="p1", holder="dead")   # its lease was lost
    assert JobLease.objects.get(name="nightly").done_period == ""
    assert job_done(name="nightly", period="p1", holder="alive")


def test_a_failed_run_is_released_for_a_retry() -> None:
    assert job_claim(name="nightly", period="p1", holder="a", lease_s=3600) == "run"
    job_release(name="nightly", period="p1", holder="a")
    assert job_claim(name="nightly", period="p1", holder="b", lease_s=3600) == "run"


def test_bad_arguments_are_refused() -> None:
    for kwargs in ({"name": ""}, {"period": ""}, {"holder": ""}, {"lease_s": 0}):
        with pytest.raises(ValueError, match="job_claim needs"):
            job_claim(**{"name": "n", "period": "p", "holder": "h", "lease_s": 60, **kwargs})  # type: ignore[arg-type]


def test_the_worker_runs_a_job_once_per_period_and_retries_after_a_failure() -> None:
    calls: list[str] = []
    assert cli._run_once("nightly", "d1", lambda: calls.append("d1"))
    assert cli._run_once("nightly", "d1", lambda: calls.append("again"))   # done: not run twice
    assert calls == ["d1"]

    def boom() -> None:
        raise RuntimeError("database gone")

    with pytest.raises(RuntimeError):
        cli._run_once("nightly", "d2", boom)
    assert cli._run_once("nightly", "d2", lambda: calls.append("d2"))      # released: retried at once
    assert calls == ["d1", "d2"]
    JobLease.objects.filter(name="nightly").update(period="d3", holder="other",
                                                   lease_until=timezone.now() + dt.timedelta(hours=1))
    assert not cli._run_once("nightly", "d3", lambda: calls.append("d3"))  # another worker holds it: ask later
    assert calls == ["d1", "d2"]


@pytest.mark.django_db(transaction=True)
def test_of_many_workers_claiming_at_once_exactly_one_runs_the_period() -> None:
    # real threads, each with its own database connection (on PostgreSQL: concurrent transactions)
    results: list[str] = []
    errors: list[BaseException] = []
    gate = threading.Barrier(8)

    def worker(i: int) -> None:
        try:
            gate.wait()
            for period in ("p1", "p2", "p3"):
                got: Any = job_claim(name="race", period=period, holder=f"w{i}", lease_s=60)
                if got == "run":
                    results.append(period)
                    job_done(name="race", period=period, holder=f"w{i}")
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    if connection.vendor == "sqlite" and "memory" in str(connection.settings_dict["NAME"]):
        pytest.skip("threads cannot share an in-memory SQLite test database")
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert sorted(results) == ["p1", "p2", "p3"]


def test_the_admin_shows_the_leases_and_cannot_change_them(world: Any, client: Any) -> None:
    job_claim(name="nightly", period="2026-11-23", holder="host:1", lease_s=60)
    client.force_login(world.users["admin"])
    page = client.get("/admin/core/joblease/")
    assert page.status_code == 200 and "host:1" in page.content.decode()
    assert client.get("/admin/core/joblease/add/").status_code == 403
    assert client.post("/admin/core/joblease/nightly/delete/", {"post": "yes"}).status_code == 403
    assert JobLease.objects.filter(name="nightly").exists()
