"""Registry pages (登记备案): instruments, organisations, places, QR labels and the bulk import.

Views stay thin: reads go through :mod:`jiliang.registry.selectors` (which apply row-level scope), writes
through :mod:`jiliang.registry.services` and :mod:`jiliang.registry.importing`.  A row outside the
person's scope is a 404; a refused change is a 403.
"""

from __future__ import annotations

import functools
import secrets
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.paginator import Page, Paginator
from django.db import models, transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from jiliang.accounts.roles import Scope
from jiliang.core.changelog import changes, history_for
from jiliang.core.errors import JiliangError, NotFound, PermissionDenied
from jiliang.portal import qr
from jiliang.portal.templatetags.jiliang_ui import localized_name
from jiliang.registry import importing, policy, selectors, services
from jiliang.registry.choices import OrgKind
from jiliang.registry.forms import (
    ImportConfirmForm,
    ImportUploadForm,
    InstrumentEditForm,
    InstrumentFilterForm,
    OrganizationFilterForm,
    PlaceFilterForm,
)
from jiliang.registry.models import Instrument, Organization, Place
from jiliang.registry.selectors import InstrumentFilters
from jiliang.registry.tabular import read_table

ViewFunc = Callable[..., HttpResponse]

# Fields that change on every save and say nothing to a reader of the history.
_HISTORY_HIDDEN = {"created_at", "updated_at", "id"}
# At most this many row problems are listed on the import preview (the counts are always complete).
MAX_PROBLEMS_SHOWN = 2000
# Detail pages list at most this many related rows, with a link to the filtered list for the rest.
RELATED_ROWS = 20


def scoped(view: ViewFunc) -> ViewFunc:
    """Login required; a selector's ``NotFound`` becomes 404 and a service's refusal 403."""

    @login_required
    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except NotFound as exc:
            raise Http404(exc.message) from exc
        except PermissionDenied as exc:
            raise DjangoPermissionDenied(exc.message) from exc

    return wrapper


def _page(request: HttpRequest, rows: Any) -> Page[Any]:
    paginator = Paginator(rows, settings.JILIANG_PAGE_SIZE)
    return paginator.get_page(request.GET.get("page"))


def _is_partial(request: HttpRequest) -> bool:
    """An htmx request for the results only (not a history restore, which needs the whole page)."""
    return (request.headers.get("HX-Request") == "true"
            and request.headers.get("HX-History-Restore-Request") != "true")


def may_change_instrument(user: Any, instrument: Instrument) -> bool:
    """Whether the central policy lets ``user`` change ``instrument`` (to offer or refuse the edit page)."""
    return policy.may_write_instrument(Scope.of(user), owner_id=instrument.owner_id,
                                       region_code=instrument.region_id)


# ------------------------------------------------------------------------------------------ instruments

@scoped
def instrument_list(request: HttpRequest) -> HttpResponse:
    """``/instruments/``: the instruments in the person's scope, filtered and paginated."""
    form = InstrumentFilterForm(request.GET or None, types=list(selectors.instrument_type_list()),
                                districts=selectors.district_choices(principal=request.user))
    page = _page(request, selectors.instrument_list(principal=request.user, filters=form.to_filters()))
    context = {"form": form, "page": page, "instruments": page.object_list}
    template = "registry/_instrument_results.html" if _is_partial(request) else "registry/instrument_list.html"
    response = render(request, template, context)
    patch_vary_headers(response, ("HX-Request",))
    return response


@dataclass(frozen=True)
class HistoryEntry:
    """One change-log entry as the history panel shows it."""

    at: Any
    action: str
    action_label: str
    actor: str
    changes: list[tuple[str, Any, Any]]


def _history(obj: models.Model) -> list[HistoryEntry]:
    labels: dict[str, str] = {}
    for f in obj._meta.concrete_fields:
        labels[f.attname] = str(f.verbose_name)
    out: list[HistoryEntry] = []
    for entry in history_for(obj):
        diff: list[tuple[str, Any, Any]] = []
        if entry.action == "update":
            for name, (old, new) in changes(entry.before or {}, entry.after or {}).items():
                if name not in _HISTORY_HIDDEN:
                    diff.append((labels.get(name, name), old, new))
        out.append(HistoryEntry(at=entry.at, action=entry.action, action_label=entry.get_action_display(),
                                actor=entry.actor_label, changes=diff))
    return out


