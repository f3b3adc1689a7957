"""The engine of the parsedfont fix (signer/fixes/parsedfont.py): pyHanko's
GlyphAccumulator over a font parsed once."""

from __future__ import annotations

from typing import Any

from pyhanko.pdf_utils.font.api import FontEngine
from pyhanko.pdf_utils.font.opentype import (
    CIDFont,
    CIDFontType0,
    CIDFontType2,
    GlyphAccumulator,
    _check_ot_tag,
    _read_ps_name,
)


class ParsedFontAccumulator(GlyphAccumulator):
    """pyHanko's GlyphAccumulator over `tt` (parsed) shaping with `hb_font`."""

    def __init__(self, writer: Any, tt: Any, hb_font: Any, font_size: Any,
                 features: Any = None, ot_language_tag: Any = None,
                 ot_script_tag: Any = None, writing_direction: Any = None,
                 bcp47_lang_code: Any = None, obj_stream: Any = None) -> None:
        # GlyphAccumulator.__init__ of pyHanko 0.38.0 without reading and parsing a file
        self.hb_font = hb_font
        self.tt = tt
        base_ps_name = _read_ps_name(tt)
        FontEngine.__init__(self, writer, base_ps_name, embedded_subset=True,
                            obj_stream=obj_stream, font_size=font_size)
        self._font_ref = writer.allocate_placeholder()
        self.cidfont_obj: CIDFont
        try:
            cff = self.tt["CFF "]
            self.cff_charset = cff.cff[0].charset
            self.cidfont_obj = cidfont_obj = CIDFontType0(tt, base_ps_name, self.subset_prefix)
            self.use_raw_gids = cidfont_obj.use_raw_gids
        except KeyError:
            self.cff_charset = None
            self.use_raw_gids = True
            self.cidfont_obj = CIDFontType2(tt, base_ps_name, self.subset_prefix)
        self.features = features
        self.units_per_em = tt["head"].unitsPerEm
        self._glyphs: dict[int, tuple[int, int]] = {}
        self._glyph_set = tt.getGlyphSet(preferCFF=True)
        self._cid_to_unicode: dict[int, str] = {}
        self._GlyphAccumulator__reverse_cmap = None  # pyHanko's private (name-mangled)
        self.ot_language_tag = _check_ot_tag(ot_language_tag)
        self.ot_script_tag = _check_ot_tag(ot_script_tag)
        if writing_direction is not None and writing_direction not in (
                "ltr", "rtl", "ttb", "btt"):
            raise ValueError("Writing direction must be one of 'ltr', 'rtl', 'ttb' or 'btt'.")
        self.writing_direction = writing_direction
        self.bcp47_lang_code = bcp47_lang_code
        self._subset_created = self._write_prepared = False
