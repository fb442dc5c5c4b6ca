"""GB 32100 credit-code checks against the reference test vectors (shipped in jiliang/engine/data/uscc.yaml)."""

from __future__ import annotations

import doctest
from importlib import resources

import pytest
import yaml

import jiliang.engine.uscc as uscc_mod
from jiliang.engine.uscc import CHARSET, WEIGHTS, check_character, validate_uscc, with_check_character

REF = yaml.safe_load(resources.files("jiliang.engine").joinpath("data/uscc.yaml").read_text(encoding="utf-8"))


def test_weights_are_powers_of_three_mod_31() -> None:
    assert list(WEIGHTS) == [pow(3, i, 31) for i in range(17)]
    assert list(WEIGHTS) == REF["weights"]
    assert REF["charset"] == CHARSET


@pytest.mark.parametrize("code", REF["test_vectors_valid"])
def test_reference_valid_codes_pass(code: str) -> None:
    assert validate_uscc(code).ok


@pytest.mark.parametrize("case", REF["test_vectors_invalid"], ids=lambda c: c["code"])
def test_reference_invalid_codes_fail(case: dict[str, str]) -> None:
    res = validate_uscc(case["code"])
    assert not res.ok
    assert res.message


def test_wrong_check_character_names_position_and_expected_value() -> None:
    res = validate_uscc("91350200M000000510")
    assert (res.position, res.expected) == (18, "D")
    assert "应为 D" in res.message and "expected D" in res.message_en


def test_excluded_letter_names_its_position() -> None:
    res = validate_uscc("91350100M000100Y4I")
    assert res.position == 18 and "'I'" in res.message_en
    res = validate_uscc("9135O100M000100Y43")
    assert res.position == 5


def test_lower_case_is_refused_not_silently_upcased() -> None:
    assert not validate_uscc("91350100m000100Y43").ok


def test_region_part_must_be_digits() -> None:
    code = with_check_character("91A50100M000100Y4")
    res = validate_uscc(code)
    assert not res.ok and res.position == 3


def test_every_single_character_substitution_is_detected() -> None:
    """The mod-31 check catches every single-character error in the first 17 positions."""
    good = "91350100M000100Y43"
    for pos in range(17):
        for c in CHARSET:
            if c == good[pos]:
                continue
            bad = good[:pos] + c + good[pos + 1 :]
            if pos in range(2, 8) and not c.isdigit():
                continue
            assert not validate_uscc(bad).ok, bad


def test_check_character_round_trip() -> None:
    body = "92440304MA5XXXXX1"
    assert validate_uscc(body + check_character(body)).ok


def test_doctests() -> None:
    assert doctest.testmod(uscc_mod).failed == 0
