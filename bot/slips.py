"""Printable PDFs: slips with personal codes (one A4 PDF per class, eight
slips a page with cut lines) and a poster for a class-wide code.

fpdf2 rather than reportlab: pure Python (no C extension to build), small,
kept up by the py-pdf group, and it embeds a subset of a TrueType font with a
ToUnicode map, so Cyrillic prints and a text extractor reads it back. The font
is DejaVu Sans, which matplotlib (already a dependency) ships. QR pictures are
segno's PNGs, embedded at an exact multiple of their modules.

Imported lazily by the handlers: fpdf2 and its fonts are loaded only when
someone asks for a PDF, so the bot's start-up memory does not grow.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from functools import lru_cache

import segno

PAGE_W, PAGE_H = 210.0, 297.0  # A4, mm
COLS, ROWS = 2, 4
SLIP_W, SLIP_H = PAGE_W / COLS, PAGE_H / ROWS
PAD = 7.0
QR_MM = 38.0


@dataclass
class Slip:
    org: str
    group: str  # the class (or, for staff, the role and classes)
    name: str  # the pupil's (or staff member's) name
    code: str
    link: str
    until: str  # the expiry, as the organisation reads it
    lines: tuple[str, str, str]  # three short lines of instructions
    heading: str = ""  # e.g. "Personal code for parents"


@dataclass
class Poster:
    org: str
    group: str
    heading: str
    code: str
    link: str
    until: str
    lines: tuple[str, ...]


@lru_cache(maxsize=1)
def font_files() -> dict[str, str]:
    import matplotlib

    folder = os.path.join(matplotlib.get_data_path(), "fonts", "ttf")
    return {
        "": os.path.join(folder, "DejaVuSans.ttf"),
        "B": os.path.join(folder, "DejaVuSans-Bold.ttf"),
        "mono": os.path.join(folder, "DejaVuSansMono-Bold.ttf"),
    }


def qr_png(link: str) -> bytes:
    buffer = io.BytesIO()
    segno.make(link, error="m").save(buffer, kind="png", scale=10, border=4)
    return buffer.getvalue()


def _pdf(title: str):  # type: ignore[no-untyped-def]
    from fpdf import FPDF

    pdf = FPDF(orientation="P", unit="mm", format="A4")
    pdf.set_auto_page_break(False)
    pdf.set_margins(0, 0, 0)
    files = font_files()
    pdf.add_font("DejaVu", "", files[""])
    pdf.add_font("DejaVu", "B", files["B"])
    pdf.add_font("DejaVuMono", "", files["mono"])
    pdf.set_title(title)
    pdf.set_creator("Parta")
    return pdf


def _fit(pdf, text: str, width: float, size: float, style: str = "", family: str = "DejaVu") -> None:  # type: ignore[no-untyped-def]
    """Sets the largest font size up to `size` at which `text` fits `width`."""
    while size > 6:
        pdf.set_font(family, style, size)
        if pdf.get_string_width(text) <= width:
            return
        size -= 0.5
    pdf.set_font(family, style, size)


def _line(pdf, x: float, y: float, w: float, text: str, size: float, style: str = "",  # type: ignore[no-untyped-def]
          family: str = "DejaVu", height: float | None = None, align: str = "L") -> float:
    _fit(pdf, text, w, size, style, family)
    h = height or size * 0.45
    pdf.set_xy(x, y)
    pdf.cell(w, h, text, align=align)
    return y + h


def _cut_lines(pdf) -> None:  # type: ignore[no-untyped-def]
    pdf.set_draw_color(150, 150, 150)
    pdf.set_line_width(0.2)
    pdf.set_dash_pattern(dash=2, gap=1.5)
    for col in range(1, COLS):
        pdf.line(col * SLIP_W, 0, col * SLIP_W, PAGE_H)
    for row in range(1, ROWS):
        pdf.line(0, row * SLIP_H, PAGE_W, row * SLIP_H)
    pdf.set_dash_pattern()
    pdf.set_font("DejaVu", "", 9)
    pdf.set_text_color(150, 150, 150)
    for row in range(1, ROWS):
        pdf.set_xy(1.5, row * SLIP_H - 2.2)
        pdf.cell(5, 4, "✂")
    pdf.set_text_color(0, 0, 0)


def _slip(pdf, slip: Slip, left: float, top: float) -> None:  # type: ignore[no-untyped-def]
    inner = SLIP_W - 2 * PAD
    y = top + PAD
    pdf.set_text_color(90, 90, 90)
    y = _line(pdf, left + PAD, y, inner, slip.org, 8.5)
    if slip.heading:
        y = _line(pdf, left + PAD, y, inner, slip.heading, 8)
    pdf.set_text_color(0, 0, 0)
    y = _line(pdf, left + PAD, y + 1.5, inner, slip.name, 13, "B", height=6.5)
    y = _line(pdf, left + PAD, y, inner, slip.group, 10.5, height=5.2)
    qr_top = y + 1.5
    pdf.image(io.BytesIO(qr_png(slip.link)), x=left + PAD - 2.5, y=qr_top, w=QR_MM, h=QR_MM)
    text_x = left + PAD + QR_MM - 0.5
    text_w = SLIP_W - PAD - (text_x - left)
    ty = qr_top + 2
    ty = _line(pdf, text_x, ty, text_w, slip.code, 15, family="DejaVuMono", height=7)
    pdf.set_text_color(60, 60, 60)
    ty = _line(pdf, text_x, ty, text_w, slip.until, 7.5, height=4.5) + 1.5
    for instruction in slip.lines:
        pdf.set_xy(text_x, ty)
        pdf.set_font("DejaVu", "", 7.2)
        pdf.multi_cell(text_w, 3.3, instruction, align="L")
        ty = pdf.get_y() + 0.8
    pdf.set_text_color(0, 0, 0)


def slips_pdf(slips: list[Slip], title: str) -> bytes:
    """One A4 document, eight slips a page, dashed cut lines between them."""
    pdf = _pdf(title)
    per_page = COLS * ROWS
    for start in range(0, max(len(slips), 1), per_page):
        pdf.add_page()
        _cut_lines(pdf)
        for i, slip in enumerate(slips[start:start + per_page]):
            col, row = i % COLS, i // COLS
            _slip(pdf, slip, col * SLIP_W, row * SLIP_H)
    return bytes(pdf.output())


def poster_pdf(poster: Poster) -> bytes:
    """One A4 page for the classroom door: who it is for, a large QR, the code and expiry."""
    pdf = _pdf(poster.heading)
    pdf.add_page()
    margin = 20.0
    width = PAGE_W - 2 * margin
    pdf.set_text_color(90, 90, 90)
    y = _line(pdf, margin, 22, width, poster.org, 16, height=9, align="C")
    pdf.set_text_color(0, 0, 0)
    y = _line(pdf, margin, y + 4, width, poster.group, 34, "B", height=16, align="C")
    y = _line(pdf, margin, y + 2, width, poster.heading, 18, height=10, align="C")
    size = 120.0
    pdf.image(io.BytesIO(qr_png(poster.link)), x=(PAGE_W - size) / 2, y=y + 6, w=size, h=size)
    y += 6 + size + 4
    pdf.set_xy(margin, y)
    _fit(pdf, poster.code, width, 30, family="DejaVuMono")
    pdf.cell(width, 14, poster.code, align="C")
    y += 16
    pdf.set_xy(margin, y)
    pdf.set_font("DejaVu", "", 12)
    pdf.cell(width, 7, poster.link, align="C")
    y += 8
    pdf.set_xy(margin, y)
    pdf.cell(width, 7, poster.until, align="C")
    y += 12
    for text in poster.lines:
        pdf.set_xy(margin, y)
        pdf.set_font("DejaVu", "", 13)
        pdf.multi_cell(width, 7, text, align="C")
        y = pdf.get_y() + 2
    return bytes(pdf.output())
