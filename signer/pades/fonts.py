"""The stamp font, prepared once per process for Vietnamese stamps.

pyHanko parses the stamp font again for every visible signature (fontTools, pure
Python) and subsets it; a full Noto Sans (0.5 MB) costs ~100 ms of CPU each time.
Once per process we cut it to what Vietnamese needs (Latin, Latin-1, Latin
Extended-A, Ơ/Ư, combining marks, the Vietnamese letters of Latin Extended Additional,
punctuation: ~490 glyphs of 3,317), then keep two forms of the cut: the whole font, for
HarfBuzz to shape with (it places diacritics with GSUB/GPOS), and its outlines without
layout tables, for fontTools to subset and embed (pyHanko drops GSUB/GPOS/GDEF from the
embedded subset anyway, but decompiled them first). Same glyph ids in both. Embedding
copies the used glyphs without re-encoding them (no bounding boxes recomputed). The
outlines are parsed once per process, every table decompiled up front, and that one
read-only TTFont serves every stamp's font engine (pyHanko parsed the font file again
for each: ~2 ms a stamp; signer/fixes/parsedfont.py, used once `signer.fixes.apply()`
ran). Measured in bench/README.md."""

from __future__ import annotations

import atexit
import functools
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyhanko.pdf_utils.font.opentype import GlyphAccumulator, GlyphAccumulatorFactory

from signer import fixes
from signer.fixes.parsedfont import ParsedFont
from signer.fixes.parsedfont_engine import ParsedFontAccumulator

RANGES = (
    (0x20, 0x7E), (0xA0, 0xFF), (0x100, 0x17F),  # Latin, Latin-1, Latin Extended-A (Ă Đ Ĩ Ũ)
    (0x1A0, 0x1A1), (0x1AF, 0x1B0),  # Ơ ơ Ư ư
    (0x300, 0x323),  # combining marks (NFD input)
    (0x1EA0, 0x1EF9),  # Vietnamese letters with tone marks
    (0x2010, 0x2027), (0x2030, 0x203A), (0x20AB, 0x20AC),  # punctuation, ₫ €
)
FEATURES = ["ccmp", "locl", "mark", "mkmk", "kern"]
LAYOUT_TABLES = ("GSUB", "GPOS", "GDEF")


class SubsetCache:
    """Embedded font programs by the set of glyphs they hold. Every stamp also carries
    the ten digits, so the stamps of one signer (same name, role and school; another
    time) share one program: ~0.5 KB more per stamp, ~5 ms less CPU."""

    MAX_ENTRIES = 1024

    def __init__(self, outlines: Path, always_embedded: frozenset[int]) -> None:
        self.outlines = outlines
        self.always_embedded = always_embedded  # glyph ids of ALWAYS_EMBEDDED
        self._lock = threading.Lock()
        self._programs: dict[frozenset[int], bytes] = {}
        self.made = 0

    def program(self, gids: frozenset[int]) -> bytes:
        with self._lock:
            hit = self._programs.get(gids)
        if hit is not None:
            return hit
        data = self._subset(gids)
        with self._lock:
            if len(self._programs) >= self.MAX_ENTRIES:
                self._programs.clear()
            self._programs[gids] = data
            self.made += 1
        return data

    def _subset(self, gids: frozenset[int]) -> bytes:
        """What pyHanko embeds for these glyphs: a TrueType subset keeping glyph ids
        (the PDF addresses glyphs by id), no layout tables."""
        from fontTools import subset
        from fontTools.ttLib import TTFont

        options = subset.Options(layout_closure=False)
        options.drop_tables += list(LAYOUT_TABLES)
        options.retain_gids = True
        tt = TTFont(str(self.outlines), recalcBBoxes=False)
        subsetter = subset.Subsetter(options=options)
        subsetter.populate(gids=sorted(gids))
        subsetter.subset(tt)
        return _save(tt)


ALWAYS_EMBEDDED = "0123456789"  # a stamp's time; its punctuation is always there


@dataclass(frozen=True)
class StampFont:
    shaping: bytes  # the cut font, layout tables included
    outlines: Path  # the same glyphs without layout tables (a temporary file)
    subsets: SubsetCache
    parsed: ParsedFont  # the outlines, parsed once


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
    outlines = _save(tt)
    fd, name = tempfile.mkstemp(prefix="hocba-stamp-", suffix=".ttf")
    with os.fdopen(fd, "wb") as out:
        out.write(outlines)
    atexit.register(lambda: Path(name).unlink(missing_ok=True))
    cmap = tt.getBestCmap()
    digits = frozenset(tt.getGlyphID(cmap[ord(c)]) for c in ALWAYS_EMBEDDED if ord(c) in cmap)
    return StampFont(shaping=shaping, outlines=Path(name),
                     subsets=SubsetCache(Path(name), digits), parsed=ParsedFont(outlines))


def _save(tt: Any) -> bytes:
    import io

    buf = io.BytesIO()
    tt.save(buf)
    return buf.getvalue()


@dataclass(frozen=True)
class StampFontFactory(GlyphAccumulatorFactory):
    """pyHanko's factory over the outlines-only font (parsed once per process when
    `parsed` is given and the parsedfont fix is applied), shaping with the whole cut
    (one HarfBuzz face per process), embedding font programs from the process's
    SubsetCache instead of subsetting the font again for every stamp."""

    shaping_face: Any = None
    subsets: SubsetCache | None = None
    parsed: ParsedFont | None = None

    def create_font_engine(self, writer: Any, obj_stream: Any = None) -> GlyphAccumulator:
        import uharfbuzz as hb

        if self.parsed is None or self.subsets is None or not fixes.is_applied("parsedfont"):
            engine = super().create_font_engine(writer, obj_stream)
            engine.tt.recalcBBoxes = False  # glyphs are copied, not re-encoded
            if self.shaping_face is not None:
                engine.hb_font = hb.Font(self.shaping_face)
        else:
            if obj_stream is None and writer.stream_xrefs and self.create_objstream_if_needed:
                obj_stream = writer.prepare_object_stream()
            shaping = (self.shaping_face if self.shaping_face is not None
                       else hb.Face(self.parsed.data))
            engine = ParsedFontAccumulator(writer=writer, tt=self.parsed.tt,
                                           hb_font=hb.Font(shaping),
                                           font_size=self.font_size, obj_stream=obj_stream)
        if self.subsets is not None:
            subsets = self.subsets
            # pyHanko calls these two while writing the font: before it lists the widths,
            # then when it embeds the program.
            engine._extract_subset = functools.partial(  # type: ignore[method-assign]
                _add_glyphs, engine, subsets.always_embedded)
            engine.cidfont_obj.set_font_file = functools.partial(  # type: ignore[method-assign]
                _embed_program, engine, subsets)
        return engine


def _add_glyphs(engine: Any, gids: frozenset[int], options: Any = None) -> None:
    for gid in gids:
        engine._get_cid_and_width(gid)


def _embed_program(engine: Any, subsets: SubsetCache, writer: Any) -> Any:
    from pyhanko.pdf_utils import generic

    stream = generic.StreamObject(stream_data=subsets.program(frozenset(engine._glyphs)))
    stream.compress()
    ref = writer.add_object(stream)
    engine.cidfont_obj._font_descriptor[generic.pdf_name("/FontFile2")] = ref
    return ref


def stamp_font_factory(font: StampFont, face: Any, size: int) -> StampFontFactory:
    return StampFontFactory(str(font.outlines), font_size=size, shaping_face=face,
                            subsets=font.subsets, parsed=font.parsed)
