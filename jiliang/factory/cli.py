"""``jiliang factory …``: 二检合一 from the command line, for scripts.

Wired into :mod:`jiliang.cli` with :func:`add_factory_parser`.  The same services as the pages and the API:

* ``jiliang factory upload FILE [--maker USCC] [--skip-invalid]`` — factory verification data (CSV, XLSX,
  JSON or NDJSON); with ``--maker`` the command acts as that manufacturer, so the service refuses rows of
  any other maker exactly as it would for the manufacturer's own sign-in;
* ``jiliang factory authorizations [--status S] [--format text|json]`` — the authorizations;
* ``jiliang factory sample LOT_ID [--aql A] [--level L] [--seed S] [--format text|json]`` — order the
  pre-installation supervisory sampling of a lot and print the plan (n, Ac, Re) and the serials drawn.

Exit codes as the other commands: 0 done, 1 refused by the service (the reasons on standard error),
2 bad input (no such file, unknown manufacturer or lot).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import orjson

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_BAD_INPUT = 2
MAX_PROBLEMS_PRINTED = 1000
# read_table's refusals of the file itself (not of its rows): bad input
BAD_FILE_CODES = frozenset({"file_not_found", "unsupported_format", "bad_encoding", "empty_file", "bad_file",
                            "bad_json"})


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> int:
    sys.stderr.write(f"jiliang: error: {message}\n")
    return code


def _refused(exc: Any) -> int:
    sys.stderr.write(f"jiliang: error: {exc.message}\n")
    for p in exc.details[:MAX_PROBLEMS_PRINTED]:
        sys.stderr.write(f"  {p}\n")
    if len(exc.details) > MAX_PROBLEMS_PRINTED:
        sys.stderr.write(f"  … and {len(exc.details) - MAX_PROBLEMS_PRINTED} more\n")
    return EXIT_REFUSED


class MakerPrincipal:
    """The operator at the command line acting for one manufacturer (``--maker``): the manufacturer's scope,
    logged under its own label."""

    is_authenticated = True
    is_superuser = False

    def __init__(self, org_id: int, uscc: str) -> None:
        from jiliang.accounts.roles import Role

        self.pk: Any = None
        self.username = f"system:cli:{uscc}"
        self.role = Role.MANUFACTURER
        self.organization_id = org_id
        self.region_id = None

    @property
    def scope(self) -> Any:
        from jiliang.accounts.roles import Role, Scope

        return Scope(role=Role.MANUFACTURER, org_id=self.organization_id, region_prefix=None)


def cmd_factory_upload(args: argparse.Namespace) -> int:
    from jiliang.accounts.models import SystemPrincipal
    from jiliang.core.errors import JiliangError
    from jiliang.factory import upload
    from jiliang.registry.models import Organization
    from jiliang.registry.tabular import read_table

    path = Path(args.file)
    if not path.is_file():
        return _fail(f"{path}: no such file")
    actor: Any = SystemPrincipal()
    if args.maker:
        org = Organization.objects.filter(uscc=args.maker.strip().upper()).first()
        if org is None:
            return _fail(f"no organization with credit code {args.maker} is registered")
        actor = MakerPrincipal(org.pk, org.uscc)
    data = path.read_bytes()
    try:
        if path.suffix.lower() == ".ndjson":
            res = upload.upload_ndjson(actor=actor, body=data, source="cli:ndjson", skip_invalid=args.skip_invalid)
        else:
            records, rows = upload.table_records(read_table(data, path.name))
            res = upload.upload_units(actor=actor, records=records, rows=rows,
                                      source=f"cli:{path.suffix.lower()[1:][:8]}", skip_invalid=args.skip_invalid)
    except JiliangError as exc:
        if exc.code in BAD_FILE_CODES:
            return _fail(exc.message)
        return _refused(exc)
    _out(f"factory units: {res.created} stored, {res.unchanged} unchanged, {res.rejected} rejected"
         + (f" (upload {res.upload_id})" if res.upload_id else ""))
    for p in res.problems[:20]:
        sys.stderr.write(f"  {p}\n")
    return EXIT_OK


def cmd_factory_authorizations(args: argparse.Namespace) -> int:
    from jiliang.accounts.models import SystemPrincipal
    from jiliang.factory import selectors

    qs = selectors.authorization_list(principal=SystemPrincipal(), status=args.status or "").order_by("id")
    rows = [{"id": a.pk, "number": a.number, "manufacturer": a.manufacturer.name, "uscc": a.manufacturer.uscc,
             "status": a.status, "applied_on": a.applied_on, "valid_from": a.valid_from,
             "valid_until": a.valid_until, "scope": a.scope, "renewal_requested": a.renewal_requested,
             "penalty_stage": a.penalty_stage, "failures": a.failures, "reason": a.reason} for a in qs]
    if args.format == "json":
        _out(orjson.dumps(rows).decode())
        return EXIT_OK
    if not rows:
        _out("no authorizations")
        return EXIT_OK
    for r in rows:
        until = f"{r['valid_from']} – {r['valid_until']}" if r["valid_until"] else "—"
        scope = ", ".join(f"{s.get('instrument_type')} DN{s.get('dn_min')}–DN{s.get('dn_max')}" for s in r["scope"])
        _out(f"{r['id']}\t{r['number'] or '—'}\t{r['status']}\t{until}\t{r['uscc']}\t{r['manufacturer']}\t{scope}"
             f"\t{r['penalty_stage']}")
    return EXIT_OK


def cmd_factory_sample(args: argparse.Namespace) -> int:
    from jiliang.accounts.models import SystemPrincipal
    from jiliang.core.errors import JiliangError, NotFound
    from jiliang.factory import services

    try:
        s = services.sampling_open(actor=SystemPrincipal(), lot_id=args.lot_id, aql=args.aql, level=args.level,
                                   seed=args.seed)
    except NotFound:
        return _fail(f"no lot with id {args.lot_id}")
    except JiliangError as exc:
        return _refused(exc)
    if args.format == "json":
        _out(orjson.dumps({"id": s.pk, "lot_id": s.lot_id, "aql": s.aql, "level": s.level, "n": s.n, "ac": s.ac,
                           "re": s.re, "seed": s.seed, "selected": s.selected}).decode())
    else:
        _out(f"sampling {s.pk} of lot {s.lot_id}: n={s.n} Ac={s.ac} Re={s.re} (AQL {s.aql}, level {s.level}), "
             f"seed {s.seed}")
        for serial in s.selected:
            _out(serial)
    return EXIT_OK


def add_factory_parser(sub: Any) -> None:
    f = sub.add_parser("factory", help="factory verification (二检合一): upload data, list authorizations, sample",
                       description="Factory verification replacing first verification (二检合一). Exit 0 done, "
                       "1 refused (reasons on standard error), 2 bad input.")
    fsub = f.add_subparsers(dest="factory_command", metavar="SUBCOMMAND", required=True)
    up = fsub.add_parser("upload", help="upload factory verification data (CSV, XLSX, JSON or NDJSON)")
    up.add_argument("file", metavar="FILE")
    up.add_argument("--maker", metavar="USCC", help="act as this manufacturer: rows of other makers are refused")
    up.add_argument("--skip-invalid", action="store_true", help="store the valid rows and report the others")
    up.set_defaults(func=cmd_factory_upload)
    au = fsub.add_parser("authorizations", help="list the authorizations (二检合一授权)")
    au.add_argument("--status", choices=["applied", "assessing", "granted", "rejected", "suspended", "revoked"])
    au.add_argument("--format", choices=["text", "json"], default="text")
    au.set_defaults(func=cmd_factory_authorizations)
    sa = fsub.add_parser("sample", help="order the supervisory sampling of a delivered lot (安装前监督抽样)")
    sa.add_argument("lot_id", type=int, metavar="LOT_ID")
    sa.add_argument("--aql", default="1.0")
    sa.add_argument("--level", default="II")
    sa.add_argument("--seed", help="the recorded seed of the draw (random when omitted)")
    sa.add_argument("--format", choices=["text", "json"], default="text")
    sa.set_defaults(func=cmd_factory_sample)
