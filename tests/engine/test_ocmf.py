"""OCMF signatures of real chargers (../shared/testdata/ocmf, used as they are) give the expected verdicts."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from jiliang.engine.ocmf import verify_ocmf
from tests.shared_data import testdata


def records(name: str) -> list[tuple[str, str]]:
    root = ET.parse(testdata("ocmf", name)).getroot()  # noqa: S314 (the project's own test data)
    return [(v.findtext("signedData") or "", v.findtext("publicKey") or "") for v in root.findall("value")]


@pytest.mark.parametrize(("name", "expected"), [
    ("keba_kcp30_ok.xml", [True]),
    ("keba_kcp30_tampered.xml", [False]),
    ("secp192k1_transaction_two_values.xml", [True, True]),
    ("dzg_second_key_mismatch.xml", [True, False]),
])
def test_reference_verdicts(name: str, expected: list[bool]) -> None:
    got = [verify_ocmf(data, key) for data, key in records(name)]
    assert [r.valid for r in got] == expected, [r.reason for r in got]
    assert all(r.reason for r in got if not r.valid)


def test_secp192k1_fallback_rejects_any_change() -> None:
    data, key = records("secp192k1_transaction_two_values.xml")[0]
    assert verify_ocmf(data, key).valid
    i = data.index('"RV":') + 5
    changed = data[:i] + ("9" if data[i] != "9" else "8") + data[i + 1 :]
    result = verify_ocmf(changed, key)
    assert not result.valid and "does not match" in result.reason
    other_key = records("keba_kcp30_ok.xml")[0][1]
    assert not verify_ocmf(data, other_key).valid


def test_malformed_input() -> None:
    assert not verify_ocmf("not ocmf", "00").valid
    assert "malformed" in verify_ocmf("OCMF|{x|{}", "00").reason
