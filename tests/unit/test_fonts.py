"""The stamp font: shaped with the whole cut, embedded from the outlines-only copy."""

from __future__ import annotations

from pathlib import Path

import pytest
import uharfbuzz as hb
from fontTools.ttLib import TTFont
from pyhanko.pdf_utils.font.opentype import GlyphAccumulatorFactory
from pyhanko.pdf_utils.writer import PdfFileWriter

from signer.pades.fonts import LAYOUT_TABLES, StampFont, prepare_stamp_font, stamp_font_factory
from signer.settings import DEFAULT_FONT

TEXT = "Giáo viên chủ nhiệm: Nguyễn Thị Thủy — Trường Tiểu học Ỷ Lan, ký lúc 23/11/2026"
# Combining marks (NFD); HarfBuzz composes them where a precomposed glyph exists.
DECOMPOSED = "Nguye\u0302\u0303n Thi\u0323 Thu\u0309y"
# Kerning pairs and a mark with no precomposed glyph: only GPOS places these.
NEEDS_GPOS = "AVATAR Tây Văn x\u0309"


@pytest.fixture(scope="module")
def font() -> StampFont:
    path = Path(DEFAULT_FONT)
    if not path.is_file():
        pytest.skip(f"{path} missing (apt install fonts-noto-core)")
    return prepare_stamp_font(path)


def _shape(factory: GlyphAccumulatorFactory, text: str) -> tuple[bytes, dict[int, object]]:
    engine = factory.create_font_engine(PdfFileWriter())
    result = engine.shape(text)
    return result.graphics_ops, dict(engine._glyphs)


def test_same_glyph_order_with_and_without_layout_tables(font: StampFont) -> None:
    import io

    shaping = TTFont(io.BytesIO(font.shaping))
    outlines = TTFont(str(font.outlines))
    assert outlines.getGlyphOrder() == shaping.getGlyphOrder()
    assert all(tag in shaping for tag in ("GSUB", "GPOS"))
    assert not any(tag in outlines for tag in LAYOUT_TABLES)
    cmap = shaping.getBestCmap()
    letters = ("aàáảãạăằắẳẵặâầấẩẫậbcdđeèéẻẽẹêềếểễệghiìíỉĩịklmnoòóỏõọôồốổỗộơờớởỡợpqrstu"
               "ùúủũụưừứửữựvxyỳýỷỹỵ")
    assert all(ord(c) in cmap for c in letters + letters.upper() + "0123456789:/.,-–()₫")


@pytest.mark.parametrize("text", [TEXT, DECOMPOSED, NEEDS_GPOS])
def test_shapes_like_the_whole_font(font: StampFont, tmp_path: Path, text: str) -> None:
    whole = tmp_path / "whole.ttf"
    whole.write_bytes(font.shaping)
    expected = _shape(GlyphAccumulatorFactory(str(whole), font_size=8), text)
    got = _shape(stamp_font_factory(font, hb.Face(font.shaping), 8), text)
    assert got == expected


def test_marks_are_positioned_by_the_shaping_font(font: StampFont) -> None:
    """Shaping with the outlines-only font would lose kerning and mark placement: the
    factory must not fall back to it."""
    plain = GlyphAccumulatorFactory(str(font.outlines), font_size=8)
    ours = stamp_font_factory(font, hb.Face(font.shaping), 8)
    assert _shape(ours, NEEDS_GPOS)[0] != _shape(plain, NEEDS_GPOS)[0]