@scoped
def instrument_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """``/instruments/<id>/``: every filed field, owner, place, model, change history, public page, label."""
    from jiliang.verification.selectors import public_latest_verification, verification_list

    instrument = selectors.instrument_get(principal=request.user, pk=pk)
    public_url = reverse("portal:instrument", args=[instrument.qr_token])
    verifications = list(verification_list(principal=request.user, instrument_id=instrument.pk)
                         .select_related("institution", "certificate")[:10])
    return render(request, "registry/instrument_detail.html", {
        "latest": public_latest_verification(instrument),
        "verifications": verifications,
        "instrument": instrument,
        "type_name": localized_name(instrument.instrument_type.name_zh, instrument.instrument_type.name_en),
        "public_url": public_url,
        "public_absolute_url": request.build_absolute_uri(public_url),
        "history": _history(instrument),
        "may_change": may_change_instrument(request.user, instrument),
    })


@scoped
@require_http_methods(["GET", "POST"])
def instrument_edit(request: HttpRequest, pk: int) -> HttpResponse:
    """``/instruments/<id>/edit/``: lifecycle status, place, install date and filed software."""
    instrument = selectors.instrument_get(principal=request.user, pk=pk)
    if not may_change_instrument(request.user, instrument):
        raise PermissionDenied(_("您无权修改该计量器具"))
    form = InstrumentEditForm(request.POST if request.method == "POST" else None, instrument=instrument)
    if request.method == "POST" and form.is_valid():
        updates = form.changes()
        if not updates:
            messages.info(request, _("没有需要保存的修改"))
            return redirect("registry:instrument_detail", pk=pk)
        try:
            services.instrument_update(actor=request.user, instrument_id=pk, **updates)
        except (NotFound, PermissionDenied):
            raise  # 404 / 403 through @scoped
        except JiliangError as exc:
            form.add_problems(exc.details, exc.message)
        else:
            messages.success(request, _("已保存计量器具 %(device)s 的修改") % {"device": instrument.device_id})
            return redirect("registry:instrument_detail", pk=pk)
    return render(request, "registry/instrument_edit.html", {"instrument": instrument, "form": form})


def _label_target(request: HttpRequest, pk: int) -> tuple[Instrument, str]:
    instrument = selectors.instrument_get(principal=request.user, pk=pk)
    url = request.build_absolute_uri(reverse("portal:instrument", args=[instrument.qr_token]))
    return instrument, url


@scoped
def instrument_label_svg(request: HttpRequest, pk: int) -> HttpResponse:
    """``/instruments/<id>/label.svg``: a printable label, the public page's QR code with id and type."""
    instrument, url = _label_target(request, pk)
    svg = qr.label_svg(url=url, device_id=instrument.device_id,
                       type_name=localized_name(instrument.instrument_type.name_zh, instrument.instrument_type.name_en),
                       caption=_("扫码查看器具信息"))
    response = HttpResponse(svg, content_type="image/svg+xml; charset=utf-8")
    response["Content-Disposition"] = f'inline; filename="{instrument.device_id}-label.svg"'
    response["Cache-Control"] = "private, max-age=300"
    return response


@scoped
def instrument_label_png(request: HttpRequest, pk: int) -> HttpResponse:
    """``/instruments/<id>/label.png``: the bare QR code of the public page as a PNG."""
    instrument, url = _label_target(request, pk)
    response = HttpResponse(qr.code_png(url=url), content_type="image/png")
    response["Content-Disposition"] = f'inline; filename="{instrument.device_id}-qr.png"'
    response["Cache-Control"] = "private, max-age=300"
    return response


# ------------------------------------------------------------------------------------------ organisations

@scoped
def organization_list(request: HttpRequest) -> HttpResponse:
    """``/organizations/``: organisations in the person's scope."""
    form = OrganizationFilterForm(request.GET or None, districts=selectors.district_choices(principal=request.user))
    page = _page(request, selectors.organization_list(principal=request.user, **form.values()))
    return render(request, "registry/organization_list.html",
                  {"form": form, "page": page, "organizations": page.object_list})


