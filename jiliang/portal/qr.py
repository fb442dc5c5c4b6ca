"""QR codes for the "一器一码" labels: a printable SVG label and a plain PNG code, both made with segno.

The code always encodes the absolute URL of the instrument's public page (``/q/<qr_token>/``), so any
phone camera opens it without an app.  Error correction level M survives the scuffs a label on a market
scale gets.
"""

from __future__ import annotations

import io
from xml.sax.saxutils import escape

import segno

# A label is a square code above two lines of text (device id, instrument type), in millimetres so that
# it prints at its true size.
_MODULE_MM = 0.8
_QUIET_MODULES = 4
_TEXT_BLOCK_MM = 14.0


def make_code(url: str) -> segno.QRCode:
    """The QR code for ``url`` (error correction M, the smallest version that fits)."""
    return segno.make(url, error="m", micro=False)


def _module_path(code: segno.QRCode) -> str:
    """An SVG path with one unit square per dark module, merged along each row."""
    parts: list[str] = []
    for y, row in enumerate(code.matrix_iter(border=0)):
        x = 0
        cells = list(row)
        while x < len(cells):
            if cells[x]:
                start = x
                while x < len(cells) and cells[x]:
                    x += 1
                parts.append(f"M{start} {y}h{x - start}v1h{start - x}z")
            else:
                x += 1
    return "".join(parts)


def label_svg(*, url: str, device_id: str, type_name: str, caption: str = "") -> str:
    """A printable label: the code with the device id and instrument type under it.

    >>> svg = label_svg(url="https://example.org/q/abc/", device_id="SC-1", type_name="电子计价秤")
    >>> svg.startswith("<svg") and "SC-1" in svg and "电子计价秤" in svg
    True
    """
    code = make_code(url)
    width_modules, _height = code.symbol_size(border=0)
    side_mm = (width_modules + 2 * _QUIET_MODULES) * _MODULE_MM
    height_mm = side_mm + _TEXT_BLOCK_MM + (5.0 if caption else 0.0)
    offset = _QUIET_MODULES * _MODULE_MM
    centre = side_mm / 2
    lines = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{side_mm:.1f}mm" height="{height_mm:.1f}mm" '
        f'viewBox="0 0 {side_mm:.2f} {height_mm:.2f}" role="img" aria-label="{escape(device_id)}">',
        f'<rect width="{side_mm:.2f}" height="{height_mm:.2f}" fill="#fff"/>',
        f'<path transform="translate({offset:.2f} {offset:.2f}) scale({_MODULE_MM})" fill="#000" '
        f'd="{_module_path(code)}"/>',
        '<g font-family="Noto Sans CJK SC, Source Han Sans SC, PingFang SC, Microsoft YaHei, sans-serif" '
        'text-anchor="middle" fill="#000">',
        f'<text x="{centre:.2f}" y="{side_mm + 4.5:.2f}" font-size="4.2" font-weight="700">{escape(device_id)}</text>',
        f'<text x="{centre:.2f}" y="{side_mm + 10.0:.2f}" font-size="3.6">{escape(type_name)}</text>',
    ]
    if caption:
        lines.append(f'<text x="{centre:.2f}" y="{side_mm + 15.0:.2f}" font-size="3">{escape(caption)}</text>')
    lines += ["</g>", "</svg>"]
    return "\n".join(lines) + "\n"


def code_png(*, url: str, scale: int = 10) -> bytes:
    """The bare code as a PNG (segno's own writer), for label printers and documents."""
    buf = io.BytesIO()
    make_code(url).save(buf, kind="png", scale=scale, border=_QUIET_MODULES)
    return buf.getvalue()
