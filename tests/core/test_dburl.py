from __future__ import annotations

from pathlib import Path

import pytest

from jiliang.config import dburl


def test_sqlite_url(tmp_path: Path) -> None:
    cfg = dburl.parse(f"sqlite:///{tmp_path}/a/b.sqlite3")
    assert cfg["ENGINE"].endswith("sqlite3") and cfg["NAME"] == f"{tmp_path}/a/b.sqlite3"
    assert (tmp_path / "a").is_dir()
    assert "journal_mode=WAL" in cfg["OPTIONS"]["init_command"]


def test_postgres_url() -> None:
    cfg = dburl.parse("postgresql://alice:s%40cret@db.example:6543/jl?sslmode=require")
    assert (cfg["NAME"], cfg["USER"], cfg["PASSWORD"], cfg["HOST"], cfg["PORT"]) == (
        "jl", "alice", "s@cret", "db.example", "6543")
    assert cfg["OPTIONS"] == {"sslmode": "require"}


def test_default_is_embedded_sqlite(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("JILIANG_HOME", str(tmp_path))
    assert dburl.parse(None)["NAME"] == str(tmp_path / "jiliang.sqlite3")


def test_unknown_scheme() -> None:
    with pytest.raises(ValueError, match="not supported"):
        dburl.parse("mysql://x/y")


def test_spec_example_four_slashes_is_absolute(tmp_path: Path) -> None:
    assert dburl.parse(f"sqlite:///{tmp_path}/x.sqlite3")["NAME"] == f"{tmp_path}/x.sqlite3"
    assert dburl.parse(f"sqlite:///{tmp_path}/x.sqlite3") == dburl.parse(f"sqlite:////{str(tmp_path).lstrip('/')}/x.sqlite3")


def test_three_slashes_is_relative(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert dburl.parse("sqlite:///rel.sqlite3")["NAME"] == str(tmp_path / "rel.sqlite3")