@scoped
def organization_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """``/organizations/<id>/``: the organisation, its places and instruments (within scope), its history."""
    org: Organization = selectors.organization_get(principal=request.user, pk=pk)
    owned = selectors.instrument_list(principal=request.user, filters=InstrumentFilters(owner_id=org.pk))
    made = selectors.instrument_list(principal=request.user, filters=InstrumentFilters(maker_id=org.pk))
    places = selectors.place_list(principal=request.user, operator_id=org.pk)
    kind_labels = dict(OrgKind.choices)
    return render(request, "registry/organization_detail.html", {
        "org": org,
        "kinds": [kind_labels.get(k, k) for k in org.kind_list],
        "places": places[:RELATED_ROWS], "places_count": places.count(),
        "owned": owned[:RELATED_ROWS], "owned_count": owned.count(),
        "made_count": made.count(),
        "history": _history(org),
        "related_rows": RELATED_ROWS,
    })


# ---------------------------------------------------------------------------------------------- places

@scoped
def place_list(request: HttpRequest) -> HttpResponse:
    """``/places/``: places in the person's scope."""
    form = PlaceFilterForm(request.GET or None, districts=selectors.district_choices(principal=request.user))
    f = form.values()
    page = _page(request, selectors.place_list(principal=request.user, q=f["q"], kind=f["kind"], region=f["region"]))
    return render(request, "registry/place_list.html", {"form": form, "page": page, "places": page.object_list})


@scoped
def place_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """``/places/<id>/``: the place and the instruments standing there (within scope)."""
    place: Place = selectors.place_get(principal=request.user, pk=pk)
    instruments = selectors.instrument_list(principal=request.user, filters=InstrumentFilters(place_id=place.pk))
    return render(request, "registry/place_detail.html", {
        "place": place,
        "instruments": instruments[:RELATED_ROWS * 5], "instruments_count": instruments.count(),
        "history": _history(place),
        "shown": RELATED_ROWS * 5,
    })


# ---------------------------------------------------------------------------------------------- import

class UploadStash:
    """Uploaded import files between preview and confirmation.

    The bytes go to a private temporary directory under a random token; the person's session lists the
    tokens it uploaded, so nobody can confirm someone else's file.  Files older than a day are removed.
    """

    SESSION_KEY = "registry_import_uploads"
    MAX_AGE_SECONDS = 24 * 3600
    MAX_PER_SESSION = 5

    def __init__(self, request: HttpRequest) -> None:
        self.request = request
        self.root = Path(tempfile.gettempdir()) / "jiliang-import"

    def _entries(self) -> dict[str, dict[str, str]]:
        return dict(self.request.session.get(self.SESSION_KEY, {}))

    def _sweep(self) -> None:
        cutoff = time.time() - self.MAX_AGE_SECONDS
        for path in self.root.glob("*.upload"):
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
            except OSError:
                continue

    def put(self, *, kind: str, filename: str, data: bytes) -> str:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._sweep()
        token = secrets.token_urlsafe(24)
        (self.root / f"{token}.upload").write_bytes(data)
        entries = self._entries()
        entries[token] = {"kind": kind, "filename": Path(filename).name[:200]}
        for old in list(entries)[: max(0, len(entries) - self.MAX_PER_SESSION)]:
            self.discard(old, entries=entries)
        self.request.session[self.SESSION_KEY] = entries
        return token

    def get(self, token: str) -> tuple[str, str, bytes] | None:
        """``(kind, filename, bytes)`` of an upload of this session, or None when unknown or expired."""
        entry = self._entries().get(token)
        path = self.root / f"{token}.upload"
        if entry is None or not path.is_file():
            return None
        return entry["kind"], entry["filename"], path.read_bytes()

    def discard(self, token: str, entries: dict[str, dict[str, str]] | None = None) -> None:
        own = entries if entries is not None else self._entries()
        if own.pop(token, None) is not None:
            (self.root / f"{token}.upload").unlink(missing_ok=True)
        if entries is None:
            self.request.session[self.SESSION_KEY] = own


