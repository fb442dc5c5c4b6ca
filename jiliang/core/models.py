"""Base models and the append-only change log (变更记录)."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.utils.translation import gettext_lazy as _


class TimeStampedModel(models.Model):
    """Creation and last-change timestamps; every regulated record has them."""

    created_at = models.DateTimeField(_("创建时间"), auto_now_add=True)
    updated_at = models.DateTimeField(_("更新时间"), auto_now=True)

    class Meta:
        abstract = True


class AppendOnlyError(RuntimeError):
    pass


class ChangeLogQuerySet(models.QuerySet["ChangeLog"]):
    def update(self, **kwargs: Any) -> int:
        raise AppendOnlyError("the change log is append-only")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise AppendOnlyError("the change log is append-only")


class ChangeLog(models.Model):
    """One change to a regulated record: who, when, what (before and after), through which request.

    Append-only: rows are never updated or deleted (the queryset and ``save``/``delete`` refuse).  The
    tamper-evident Merkle log (C11) will be built over these rows in id order.

    A bulk import (批量导入) writes one ``import`` entry per block of up to ``IMPORT_BLOCK`` created rows
    instead of one ``create`` entry per row (ADR 0009): ``object_id`` is the block's id range
    ``"first-last"``, ``after`` is ``{"columns": [...], "ranges": [[first_id, count], ...], "count": n}``
    and ``payload`` holds every created row's values as JSON text (a list of lists in id order, kept as
    text: exact bytes for the tamper-evident log, and far cheaper to store than ``jsonb``).
    ``history_for`` finds a row's entry by its id and shows that row's values.
    """

    class Action(models.TextChoices):
        CREATE = "create", _("创建")
        UPDATE = "update", _("修改")
        DELETE = "delete", _("删除")
        IMPORT = "import", _("批量导入")

    id = models.BigAutoField(primary_key=True)
    at = models.DateTimeField(_("时间"), db_index=True)
    action = models.CharField(_("操作"), max_length=8, choices=Action.choices)
    app_label = models.CharField(max_length=50)
    model = models.CharField(max_length=50)
    object_id = models.CharField(max_length=64)
    object_repr = models.CharField(_("对象"), max_length=200)
    actor_id = models.BigIntegerField(_("操作人ID"), null=True)
    actor_label = models.CharField(_("操作人"), max_length=150)
    request_id = models.CharField(_("请求ID"), max_length=64)
    before = models.JSONField(_("变更前"), null=True)
    after = models.JSONField(_("变更后"), null=True)
    payload = models.TextField(_("批量数据"), blank=True, db_default="")

    objects = ChangeLogQuerySet.as_manager()

    class Meta:
        verbose_name = _("变更记录")
        verbose_name_plural = _("变更记录")
        ordering = ["-id"]
        indexes = [models.Index(fields=["app_label", "model", "object_id"], name="changelog_object_idx"),
                   models.Index(fields=["request_id"], name="changelog_request_idx")]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.actor_label} {self.action} {self.model} {self.object_repr}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise AppendOnlyError("the change log is append-only")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise AppendOnlyError("the change log is append-only")


class JobLease(models.Model):
    """A scheduled job (定时任务) shared by several workers: which period it last finished and who holds it now.

    ``jiliang worker`` runs the nightly jobs (credit regrade, reminders, case escalation, retention) and the
    hourly fuel refit; with several workers (ADR 0013) each period's run is claimed here first, so exactly
    one worker runs it.  A claim is a lease: a worker that dies mid-job leaves ``lease_until`` behind, and
    once it has passed another worker takes the job over (see :mod:`jiliang.core.services`)."""

    name = models.CharField(_("任务"), max_length=64, primary_key=True)
    done_period = models.CharField(_("已完成周期"), max_length=32, blank=True, default="")
    period = models.CharField(_("进行中周期"), max_length=32, blank=True, default="")
    holder = models.CharField(_("执行者"), max_length=128, blank=True, default="")
    lease_until = models.DateTimeField(_("租约到期"), null=True, blank=True)
    finished_at = models.DateTimeField(_("完成时间"), null=True, blank=True)

    class Meta:
        verbose_name = _("定时任务")
        verbose_name_plural = _("定时任务")

    def __str__(self) -> str:
        return f"{self.name} {self.done_period}"
