"""QR labels: the SVG label draws exactly the code's dark modules and its text, the PNG is segno's."""

from __future__ import annotations

import re
import struct

import pytest

from jiliang.portal import qr

URL = "https://jiliang.example.org/q/Zx3_kP9aQm2vB8sLw1YtRg/"


def _dark_modules_in_path(svg: str) -> set[tuple[int, int]]:
    path = re.search(r' d="([^"]+)"', svg)
    assert path
    cells: set[tuple[int, int]] = set()
    for x, y, w in re.findall(r"M(\d+) (\d+)h(\d+)v1h-\d+z", path.group(1)):
        cells.update((int(x) + i, int(y)) for i in range(int(w)))
    return cells


def test_label_draws_the_code_exactly() -> None:
    code = qr.make_code(URL)
    expected = {(x, y) for y, row in enumerate(code.matrix_iter(border=0)) for x, dark in enumerate(row) if dark}
    assert _dark_modules_in_path(qr.label_svg(url=URL, device_id="SC-1", type_name="电子计价秤")) == expected


def test_label_text_is_escaped() -> None:
    svg = qr.label_svg(url=URL, device_id="A<B&C", type_name='"scale"', caption="扫码")
    assert "A&lt;B&amp;C" in svg and "<B&" not in svg
    assert "扫码" in svg


def test_code_uses_medium_error_correction() -> None:
    assert qr.make_code(URL).error == "M"


@pytest.mark.parametrize("scale", [1, 10])
def test_png_is_a_png_of_the_expected_size(scale: int) -> None:
    data = qr.code_png(url=URL, scale=scale)
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = struct.unpack(">II", data[16:24])
    modules, _ = qr.make_code(URL).symbol_size(border=4)
    assert width == height == modules * scale
