"""The stamp font: shaped with the whole cut, embedded from the outlines-only copy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import uharfbuzz as hb
from fontTools.ttLib import TTFont
from pyhanko.pdf_utils.font.opentype import GlyphAccumulatorFactory
from pyhanko.pdf_utils.writer import PdfFileWriter

from signer.fixes.parsedfont_engine import ParsedFontAccumulator
from signer.pades.fonts import (
    LAYOUT_TABLES,
    StampFont,
    StampFontFactory,
    prepare_stamp_font,
    stamp_font_factory,
)
from signer.settings import DEFAULT_FONT
from tests import unpatched

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


def _stamp(factory: GlyphAccumulatorFactory, text: str) -> Any:
    engine = factory.create_font_engine(PdfFileWriter())
    engine.shape(text)
    engine.prepare_write()
    return engine


def test_one_program_per_signer_whatever_the_time(tmp_path: Path) -> None:
    font = prepare_stamp_font(Path(DEFAULT_FONT))
    factory = stamp_font_factory(font, hb.Face(font.shaping), 8)
    engines = [_stamp(factory, f"Giáo viên chủ nhiệm\nNguyễn Thị Hoa\n{d:02d}/11/2026 "
                               f"0{d % 10}:5{d % 7}") for d in range(1, 8)]
    assert font.subsets.made == 1
    assert len({frozenset(e._glyphs) for e in engines}) == 1  # digits always there
    _stamp(factory, "Hiệu trưởng\nTrần Văn Minh\n23/11/2026")
    assert font.subsets.made == 2  # another signer: another program


def test_the_program_holds_the_glyphs_used_and_no_others() -> None:
    import io

    font = prepare_stamp_font(Path(DEFAULT_FONT))
    engine = _stamp(stamp_font_factory(font, hb.Face(font.shaping), 8), TEXT)
    gids = frozenset(engine._glyphs)
    program = TTFont(io.BytesIO(font.subsets.program(gids)))
    full = TTFont(str(font.outlines))
    p_order, f_order = program.getGlyphOrder(), full.getGlyphOrder()
    assert max(gids) < len(p_order) <= len(f_order)  # glyph ids kept (names need not be)

    def outline(tt: Any, order: list[str], gid: int) -> Any:
        glyph = tt["glyf"][order[gid]]
        glyph.expand(tt["glyf"])
        return glyph.numberOfContours, glyph.compile(tt["glyf"], recalcBBoxes=False)

    for gid in gids:
        assert outline(program, p_order, gid) == outline(full, f_order, gid), gid
    drawn = {g for g in range(len(p_order)) if program["glyf"][p_order[g]].numberOfContours}
    assert len(drawn) <= len(gids) + 40  # plus composite parts, not the whole font
    assert not any(tag in program for tag in LAYOUT_TABLES)


def _written(engine: Any, writer: PdfFileWriter) -> dict[str, Any]:
    """What an engine puts in the PDF: widths, ToUnicode map, font descriptor, name."""
    font = writer.get_object(engine.as_resource().reference)
    cid = font["/DescendantFonts"][0].get_object()
    descriptor = {k: v for k, v in cid["/FontDescriptor"].items()
                  if k not in ("/FontFile2", "/FontName")}  # the name has a random prefix
    return {"widths": list(cid["/W"]), "descriptor": descriptor,
            "to_unicode": font["/ToUnicode"].get_object().data,
            "base": str(font["/BaseFont"]).split("+", 1)[1]}


def test_engines_share_one_parsed_font_and_write_what_a_fresh_parse_writes() -> None:
    font = prepare_stamp_font(Path(DEFAULT_FONT))
    face = hb.Face(font.shaping)
    shared = stamp_font_factory(font, face, 8)
    fresh = StampFontFactory(str(font.outlines), font_size=8, shaping_face=face,
                             subsets=font.subsets)  # parses the file, as pyHanko does
    got = []
    for factory in (shared, fresh, shared):
        writer = PdfFileWriter()
        engine = factory.create_font_engine(writer)
        ops = engine.shape(TEXT).graphics_ops
        engine.prepare_write()
        got.append((engine.tt, ops, _written(engine, writer)))
    assert got[0][0] is got[2][0] is font.parsed.tt  # one parse for every stamp
    assert got[1][0] is not font.parsed.tt
    assert got[0][1:] == got[1][1:] == got[2][1:]


def test_threads_stamping_at_once_get_the_same_font_objects() -> None:
    from concurrent.futures import ThreadPoolExecutor

    font = prepare_stamp_font(Path(DEFAULT_FONT))
    factory = stamp_font_factory(font, hb.Face(font.shaping), 8)
    texts = [TEXT, DECOMPOSED, NEEDS_GPOS, "Hiệu trưởng Trần Văn Minh"] * 8

    def stamp(text: str) -> Any:
        writer = PdfFileWriter()
        engine = factory.create_font_engine(writer)
        ops = engine.shape(text).graphics_ops
        engine.prepare_write()
        return ops, _written(engine, writer)

    alone = [stamp(t) for t in texts]
    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(stamp, texts)) == alone


def _stamped(factory: GlyphAccumulatorFactory, text: str) -> tuple[str, str, str]:
    """An engine's type, its shaped text and what it writes (reprs, comparable as JSON)."""
    writer = PdfFileWriter()
    engine = factory.create_font_engine(writer)
    ops = engine.shape(text).graphics_ops
    engine.prepare_write()
    return type(engine).__name__, ops.hex(), repr(_written(engine, writer))


def test_writes_what_unpatched_pyhanko_writes_in_another_process(font: StampFont) -> None:
    """Without `signer.fixes.apply()` the factory uses pyHanko's own engine, which parses
    the font for each stamp; the engine over the shared parse must write the same."""
    texts = [TEXT, DECOMPOSED, NEEDS_GPOS]
    plain = unpatched.run(f"""
        import json
        from pathlib import Path
        import uharfbuzz as hb
        from signer.pades.fonts import prepare_stamp_font, stamp_font_factory
        from tests.unit.test_fonts import _stamped
        font = prepare_stamp_font(Path({DEFAULT_FONT!r}))
        factory = stamp_font_factory(font, hb.Face(font.shaping), 8)
        print(json.dumps([_stamped(factory, t) for t in {texts!r}]))
    """)
    factory = stamp_font_factory(font, hb.Face(font.shaping), 8)
    ours = [_stamped(factory, t) for t in texts]
    assert [p[0] for p in plain] == ["GlyphAccumulator"] * len(texts)
    assert [o[0] for o in ours] == [ParsedFontAccumulator.__name__] * len(texts)
    assert [o[1:] for o in ours] == [tuple(p[1:]) for p in plain]
