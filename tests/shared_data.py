"""Where ../shared/testdata is: ``$JILIANG_SHARED_DIR`` or the ``shared`` folder beside the repository (as
CI and the workplace lay it out).  In CI missing data is an error, elsewhere the tests that need it skip."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def testdata(*parts: str) -> Path:
    base = Path(os.environ.get("JILIANG_SHARED_DIR") or Path(__file__).resolve().parents[2] / "shared")
    path = base.joinpath("testdata", *parts)
    if not path.exists():
        if os.environ.get("CI"):
            raise RuntimeError(f"the shared test data is missing: {path} (set JILIANG_SHARED_DIR)")
        pytest.skip(f"shared test data not found at {path}")
    return path


testdata.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test (its name starts with "test")
