"""The stamp font, cut down once per process to what Vietnamese stamps use.

pyHanko parses (and subsets) the stamp font again for every visible signature; a full
Noto Sans (0.5 MB) costs ~100 ms of CPU each time. Keeping only Latin, Vietnamese, the
combining marks and punctuation, with the layout features that place diacritics, makes
that cost ~3x smaller (measured in bench/README.md)."""

from __future__ import annotations

import atexit
import os
import tempfile
from pathlib import Path

RANGES = ((0x20, 0x7E), (0xA0, 0x24F), (0x300, 0x36F), (0x1E00, 0x1EFF), (0x2000, 0x206F),
          (0x20AB, 0x20AB))
FEATURES = ["ccmp", "locl", "mark", "mkmk", "kern"]


def vietnamese_subset(font: Path) -> Path:
    """A temporary copy of `font` with only the glyphs and features stamps need."""
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
    fd, name = tempfile.mkstemp(prefix="hocba-stamp-", suffix=".ttf")
    with os.fdopen(fd, "wb") as out:
        tt.save(out)
    atexit.register(lambda: Path(name).unlink(missing_ok=True))
    return Path(name)