@dataclass
class ImportReport:
    """What the preview and result pages show."""

    kind: str
    filename: str
    rows: int
    valid: int
    invalid: int
    problems: list[dict[str, Any]]
    problems_total: int
    error: str = ""


def _report(kind: str, filename: str, rows: int, created: int, rejected: list[Any], error: str = "",
            problems: list[Any] | None = None) -> ImportReport:
    listed: list[dict[str, Any]] = []
    flat = problems if problems is not None else [p for _, _, ps in rejected for p in ps]
    for p in flat[:MAX_PROBLEMS_SHOWN]:
        listed.append({"row": p.row, "field": p.field or "", "value": p.value or "", "reason": p.reason})
    invalid_rows = len(rejected) if problems is None else len({p.row for p in flat if p.row is not None})
    return ImportReport(kind=kind, filename=filename, rows=rows, valid=created, invalid=invalid_rows,
                        problems=listed, problems_total=len(flat), error=error)


def _dry_run(kind: str, filename: str, data: bytes, actor: Any) -> ImportReport:
    """Run the importer inside a transaction that is rolled back: exact counts and problems, no writes."""
    try:
        table = read_table(data, filename)
    except JiliangError as exc:
        return _report(kind, filename, 0, 0, [], error=exc.message, problems=exc.details)
    try:
        with transaction.atomic():
            result = importing.IMPORTERS[kind](table=table, actor=actor, skip_invalid=True)
            transaction.set_rollback(True)
    except JiliangError as exc:
        return _report(kind, filename, len(table.rows), 0, [], error=exc.message, problems=exc.details)
    return _report(kind, filename, len(table.rows), result.created, result.rejected)


def _import(kind: str, filename: str, data: bytes, actor: Any, skip_invalid: bool) -> ImportReport:
    table = read_table(data, filename)
    try:
        result = importing.IMPORTERS[kind](table=table, actor=actor, skip_invalid=skip_invalid)
    except JiliangError as exc:
        return _report(kind, filename, len(table.rows), 0, [], error=exc.message, problems=exc.details)
    return _report(kind, filename, len(table.rows), result.created, result.rejected)


def _kind_label(kind: str) -> str:
    return str(dict(ImportUploadForm.KIND_CHOICES).get(kind, kind))


@scoped
@require_http_methods(["GET", "POST"])
def import_upload(request: HttpRequest) -> HttpResponse:
    """``/import/``: upload a file; the answer is the preview (nothing written yet)."""
    form = ImportUploadForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        kind = form.cleaned_data["kind"]
        upload = form.cleaned_data["file"]
        data = upload.read()
        report = _dry_run(kind, upload.name, data, request.user)
        token = UploadStash(request).put(kind=kind, filename=upload.name, data=data) if report.valid else ""
        confirm = ImportConfirmForm(initial={"token": token, "mode": "all" if not report.invalid else "skip_invalid"})
        return render(request, "registry/import_preview.html", {
            "report": report, "kind_label": _kind_label(kind), "confirm": confirm, "token": token,
            "max_shown": MAX_PROBLEMS_SHOWN,
        })
    return render(request, "registry/import_upload.html", {
        "form": form, "columns": importing.COLUMNS,
    })


@scoped
@require_POST
def import_confirm(request: HttpRequest) -> HttpResponse:
    """``/import/confirm/``: import the previewed file for real and show the result."""
    form = ImportConfirmForm(request.POST)
    stash = UploadStash(request)
    stored = stash.get(form.data.get("token", "")) if form.is_valid() else None
    if stored is None:
        messages.error(request, _("上传的文件已过期或不存在，请重新上传"))
        return redirect("registry:import")
    kind, filename, data = stored
    report = _import(kind, filename, data, request.user, skip_invalid=form.cleaned_data["mode"] == "skip_invalid")
    if report.valid:
        stash.discard(form.cleaned_data["token"])
    return render(request, "registry/import_result.html", {
        "report": report, "kind_label": _kind_label(kind), "max_shown": MAX_PROBLEMS_SHOWN,
    })
