"""A pyHanko font engine over a font parsed once per process.

pyHanko's `GlyphAccumulator` parses its font file (fontTools, pure Python) for every
engine, i.e. for every visible signature: ~2 ms a stamp for hocba's cut stamp font
(bench/README.md). `ParsedFontAccumulator` is a `GlyphAccumulator` handed the parsed
`TTFont` and the HarfBuzz font instead. The TTFont is shared by threads, so nothing
may change it: every table is decompiled before it is shared (`ParsedFont`), and the
engines that use it never subset it (signer/pades/fonts.py embeds programs from its
own cache).

A subclass, no global change (it replaces the module-proxy swap of
`pyhanko.pdf_utils.font.opentype.ttLib`). pyHanko's `__init__` has no parameter for a
parsed font, so `__init__` below is pyHanko 0.38.0's with the two parses taken out,
hence the version check; signer/pades/fonts.py uses it only once `signer.fixes.apply()`
accepted it. The engine is in parsedfont_engine.py, so that `apply()` (which reads
this declaration) does not import fontTools. Upstream proposal: docs/upstream/parsedfont.md."""

from __future__ import annotations

import io

from signer.fixes import Fix


class ParsedFont:
    """A font program parsed once, every table decompiled: safe to share read-only."""

    def __init__(self, data: bytes) -> None:
        from fontTools.ttLib import TTFont

        self.data = data
        self.tt = TTFont(io.BytesIO(data), recalcBBoxes=False)
        self.tt.ensureDecompiled()


FIX = Fix(name="parsedfont", library="pyHanko", versions=("0.38.0",))
