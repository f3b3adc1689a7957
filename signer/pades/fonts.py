"""The stamp font, prepared once per process for Vietnamese stamps.

pyHanko parses the stamp font again for every visible signature (fontTools, pure
Python) and subsets it; a full Noto Sans (0.5 MB) costs ~100 ms of CPU each time.
Once per process we cut it to what Vietnamese needs (Latin, Latin-1, Latin
Extended-A, Ơ/Ư, combining marks, the Vietnamese letters of Latin Extended Additional,
punctuation: ~490 glyphs of 3,317), then keep two forms of the cut: the whole font, for
HarfBuzz to shape with (it places diacritics with GSUB/GPOS), and its outlines without
layout tables, for fontTools to subset and embed (pyHanko drops GSUB/GPOS/GDEF from the
embedded subset anyway, but decompiled them first). Same glyph ids in both. Embedding
copies the used glyphs without re-encoding them (no bounding boxes recomputed).
Measured in bench/README.md."""

from __future__ import annotations

import atexit
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyhanko.pdf_utils.font.opentype import GlyphAccumulator, GlyphAccumulatorFactory

RANGES = (
    (0x20, 0x7E), (0xA0, 0xFF), (0x100, 0x17F),  # Latin, Latin-1, Latin Extended-A (Ă Đ Ĩ Ũ)
    (0x1A0, 0x1A1), (0x1AF, 0x1B0),  # Ơ ơ Ư ư
    (0x300, 0x323),  # combining marks (NFD input)
    (0x1EA0, 0x1EF9),  # Vietnamese letters with tone marks
    (0x2010, 0x2027), (0x2030, 0x203A), (0x20AB, 0x20AC),  # punctuation, ₫ €
)
FEATURES = ["ccmp", "locl", "mark", "mkmk", "kern"]
LAYOUT_TABLES = ("GSUB", "GPOS", "GDEF")


@dataclass(frozen=True)
class StampFont:
    shaping: bytes  # the cut font, layout tables included
    outlines: Path  # the same glyphs without layout tables (a temporary file)


def prepare_stamp_font(font: Path) -> StampFont:
    from fontTools import subset  # imported here: verification never needs it
    from fontTools.ttLib import TTFont

    options = subset.Options()
    options.layout_features = FEATURES
    options.name_IDs = ["*"]
    options.hinting = False
    options.notdef_outline = True
    tt = TTFont(str(font))
    subsetter = subset.Subsetter(options)
    subsetter.populate(unicodes=[c for lo, hi in RANGES for c in range(lo, hi + 1)])
    subsetter.subset(tt)
    shaping = _save(tt)
    for tag in LAYOUT_TABLES:
        if tag in tt:
            del tt[tag]
    fd, name = tempfile.mkstemp(prefix="hocba-stamp-", suffix=".ttf")
    with os.fdopen(fd, "wb") as out:
        out.write(_save(tt))
    atexit.register(lambda: Path(name).unlink(missing_ok=True))
    return StampFont(shaping=shaping, outlines=Path(name))


def _save(tt: Any) -> bytes:
    import io

    buf = io.BytesIO()
    tt.save(buf)
    return buf.getvalue()


@dataclass(frozen=True)
class StampFontFactory(GlyphAccumulatorFactory):
    """pyHanko's factory over the outlines-only font, shaping with the whole cut
    (one HarfBuzz face per process)."""

    shaping_face: Any = None

    def create_font_engine(self, writer: Any, obj_stream: Any = None) -> GlyphAccumulator:
        import uharfbuzz as hb

        engine = super().create_font_engine(writer, obj_stream)
        engine.tt.recalcBBoxes = False  # glyphs are copied, not re-encoded, when embedded
        if self.shaping_face is not None:
            engine.hb_font = hb.Font(self.shaping_face)
        return engine


def stamp_font_factory(font: StampFont, face: Any, size: int) -> StampFontFactory:
    return StampFontFactory(str(font.outlines), font_size=size, shaping_face=face)
