"""Reading import files: the columnar CSV reader (Polars, for large files) must read exactly what the
record-by-record reader reads, and hand anything unusual back to it."""

from __future__ import annotations

import pytest

from jiliang.registry import tabular
from jiliang.registry.tabular import read_table

CASES = {
    "plain": "a,b,c\n1,2,3\n4,5,6\n",
    "bom and crlf": "\ufeffa,b,c\r\n1,2,3\r\n4,5,6\r\n",
    "quotes, commas and newlines inside values": 'a,b,c\n"x, y","say ""hi""","two\nlines"\n7,8,9\n',
    "spaces are stripped": "a , b,c\n  1 ,2  , 3\n4,,6\n",
    "chinese": "名称,型号,地址\n福田区张三水产店,ACS-15,梅林路1号\n南山,LXS-15,\n",
    "empty values": "a,b,c\n,,3\n1,,\n",
    "no trailing newline": "a,b\n1,2\n3,4",
    "ragged line": "a,b,c\n1,2,3\n4,5\n6,7,8\n",
    "blank line": "a,b,c\n1,2,3\n\n4,5,6\n",
    "all-empty record": "a,b,c\n1,2,3\n,,\n4,5,6\n",
    "duplicate column": "a,a,c\n1,2,3\n",
    "tabs and backslashes": 'a,b\n"x\\ty","back\\\\slash"\n',
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_columnar_reader_reads_what_the_careful_reader_reads(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    data = CASES[name].encode()
    careful = read_table(data, "x.csv")
    monkeypatch.setattr(tabular, "COLUMNAR_MIN_BYTES", 0)
    fast = read_table(data, "x.csv")
    assert fast.columns == careful.columns
    assert fast.rows == careful.rows
    assert fast.rownums == careful.rownums and fast.broken == careful.broken
    for c in careful.columns:
        assert fast.column(c) == careful.column(c)


def test_large_regular_file_takes_the_columnar_path_and_unusual_ones_do_not(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bool] = []
    real = tabular._read_csv_columnar

    def spy(data: bytes) -> tabular.Table | None:
        out = real(data)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(tabular, "_read_csv_columnar", spy)
    monkeypatch.setattr(tabular, "COLUMNAR_MIN_BYTES", 0)
    read_table(CASES["plain"].encode(), "x.csv")
    read_table(CASES["ragged line"].encode(), "x.csv")
    read_table(CASES["blank line"].encode(), "x.csv")
    assert calls == [True, False, False]
    table = read_table(CASES["ragged line"].encode(), "x.csv")
    assert table.broken == {1: "2 values for 3 columns"} and table.rownums == [2, 3, 4]


def test_record_and_rows_agree() -> None:
    table = read_table(CASES["ragged line"].encode(), "x.csv")
    assert [table.record(i) for i in range(len(table))] == table.rows
    assert table.rows[1] == (3, {"__width__": "2 values for 3 columns"})
