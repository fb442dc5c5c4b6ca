"""Writes for verification records."""

from __future__ import annotations

from typing import Any

import orjson

from jiliang.registry.tabular import one_row_table
from jiliang.verification.importing import import_verifications
from jiliang.verification.models import Verification


def verification_record(*, actor: Any, device_id: str, kind: str, date: str, institution_uscc: str,
                        points: list[dict[str, Any]], stage: str = "initial", certificate_no: str = "",
                        verifier: str = "") -> Verification:
    """Record one verification: validated, judged and change-logged exactly like an imported row."""
    values = {"device_id": device_id, "kind": kind, "date": date, "institution_uscc": institution_uscc,
              "points": orjson.dumps(points).decode(), "stage": stage, "certificate_no": certificate_no,
              "verifier": verifier}
    import_verifications(table=one_row_table(values), actor=actor)
    return Verification.objects.filter(instrument__device_id=device_id).order_by("-id").first()  # type: ignore[return-value]
