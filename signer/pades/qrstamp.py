"""The verification stamp: a QR code for `<public base URL>/verify/<code>` and the
printed code, drawn on the record before its first signature, so every signature
covers it.

The stamp is an incremental update: the uploaded bytes stay, unchanged, the first
revision of the stamped file. pyHanko draws it (QRStamp: the QR code as vector paths,
the caption through the embedded stamp font of the signature appearances, so a PDF/A
upload stays PDF/A-clean); this module only places it, in the corner of the page's
crop box the policy names, upright as the page is shown (its /Rotate applied), and adds
a link annotation to the same URL (printable, as PDF/A wants every annotation)."""

from __future__ import annotations

import functools
import uuid
from io import BytesIO
from pathlib import Path
from typing import IO, Any

from pyhanko.pdf_utils import generic, layout
from pyhanko.pdf_utils.generic import pdf_name, pdf_string
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.text import TextBoxStyle
from pyhanko.stamp import QRPosition, QRStamp, QRStampStyle

from archive.verification import ALPHABET, display
from signer.errors import HocbaError, PdfRejected
from signer.policy import VerificationSpec

FONT_SIZE = 7
# The caption, beside the QR code; %(code)s is the printed code.
CAPTION = "Quét để xác thực học bạ\nMã xác thực:\n%(code)s"
ANNOT_PRINT = 4  # annotation flag: print (PDF/A: every annotation must print)


@functools.cache
def _prepared_font(path: Path) -> tuple[Any, Any, Any]:
    """The stamp font cut for Vietnamese (signer/pades/fonts.py), once per process, with
    a subset cache whose programs always hold every glyph a code can print: the caption
    is fixed, so every stamp embeds the same font program, subset once per process
    (~8 ms less CPU a record than subsetting for each code's letters)."""
    import uharfbuzz as hb

    from signer.pades.fonts import SubsetCache, prepare_stamp_font

    font = prepare_stamp_font(path)
    tt = font.parsed.tt
    cmap = tt.getBestCmap()
    gids = frozenset(tt.getGlyphID(cmap[ord(c)]) for c in ALPHABET + "-0123456789"
                     if ord(c) in cmap) | font.subsets.always_embedded
    return font, hb.Face(font.shaping), SubsetCache(font.outlines, gids)


def font_factory(font_path: Path, size: int = FONT_SIZE) -> Any:
    """A pyHanko font engine factory over the stamp font (the signature appearances'
    font, prepared the same way)."""
    from signer.pades.fonts import StampFontFactory

    font, face, subsets = _prepared_font(Path(font_path))
    return StampFontFactory(str(font.outlines), font_size=size, shaping_face=face,
                            subsets=subsets, parsed=font.parsed)


def stamp_to(pdf: bytes | IO[bytes], out: IO[bytes], *, url: str, code: str,
             spec: VerificationSpec, font: Any) -> None:
    """Write `pdf` (bytes, or a seekable file, read as pyHanko needs it, not whole)
    with the stamp appended as one incremental update to `out` (empty, seekable).
    `font` is a pyHanko font engine factory (`font_factory`). A document the stamp
    cannot be put on raises PdfRejected (pdf_not_stampable)."""
    stream: IO[bytes] = BytesIO(pdf) if isinstance(pdf, bytes) else pdf
    stream.seek(0)
    try:
        writer = IncrementalPdfFileWriter(stream)
        _apply(writer, url=url, code=code, spec=spec, font=font)
        writer.write(out)
    except HocbaError:
        raise
    except Exception as e:  # a document pyHanko read but cannot stamp: the caller's
        raise PdfRejected(
            f"the verification QR code cannot be added to this PDF: "
            f"{type(e).__name__}: {e}", code="pdf_not_stampable") from e
    finally:
        stream.seek(0)


def stamp(pdf: bytes | IO[bytes], *, url: str, code: str, spec: VerificationSpec,
          font: Any) -> bytes:
    """`stamp_to` into memory."""
    out = BytesIO()
    stamp_to(pdf, out, url=url, code=code, spec=spec, font=font)
    return out.getvalue()


def page_index(spec_page: int, page_count: int) -> int:
    """0-based index of the policy's 1-based page (negative: from the end), clamped to
    the document (as signature field pages are)."""
    ix = spec_page - 1 if spec_page > 0 else page_count + spec_page
    return min(max(ix, 0), page_count - 1)


def _inherited(page: generic.DictionaryObject, key: str) -> Any:
    node: Any = page
    for _ in range(64):  # page trees are shallow; a loop in /Parent must not hang us
        if key in node:
            return node[key]
        parent = node.get("/Parent")
        if parent is None:
            return None
        node = parent.get_object()
    return None


def _rect(value: Any) -> tuple[float, float, float, float] | None:
    try:
        x1, y1, x2, y2 = (float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)


def visible_box(page: generic.DictionaryObject) -> tuple[float, float, float, float]:
    """The page's crop box (inherited or its own, defaulting to the media box) cut to
    its media box: the part of the page a viewer shows and a printer prints."""
    media = _rect(_inherited(page, "/MediaBox"))
    if media is None:
        raise ValueError("the page has no usable /MediaBox")
    crop = _rect(_inherited(page, "/CropBox")) or media
    box = (max(crop[0], media[0]), max(crop[1], media[1]),
           min(crop[2], media[2]), min(crop[3], media[3]))
    if box[2] <= box[0] or box[3] <= box[1]:
        return media
    return box


