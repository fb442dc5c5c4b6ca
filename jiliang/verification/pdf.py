"""Certificate and result-notice PDFs (检定证书 / 检定结果通知书), rendered with fpdf2.

The layout follows the fields of ``certificate_fields`` in the reference file (JJF 1069 / JJF 1002):

* cover page (封面): certificate number, page x of y, title, client, instrument name, model, serial,
  manufacturer, device id, regulation basis, conclusion, approver / checker / verifier, verification
  date, valid until (certificate only: a result notice has no validity), the issuing institution with its
  contacts, the verification seal, and the QR code carrying the signed payload;
* inner pages (内页): the verification data (kind, limits, place, original record number, regulation),
  the test points with the maximum permissible error, the verdict and the margin, the non-conforming
  items of a result notice, and the end marker.

The Chinese font is shipped with the package (``data/fonts``, a GB 2312 subset of Noto Sans CJK SC) and
embedded subset into each PDF, so the document reads the same on every viewer and printer.  Characters
outside it come from a system CJK font when one is found (:data:`FALLBACK_FONTS`, or the
``JILIANG_PDF_FALLBACK_FONT`` setting as ``PATH`` or ``PATH#FACE``); without one they print as 〓.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path

import segno
from django.conf import settings
from fontTools.ttLib import TTFont
from fpdf import FPDF
from fpdf.enums import Align, TextMode, WrapMode, XPos, YPos
from fpdf.fonts import FontFace

FONT_FAMILY = "jiliang-cjk"
FALLBACK_FAMILY = "jiliang-cjk-fallback"
MISSING_GLYPH = "〓"
# (path, face index in a collection) of system CJK fonts, in order of preference (Debian, Fedora, Arch, WQY).
FALLBACK_FONTS: tuple[tuple[str, int], ...] = (
    ("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc", 2),
    ("/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc", 2),
    ("/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc", 2),
    ("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc", 0),
    ("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc", 0),
)

RED = (190, 20, 30)
INK = (20, 20, 20)
GREY = (110, 110, 110)
RULE = (150, 150, 150)


class FontMissing(RuntimeError):
    """The shipped certificate font is not where the package put it (a broken installation)."""


@dataclass(frozen=True)
class ResultRow:
    """One test point as printed: label, indication error, MPE, margin (all with units), verdict."""

    point: str
    error: str
    mpe: str
    margin: str
    passed: bool


@dataclass(frozen=True)
class CertificateDocument:
    """Everything printed on a certificate or a result notice; built by
    :func:`jiliang.verification.certificates.certificate_document`."""

    number: str
    is_certificate: bool               # 检定证书 when True, 检定结果通知书 when False
    institution_name: str
    institution_uscc: str
    institution_address: str
    institution_phone: str
    client_name: str
    client_address: str
    instrument_name: str
    model: str
    accuracy_class: str
    serial: str
    device_id: str
    manufacturer: str
    regulation: str
    conclusion: str                    # e.g. "III级 合格" / "不合格"
    verifier: str
    checker: str
    approver: str
    verification_date: dt.date
    valid_until: dt.date | None
    issued_at: dt.datetime
    kind_label: str                    # 首次检定 / 后续检定 …
    stage_label: str
    location: str
    record_no: str
    rows: Sequence[ResultRow]
    payload: str
    qr_text: str
    kid: str
    algorithm_label: str
    revoked: bool = False
    extra_notes: Sequence[str] = field(default_factory=tuple)
    standards: str = ""                # 使用的计量标准
    environment: str = ""              # 环境条件, e.g. "温度 20.5 ℃，相对湿度 55 %"

    @property
    def title(self) -> str:
        return "检定证书" if self.is_certificate else "检定结果通知书"

    @property
    def title_en(self) -> str:
        return "VERIFICATION CERTIFICATE" if self.is_certificate else "NOTIFICATION OF VERIFICATION RESULT"


# ----------------------------------------------------------------------------------------------- fonts

def shipped_font_path() -> Path:
    path = Path(str(resources.files("jiliang.verification").joinpath("data/fonts/NotoSansCJKsc-Regular-GB2312.otf")))
    if not path.is_file():
        raise FontMissing(f"the certificate font is missing: {path} (reinstall the jiliang package)")
    return path


def fallback_font() -> tuple[str, int] | None:
    """The system CJK font used for characters outside the shipped subset, if any is installed."""
    configured = getattr(settings, "JILIANG_PDF_FALLBACK_FONT", "") or ""
    candidates: list[tuple[str, int]] = []
    if configured:
        path, _, face = configured.partition("#")
        candidates.append((path, int(face or 0)))
    candidates.extend(FALLBACK_FONTS)
    for path, face in candidates:
        if Path(path).is_file():
            return path, face
    return None


@cache
def _coverage(path: str, face: int) -> frozenset[int]:
    font = TTFont(path, fontNumber=face, lazy=True)
    try:
        return frozenset(font.getBestCmap() or {})
    finally:
        font.close()


def printable(text: str, covered: frozenset[int]) -> str:
    """``text`` with every character no font can draw replaced by 〓 (control characters dropped)."""
    out = []
    for ch in text:
        if ch in "\r\n\t":
            out.append(" ")
        elif ord(ch) < 0x20:
            continue
        else:
            out.append(ch if ord(ch) in covered or ch == " " else MISSING_GLYPH)
    return "".join(out)


# ----------------------------------------------------------------------------------------------- layout

def _date_zh(d: dt.date | None) -> str:
    return f"{d.year}年{d.month:02d}月{d.day:02d}日" if d else "—"


class _CertificatePDF(FPDF):
    """A4 portrait; every page after the cover carries the number and "page x of y" in its header."""

    def __init__(self, doc: CertificateDocument, covered: frozenset[int]) -> None:
        super().__init__(orientation="P", unit="mm", format="A4")
        self.doc = doc
        self.covered = covered
        self.set_margins(20, 18, 20)
        self.set_auto_page_break(auto=True, margin=22)
        self.alias_nb_pages("{nb}")
        self.set_title(f"{doc.title} {doc.number}")
        self.set_author(doc.institution_name)
        self.set_subject(doc.title_en)
        self.set_creator("Jiliang 计量监管平台")
        self.set_lang("zh-CN")

    # text helpers ----------------------------------------------------------------------------------
    def t(self, text: str) -> str:
        return printable(text, self.covered)

    def font(self, size: float, *, bold: bool = False, color: tuple[int, int, int] = INK) -> None:
        self.set_font(FONT_FAMILY, size=size)
        self.set_text_color(*color)
        if bold:
            self.text_mode = TextMode.FILL_STROKE
            self.set_draw_color(*color)
            self.set_line_width(0.18 * size / 10)
        else:
            self.text_mode = TextMode.FILL

    # page furniture ----------------------------------------------------------------------------------
    def header(self) -> None:
        if self.page_no() == 1:
            return
        self.font(9, color=GREY)
        self.cell(0, 5, self.t(f"{self.doc.title}  证书编号：{self.doc.number}"), new_x=XPos.LMARGIN)
        self.cell(0, 5, f"第 {self.page_no()} 页  共 {{nb}} 页", align=Align.R, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_draw_color(*RULE)
        self.set_line_width(0.3)
        self.line(self.l_margin, self.get_y() + 1, self.w - self.r_margin, self.get_y() + 1)
        self.ln(6)

    def footer(self) -> None:
        self.set_y(-16)
        self.font(7.5, color=GREY)
        note = (f"本{self.doc.title}为电子{self.doc.title}，由检定机构以 {self.doc.algorithm_label} 数字签名签发"
                f"（密钥标识 {self.doc.kid}）。扫描二维码，或在平台“证书验证”页面（/c/verify/）输入二维码内容，"
                "可离线核验真伪及是否撤销。未经检定机构书面批准，不得部分复制。")
        self.multi_cell(0, 3.6, self.t(note), align=Align.L, wrapmode=WrapMode.CHAR)

    # the cover ------------------------------------------------------------------------------------------
    def cover(self) -> None:
        doc = self.doc
        self.add_page()
        self.font(10, color=GREY)
        self.cell(0, 6, self.t(doc.institution_name), new_x=XPos.LMARGIN)
        self.cell(0, 6, "第 1 页  共 {nb} 页", align=Align.R, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.font(10)
        self.cell(0, 6, self.t(f"证书编号 No.：{doc.number}"), align=Align.R, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.ln(10)
        spaced = " ".join(doc.title) if doc.is_certificate else doc.title
        self.font(28 if doc.is_certificate else 24, bold=True, color=INK if doc.is_certificate else RED)
        self.cell(0, 14, spaced, align=Align.C, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.font(10, color=GREY)
        self.cell(0, 6, doc.title_en, align=Align.C, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        if doc.revoked:
            self.font(12, bold=True, color=RED)
            self.cell(0, 8, "本证书已被发证机构撤销 · REVOKED", align=Align.C, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.ln(8)
        model = f"{doc.model}  {doc.accuracy_class}级" if doc.accuracy_class else doc.model
        rows: list[tuple[str, str, str]] = [
            ("委 托 方", "Client", doc.client_name),
            ("计量器具名称", "Instrument", doc.instrument_name),
            ("型 号 规 格", "Model", model),
            ("出 厂 编 号", "Serial No.", doc.serial),
            ("器 具 编 号", "Device ID", doc.device_id),
            ("制 造 单 位", "Manufacturer", doc.manufacturer),
            ("检 定 依 据", "Regulation", doc.regulation),
        ]
        for label, label_en, value in rows:
            self._field(label, label_en, value)
        self._field("检 定 结 论", "Conclusion", doc.conclusion, size=14, bold=True,
                    color=INK if doc.is_certificate else RED)
        self.ln(6)
        self._signatures()
        self.ln(4)
        dates_top = self.get_y()
        self._field("检 定 日 期", "Date", _date_zh(doc.verification_date))
        if doc.is_certificate:
            self._field("有 效 期 至", "Valid until", _date_zh(doc.valid_until))
        self._seal(self.w - self.r_margin - 36, dates_top + 12)
        self._institution_block()

    def _field(self, label: str, label_en: str, value: str, *, size: float = 11.5, bold: bool = False,
               color: tuple[int, int, int] = INK) -> None:
        x0 = self.l_margin + 8
        y0 = self.get_y()
        self.set_x(x0)
        self.font(11.5)
        self.cell(34, 7, label)
        self.font(7.5, color=GREY)
        self.cell(22, 7, label_en)
        self.font(size, bold=bold, color=color)
        width = self.w - self.r_margin - 8 - self.get_x()
        self.multi_cell(width, 7, self.t(value or "—"), align=Align.L, wrapmode=WrapMode.CHAR,
                        new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_draw_color(*RULE)
        self.set_line_width(0.2)
        self.line(x0 + 56, self.get_y(), self.w - self.r_margin - 8, self.get_y())
        self.set_y(max(self.get_y(), y0 + 7) + 2.2)

    def _signatures(self) -> None:
        doc = self.doc
        x0 = self.l_margin + 8
        col = (self.w - self.l_margin - self.r_margin - 16) / 3
        self.set_x(x0)
        for label, label_en, name in (("批准人", "Approved by", doc.approver), ("核验员", "Checked by", doc.checker),
                                      ("检定员", "Verified by", doc.verifier)):
            self.font(11.5)
            self.cell(15, 7, label)
            self.font(7, color=GREY)
            self.cell(17, 7, label_en)
            self._fitted(name or "—", col - 32, 11.5)
        self.ln(10)

    def _fitted(self, text: str, width: float, size: float) -> None:
        """One underlined cell; the font shrinks (to 6 pt at least) until the text fits the width."""
        text = self.t(text)
        self.font(size)
        while size > 6 and self.get_string_width(text) > width - 1:
            size -= 0.5
            self.font(size)
        self.cell(width, 7, text, border="B")

    def _seal(self, cx: float, cy: float) -> None:
        """The verification seal (检定专用章): a red ring with the institution's name, a star and the words
        检定专用章.  The legal force is in the digital signature; the seal marks the issuer visually."""
        r = 19.0
        with self.local_context(fill_opacity=0.85, stroke_opacity=0.85):
            self.set_draw_color(*RED)
            self.set_fill_color(*RED)
            self.set_line_width(0.9)
            self.circle(x=cx, y=cy, radius=r, style="D")
            star = []
            for i in range(10):
                rad = 5.2 if i % 2 == 0 else 2.1
                a = math.radians(90 + i * 36)
                star.append((cx + rad * math.cos(a), cy - rad * math.sin(a)))
            self.polygon(star, style="F")
            name = self.t(self.doc.institution_name)[:16]
            self.font(8.5 if len(name) > 11 else 10, color=RED)
            n = len(name)
            span = min(250.0, 21.0 * max(n - 1, 1))
            for i, ch in enumerate(name):
                theta = 90 + span / 2 - (span * i / (n - 1) if n > 1 else span / 2)
                tr = math.radians(theta)
                x = cx + (r - 4.3) * math.cos(tr)
                y = cy - (r - 4.3) * math.sin(tr)
                w = self.get_string_width(ch)
                with self.rotation(theta - 90, x, y):
                    self.text(x - w / 2, y + 1.4, ch)
            self.font(8, color=RED)
            label = "检定专用章"
            self.text(cx - self.get_string_width(label) / 2, cy + 11, label)

    def _institution_block(self) -> None:
        doc = self.doc
        top = max(self.get_y() + 6, self.h - 84)
        self.set_y(top)
        self.set_draw_color(*RULE)
        self.set_line_width(0.3)
        self.line(self.l_margin, top - 2, self.w - self.r_margin, top - 2)
        qr_size = 38.0
        text_w = self.w - self.l_margin - self.r_margin - qr_size - 6
        lines = [
            ("检定机构", doc.institution_name),
            ("统一社会信用代码", doc.institution_uscc),
            ("地址", doc.institution_address or "—"),
            ("电话", doc.institution_phone or "—"),
            ("签发时间", doc.issued_at.strftime("%Y-%m-%d %H:%M")),
        ]
        for label, value in lines:
            self.set_x(self.l_margin)
            self.font(8.5, color=GREY)
            self.cell(28, 5.5, label)
            self.font(9.5)
            self.multi_cell(text_w - 28, 5.5, self.t(value), align=Align.L, wrapmode=WrapMode.CHAR,
                            new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.ln(1)
        self.font(8, color=GREY)
        notes = ("说明：1. 本证书检定结果仅对所检器具在检定时有效。2. 器具在有效期内如经修理、调整或出现异常，"
                 "应重新检定。3. 对检定结果有异议，可向检定机构或当地市场监督管理部门提出。")
        self.multi_cell(text_w, 4.2, self.t(notes), align=Align.L, wrapmode=WrapMode.CHAR,
                        new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        x = self.w - self.r_margin - qr_size
        self._qr(self.doc.qr_text, x, top, qr_size)
        self.font(8, color=INK)
        cap = "扫码验证 · Scan to verify"
        self.text(x + (qr_size - self.get_string_width(cap)) / 2, top + qr_size + 4, cap)
        self.font(7, color=GREY)
        cap2 = f"{doc.algorithm_label} · kid {doc.kid}"
        self.text(x + (qr_size - self.get_string_width(cap2)) / 2, top + qr_size + 7.5, cap2)

    def _qr(self, text: str, x: float, y: float, size: float) -> None:
        """The QR code as vector squares (crisp at any zoom and print resolution)."""
        code = segno.make(text, error="m", micro=False)
        rows = list(code.matrix_iter(border=2))
        module = size / len(rows)
        self.set_fill_color(255, 255, 255)
        self.rect(x, y, size, size, style="F")
        self.set_fill_color(0, 0, 0)
        for j, row in enumerate(rows):
            cells = list(row)
            i = 0
            while i < len(cells):
                if cells[i]:
                    start = i
                    while i < len(cells) and cells[i]:
                        i += 1
                    self.rect(x + start * module, y + j * module, (i - start) * module, module + 0.01, style="F")
                else:
                    i += 1

    # the inner pages -------------------------------------------------------------------------------
    def inner(self) -> None:
        doc = self.doc
        self.add_page()
        self._section("检定信息  Verification data")
        info = [
            ("检定类别", doc.kind_label),
            ("判定限值", doc.stage_label),
            ("检定依据", doc.regulation),
            ("检定地点", doc.location or "—"),
            ("计量标准", doc.standards or "—"),
            ("环境条件", doc.environment or "—"),
            ("原始记录号", doc.record_no),
            ("使用单位地址", doc.client_address or "—"),
        ]
        for label, value in info:
            self.font(9.5, color=GREY)
            self.cell(28, 6.5, label)
            self.font(10.5)
            self.multi_cell(0, 6.5, self.t(value), align=Align.L, wrapmode=WrapMode.CHAR,
                            new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.ln(4)
        self._section("检定结果  Results (示值误差 · 最大允许误差 MPE · 余量 margin = MPE - |误差|)")
        self._results_table(doc.rows)
        self.ln(4)
        failing = [r for r in doc.rows if not r.passed]
        if not doc.is_certificate:
            self._section("不合格项  Non-conforming items")
            self.font(10.5, color=RED)
            if failing:
                for r in failing:
                    self.multi_cell(0, 6.5, self.t(f"检定点 {r.point}：示值误差 {r.error} 超出最大允许误差 {r.mpe}"),
                                    align=Align.L, wrapmode=WrapMode.CHAR, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            else:
                self.multi_cell(0, 6.5, "检定结论为不合格（见检定记录）。", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            self.ln(3)
        for note in doc.extra_notes:
            self.font(9.5)
            self.multi_cell(0, 5.5, self.t(note), align=Align.L, wrapmode=WrapMode.CHAR,
                            new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.font(11, bold=True, color=INK if doc.is_certificate else RED)
        self.cell(0, 8, self.t(f"检定结论：{doc.conclusion}"), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.ln(6)
        self.font(9.5, color=GREY)
        self.cell(0, 6, "（以下空白）", align=Align.C, new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    def _section(self, title: str) -> None:
        self.font(11.5, bold=True)
        self.cell(0, 7, title, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_draw_color(*INK)
        self.set_line_width(0.4)
        self.line(self.l_margin, self.get_y(), self.w - self.r_margin, self.get_y())
        self.ln(2.5)

    def _results_table(self, rows: Iterable[ResultRow]) -> None:
        self.font(9.5)
        self.set_draw_color(*RULE)
        self.set_line_width(0.2)
        with self.table(col_widths=(10, 44, 30, 34, 26, 26), text_align="CENTER", line_height=6.5,
                        headings_style=FontFace(family=FONT_FAMILY, emphasis="", fill_color=(236, 236, 236)),
                        first_row_as_headings=True, repeat_headings=1) as table:
            head = table.row()
            for h in ("序号", "检定点", "示值误差", "最大允许误差", "余量", "判定"):
                head.cell(h)
            for n, r in enumerate(rows, start=1):
                row = table.row()
                row.cell(str(n))
                row.cell(self.t(r.point))
                row.cell(self.t(r.error))
                row.cell(self.t(r.mpe))
                row.cell(self.t(r.margin))
                row.cell("合格" if r.passed else "不合格")


def render_pdf(doc: CertificateDocument) -> bytes:
    """The certificate or result notice as PDF bytes (cover page plus inner pages)."""
    shipped = shipped_font_path()
    covered = set(_coverage(str(shipped), 0))
    fallback = fallback_font()
    pdf = _CertificatePDF(doc, frozenset())
    pdf.add_font(FONT_FAMILY, "", str(shipped))
    if fallback is not None:
        pdf.add_font(FALLBACK_FAMILY, "", fallback[0], collection_font_number=fallback[1])
        pdf.set_fallback_fonts([FALLBACK_FAMILY])
        covered |= _coverage(*fallback)
    pdf.covered = frozenset(covered)
    pdf.cover()
    pdf.inner()
    return bytes(pdf.output())
