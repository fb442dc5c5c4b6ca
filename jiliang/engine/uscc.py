"""Unified Social Credit Code (统一社会信用代码, GB 32100-2015) validation.

The code has 18 characters from a 31-symbol alphabet (I, O, S, V, Z excluded).  The 18th is a check
character: ``C18 = charset[(31 - sum(value(c_i) * w_i) mod 31) mod 31]`` with ``w_i = 3**(i-1) mod 31``.
Source: ../shared/reference/metrology.yaml ``uscc`` (confidence: high), copied to
``jiliang/engine/data/uscc.yaml`` with its source.

>>> validate_uscc("91350100M000100Y43").ok
True
>>> validate_uscc("91350200M000000510").message
'统一社会信用代码第18位校验码错误：应为 D，实为 0'
>>> with_check_character("91350100M000100Y4")
'91350100M000100Y43'
"""

from __future__ import annotations

from dataclasses import dataclass

CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_VALUE = {c: i for i, c in enumerate(CHARSET)}
LENGTH = 18


@dataclass(frozen=True, slots=True)
class UsccResult:
    """Outcome of a check: ``ok``, and when not ok the 1-based ``position`` at fault and a message."""

    ok: bool
    position: int | None = None
    expected: str | None = None
    message: str = ""
    message_en: str = ""


def check_character(first17: str) -> str:
    """Return the GB 32100 check character for the first 17 characters (which must be valid symbols)."""
    total = sum(_VALUE[c] * w for c, w in zip(first17, WEIGHTS, strict=True))
    return CHARSET[(31 - total % 31) % 31]


def with_check_character(first17: str) -> str:
    """Append the check character to a 17-character body (used by the simulator)."""
    return first17 + check_character(first17)


def validate_uscc(code: str) -> UsccResult:
    """Validate an 18-character code; the result names the wrong position or the expected check character."""
    if not isinstance(code, str):
        return UsccResult(False, None, None, "统一社会信用代码必须是字符串", "the credit code must be a string")
    code = code.strip()
    if len(code) != LENGTH:
        return UsccResult(
            False,
            None,
            None,
            f"统一社会信用代码应为18位，实为{len(code)}位",
            f"the credit code must have 18 characters, not {len(code)}",
        )
    for i, c in enumerate(code, start=1):
        if c not in _VALUE:
            return UsccResult(
                False,
                i,
                None,
                f"统一社会信用代码第{i}位字符 {c!r} 不允许（不得使用 I、O、S、V、Z 及小写字母）",
                f"character {i} ({c!r}) is not allowed (I, O, S, V, Z and lower case are excluded)",
            )
    for i in range(3, 9):
        if not code[i - 1].isdigit():
            return UsccResult(
                False,
                i,
                None,
                f"统一社会信用代码第3–8位应为行政区划码数字，第{i}位为 {code[i - 1]!r}",
                f"characters 3-8 are the GB/T 2260 region code; character {i} is {code[i - 1]!r}",
            )
    expected = check_character(code[:17])
    if code[17] != expected:
        return UsccResult(
            False,
            18,
            expected,
            f"统一社会信用代码第18位校验码错误：应为 {expected}，实为 {code[17]}",
            f"check character (position 18) is wrong: expected {expected}, got {code[17]}",
        )
    return UsccResult(True)


def is_valid_uscc(code: str) -> bool:
    return validate_uscc(code).ok