def rotation(page: generic.DictionaryObject) -> int:
    value = _inherited(page, "/Rotate")
    try:
        return int(value or 0) % 360 // 90 * 90
    except (TypeError, ValueError):
        return 0


def placement_matrix(box: tuple[float, float, float, float], rotate: int,
                     stamp_w: float, stamp_h: float, position: str, margin: float
                     ) -> tuple[float, float, float, float, float, float]:
    """The `cm` matrix that draws a stamp_w x stamp_h stamp upright, `margin` points in
    from the `position` corner of the page as shown (crop box, /Rotate applied)."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    shown_w, shown_h = (w, h) if rotate in (0, 180) else (h, w)
    if stamp_w + 2 * margin > shown_w or stamp_h + 2 * margin > shown_h:
        raise PdfRejected(
            f"the page ({shown_w:.0f} x {shown_h:.0f} pt) is too small for the "
            f"verification stamp ({stamp_w:.0f} x {stamp_h:.0f} pt and {margin} pt "
            "margins)", code="pdf_not_stampable")
    vertical, horizontal = position.split("-")
    dx = margin if horizontal == "left" else shown_w - margin - stamp_w
    dy = margin if vertical == "bottom" else shown_h - margin - stamp_h
    # Shown coordinates (origin bottom left of the page as displayed) -> user space.
    if rotate == 90:
        return 0, 1, -1, 0, x1 - dy, y0 + dx
    if rotate == 180:
        return -1, 0, 0, -1, x1 - dx, y1 - dy
    if rotate == 270:
        return 0, -1, 1, 0, x0 + dy, y1 - dx
    return 1, 0, 0, 1, x0 + dx, y0 + dy


def _style(spec: VerificationSpec, font: Any) -> QRStampStyle:
    # The caption sits on the page's inner side of the QR code.
    qr_position = (QRPosition.RIGHT_OF_TEXT if spec.position.endswith("right")
                   else QRPosition.LEFT_OF_TEXT)
    return QRStampStyle(
        stamp_text=CAPTION,
        text_box_style=TextBoxStyle(font=font, font_size=FONT_SIZE),
        border_width=0,
        innsep=0,  # the QR code brings its own quiet zone (4 modules)
        qr_inner_size=spec.size,
        qr_position=qr_position,
        inner_content_layout=layout.SimpleBoxLayoutRule(
            x_align=layout.AxisAlignment.ALIGN_MID, y_align=layout.AxisAlignment.ALIGN_MID,
            inner_content_scaling=layout.InnerScaling.NO_SCALING),
    )


def _apply(writer: IncrementalPdfFileWriter, *, url: str, code: str,
           spec: VerificationSpec, font: Any) -> None:
    page_count = int(writer.root["/Pages"]["/Count"])
    ix = page_index(spec.page, page_count)
    page_ref, _resources = writer.find_page_for_modification(ix)
    page = page_ref.get_object()
    box, rotate = visible_box(page), rotation(page)

    qr = QRStamp(writer, url=url, style=_style(spec, font),
                 text_params={"code": display(code)})
    stamp_ref = qr.register()  # renders it: its box is known from here on
    stamp_w, stamp_h = float(qr.box.width), float(qr.box.height)
    matrix = placement_matrix(box, rotate, stamp_w, stamp_h, spec.position, spec.margin)

    # As pyHanko's BaseStamp.apply: the page's own content in q/Q (whatever graphics
    # state it leaves), then the stamp, in the page's default user space.
    name = f"/HocbaQR{uuid.uuid4().hex}"  # no clash with the page's own resources
    writer.add_stream_to_page(
        ix, writer.add_object(generic.StreamObject(stream_data=b"q")), prepend=True)
    writer.add_stream_to_page(ix, writer.add_object(generic.StreamObject(stream_data=b"Q")))
    paint = b"q %s cm %s Do Q" % (b" ".join(b"%g" % round(v, 4) for v in matrix),
                                  name.encode("ascii"))
    writer.add_stream_to_page(
        ix, writer.add_object(generic.StreamObject(stream_data=paint)),
        generic.DictionaryObject({pdf_name("/XObject"): generic.DictionaryObject(
            {pdf_name(name): stamp_ref})}))

    a, b, c, d, e, f = matrix
    xs = [e + a * sx + c * sy for sx, sy in ((0, 0), (stamp_w, 0), (0, stamp_h),
                                             (stamp_w, stamp_h))]
    ys = [f + b * sx + d * sy for sx, sy in ((0, 0), (stamp_w, 0), (0, stamp_h),
                                             (stamp_w, stamp_h))]
    link = generic.DictionaryObject({
        pdf_name("/Type"): pdf_name("/Annot"),
        pdf_name("/Subtype"): pdf_name("/Link"),
        pdf_name("/Rect"): generic.ArrayObject(
            generic.FloatObject(round(v, 4)) for v in (min(xs), min(ys), max(xs), max(ys))),
        pdf_name("/F"): generic.NumberObject(ANNOT_PRINT),
        pdf_name("/Border"): generic.ArrayObject([generic.NumberObject(0)] * 3),
        pdf_name("/A"): generic.DictionaryObject({
            pdf_name("/S"): pdf_name("/URI"),
            pdf_name("/URI"): pdf_string(url),
        }),
    })
    writer.register_annotation(page_ref, writer.add_object(link))
