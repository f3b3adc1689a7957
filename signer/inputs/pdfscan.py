"""The check on an uploaded record PDF: structure, signatures, and no active content.

A record must render the same forever, so a PDF is refused if anything in it can
run code, fetch or launch something, carry other files, or act on its own.

Every object is judged by `_ObjectWalk` over pyHanko's strict reader (the reader that
signs it later), unless qpdf, reading it in C++ first, finds it plainly clean
(`_qpdf_screen_clean`): then the walk, ~85 µs of pure Python per object, is spared. The
screen only ever says "clean" or "ask the walk"; the walk words every refusal, so
refusals are the same either way (tests/unit/test_pdfscreen.py compares both).
"""

from __future__ import annotations

import html
import json
import os
import re
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from io import BytesIO
from typing import IO, Any, BinaryIO, cast

import pikepdf
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.decode_limits import DecodePurpose
from pyhanko.pdf_utils.reader import PdfFileReader

from signer.errors import HocbaError, InvalidInput, PdfRejected, RequestError
from signer.inputs.text import safe_text

__all__ = ["PdfFacts", "check_pdf"]

# Action types (/S) that run code, reach outside the document, or play media.
ACTIVE_ACTION_TYPES: frozenset[str] = frozenset(
    {
        "/JavaScript",
        "/Launch",
        "/SubmitForm",
        "/ImportData",
        "/GoToR",
        "/GoToE",
        "/RichMediaExecute",
        "/Movie",
        "/Sound",
        "/Rendition",
    }
)
# Annotation types (/Subtype) that embed media, 3D scenes (which may carry
# JavaScript) or files.
ACTIVE_ANNOTATION_TYPES: frozenset[str] = frozenset(
    {"/RichMedia", "/Movie", "/Sound", "/Screen", "/3D", "/FileAttachment"}
)
# Keys that are active content wherever they appear.
ACTIVE_KEYS: Mapping[str, str] = {
    "/JS": "JavaScript (/JS)",
    "/JavaScript": "JavaScript name tree (/JavaScript)",
    "/AA": "additional actions (/AA)",
    "/EmbeddedFiles": "embedded files (/EmbeddedFiles)",
    "/EF": "embedded file (/EF)",
    "/XFA": "XFA form (/XFA)",
}

_EOF_WINDOW = 1024  # as readers do: %%EOF must be within the last 1 KiB
_MAX_LISTED = 5  # findings named in an error's detail
_MAX_PATH = 160  # characters of an object path named in a detail
_MAX_REF_CHAIN = 32  # a reference to a reference to ...
_PDFA_NS = "http://www.aiim.org/pdfa/ns/id/"


@dataclass(frozen=True)
class PdfFacts:
    """What an accepted PDF is: only ever built for a document that passed."""

    page_count: int
    pdf_version: str
    """Effective version, e.g. ``"1.7"``: the header's, or the catalog's /Version if later."""
    header_version: str
    producer: str | None
    has_acroform: bool
    existing_signature_fields: tuple[str, ...]
    """Fully qualified names of the (empty) signature fields already in the document.

    None of them is signed: a document with a filled signature field is refused.
    """
    is_pdfa: bool
    """XMP metadata carries a PDF/A identification (pdfaid) schema."""
    pdfa_conformance: str | None
    """E.g. ``"2B"``, when ``is_pdfa``."""
    revisions: int
    """Number of cross-reference sections (1 + incremental updates)."""


def check_pdf(data: bytes | IO[bytes], *, max_bytes: int) -> PdfFacts:
    """Accept an uploaded record PDF (bytes, or a seekable file: a large upload need not
    be in memory) or raise a request error with a stable code."""
    if isinstance(data, bytes | bytearray | memoryview):
        stream: IO[bytes] = BytesIO(data)
    else:
        stream = data
    size = stream.seek(0, os.SEEK_END)
    if size > max_bytes:
        raise RequestError(
            f"the PDF is {size} bytes; at most {max_bytes} are accepted",
            status=413,
            code="pdf_too_large",
        )
    stream.seek(0)
    if stream.read(5) != b"%PDF-":
        raise PdfRejected(
            "the document is not a PDF (it must begin with %PDF-)",
            code="pdf_not_a_pdf",
        )
    stream.seek(max(size - _EOF_WINDOW, 0))
    if b"%%EOF" not in stream.read(_EOF_WINDOW):
        raise PdfRejected(
            "the PDF has no %%EOF marker at its end (truncated?)", code="pdf_malformed"
        )
    stream.seek(0)
    try:
        return _inspect_pdf(stream)
    except HocbaError:
        raise
    except Exception as e:  # anything the parser throws at garbage is a malformed file
        raise PdfRejected(
            f"the PDF cannot be read: {_describe_exception(e)}", code="pdf_malformed"
        ) from e
    finally:
        stream.seek(0)


def _malformed(detail: str) -> PdfRejected:
    return PdfRejected(detail, code="pdf_malformed")


def _inspect_pdf(stream: IO[bytes]) -> PdfFacts:
    reader = PdfFileReader(stream, strict=True)
    if "/Encrypt" in reader.trailer:
        raise PdfRejected(
            "the PDF is encrypted; upload a plain, unencrypted document",
            code="pdf_encrypted",
        )

    root_raw = reader.trailer.raw_get("/Root")
    if not isinstance(root_raw, generic.IndirectObject):
        raise _malformed("the trailer has no /Root reference")
    root = reader.get_object(root_raw.reference)
    if not isinstance(root, generic.DictionaryObject):
        raise _malformed("the document catalog is not a dictionary")

    findings: list[str] = []
    signatures: list[str] = []
    if not _qpdf_screen_clean(stream, reader):
        walk = _ObjectWalk(reader)
        walk.run()
        findings, signatures = walk.findings, walk.signatures
    page_count = _count_pages(reader, root)
    sig_fields, has_acroform = _signature_fields(reader, root)

    signed = list(signatures)
    signed += [
        f"signature field '{safe_text(name, 64)}' is signed"
        for name, is_signed in sig_fields
        if is_signed
    ]
    if signed:
        raise InvalidInput(
            "the PDF already contains signatures; records must arrive unsigned ("
            + _summarise(signed)
            + ")",
            code="pdf_already_signed",
        )
    if findings:
        raise InvalidInput(
            "the PDF contains active content: " + _summarise(findings),
            code="pdf_active_content",
        )

    stream.seek(0)
    header_match = re.match(rb"%PDF-([0-9])\.([0-9])", stream.read(16))
    if header_match is None:
        raise _malformed("the PDF header has no version number")
    header_version = (int(header_match.group(1)), int(header_match.group(2)))
    effective = max(header_version, _catalog_version(reader, root) or (0, 0))
    xmp = _xmp_bytes(reader, root)
    pdfa = _pdfa_conformance(xmp) if xmp is not None else None
    return PdfFacts(
        page_count=page_count,
        pdf_version=f"{effective[0]}.{effective[1]}",
        header_version=f"{header_version[0]}.{header_version[1]}",
        producer=_producer(reader, xmp),
        has_acroform=has_acroform,
        existing_signature_fields=tuple(name for name, _ in sig_fields),
        is_pdfa=pdfa is not None,
        pdfa_conformance=pdfa or None,
        revisions=reader.xrefs.total_revisions,
    )


# Where an object was reached: a linked list (parent, segment) ending in a root
# label ("" for the trailer, _ORPHAN for objects found only through the xref),
# rendered only when something is reported.
_Path = tuple["_Path", str] | str
_Owner = tuple[int, int] | None
_ORPHAN = "orphan"


def _where(path: _Path, owner: _Owner) -> str:
    segments: list[str] = []
    node = path
    while isinstance(node, tuple):
        node, segment = node
        segments.append(segment)
    text = "".join(reversed(segments))
    if len(text) > _MAX_PATH:
        text = "…" + text[-_MAX_PATH:]
    obj = f"object {owner[0]} {owner[1]}" if owner else ""
    if node == _ORPHAN:
        where = f"{obj} (not reachable from the catalog)"
        return f"{text} of {where}" if text else where
    if not text:
        return "the trailer"
    return f"{text} ({obj})" if obj else text


def _summarise(items: list[str]) -> str:
    shown = "; ".join(items[:_MAX_LISTED])
    if len(items) > _MAX_LISTED:
        shown += f"; and {len(items) - _MAX_LISTED} more"
    return shown


def _describe_exception(e: BaseException) -> str:
    message = safe_text(str(e), 160)
    return f"{type(e).__name__}: {message}" if message else type(e).__name__


def _is_name_in(value: object, names: frozenset[str]) -> bool:
    return isinstance(value, generic.NameObject) and value in names


class _ObjectWalk:
    """Visit every object reachable from the trailer, then every live object in
    the cross-reference sections, each once, iteratively (a visited set of
    object numbers; direct objects cannot form cycles); collect what is active
    content and what is a signature."""

    def __init__(self, reader: PdfFileReader) -> None:
        self.reader = reader
        self.seen: set[tuple[int, int]] = set()
        self.findings: list[str] = []
        self.signatures: list[str] = []
        self._reported: set[str] = set()
        self._queue: deque[tuple[Any, _Path, _Owner]] = deque()

    def run(self) -> None:
        trailer = self.reader.trailer_view
        for key, value in dict.items(trailer):
            self._queue.append((value, ("", "/" + safe_text(key[1:])), None))
        self._drain()
        for idnum, generation in _live_refs(self.reader):
            if (idnum, generation) not in self.seen:
                ref = generic.IndirectObject(idnum, generation, self.reader)
                self._queue.append((ref, _ORPHAN, None))
                self._drain()

    def _drain(self) -> None:
        queue = self._queue
        while queue:
            obj, path, owner = queue.popleft()
            if isinstance(obj, generic.IndirectObject):
                key = (obj.idnum, obj.generation)
                if key in self.seen:
                    continue
                self.seen.add(key)
                if self.reader.xrefs[obj.reference] is None:
                    continue  # a reference to an undefined object is null (ISO 32000 7.3.10)
                queue.append((self.reader.get_object(obj.reference), path, key))
            elif isinstance(obj, generic.DictionaryObject):
                self._check_dict(obj, path, owner)
                for key_name, value in dict.items(obj):
                    queue.append((value, (path, "/" + safe_text(key_name[1:])), owner))
            elif isinstance(obj, generic.ArrayObject):
                for index, value in enumerate(list.__iter__(obj)):
                    queue.append((value, (path, f"[{index}]"), owner))

    def _resolve(self, obj: Any) -> Any:
        for _ in range(_MAX_REF_CHAIN):
            if not isinstance(obj, generic.IndirectObject):
                return obj
            if self.reader.xrefs[obj.reference] is None:
                return None
            obj = self.reader.get_object(obj.reference)
        raise _malformed("a chain of references to references is too long")

    def _report(self, what: str, path: _Path, owner: _Owner) -> None:
        message = f"{what} in {_where(path, owner)}"
        if message not in self._reported:
            self._reported.add(message)
            self.findings.append(message)

    def _check_dict(self, d: generic.DictionaryObject, path: _Path, owner: _Owner) -> None:
        type_ = self._resolve(dict.get(d, "/Type"))
        action = self._resolve(dict.get(d, "/S"))
        # Viewers run an action whatever its /Type says; only structure elements use
        # /S for something else (their structure type), so only they are exempt.
        is_structure = type_ == "/StructElem"
        is_active_action = _is_name_in(action, ACTIVE_ACTION_TYPES) and not is_structure
        if is_active_action:
            self._report(f"{str(action)[1:]} action", path, owner)

        for key, what in ACTIVE_KEYS.items():
            if key in d and not (key == "/JS" and action == "/JavaScript" and is_active_action):
                self._report(what, path, owner)

        subtype = self._resolve(dict.get(d, "/Subtype"))
        if _is_name_in(subtype, ACTIVE_ANNOTATION_TYPES) and not is_structure:
            self._report(f"{str(subtype)[1:]} annotation", path, owner)
        if type_ == "/EmbeddedFile":
            self._report("embedded file stream", path, owner)

        needs_rendering = self._resolve(dict.get(d, "/NeedsRendering"))
        if isinstance(needs_rendering, generic.BooleanObject) and needs_rendering.value:
            self._report("dynamic XFA form (/NeedsRendering)", path, owner)

        if "/OpenAction" in d:
            on_open = self._resolve(dict.get(d, "/OpenAction"))
            if isinstance(on_open, generic.DictionaryObject):
                kind = self._resolve(dict.get(on_open, "/S"))
                if not _is_name_in(kind, ACTIVE_ACTION_TYPES):  # reported on their own
                    self._report(
                        f"action run on open (/S {safe_text(kind)})",
                        (path, "/OpenAction"),
                        owner,
                    )

        if "/ByteRange" in d and "/Contents" in d:
            kind = "document timestamp" if type_ == "/DocTimeStamp" else "signature"
            self.signatures.append(f"{kind} value in {_where(path, owner)}")
        elif type_ == "/Catalog" and "/Perms" in d:
            self.signatures.append(f"signature permissions (/Perms) in {_where(path, owner)}")


# Every name the walk above acts on, as qpdf's JSON writes it (a name in canonical form,
# quoted); /OpenAction only matters when it is an action, not a destination.
_SCREEN_TOKENS = re.compile(
    b'"('
    + b"|".join(
        re.escape(name.encode())
        for name in sorted(
            {*ACTIVE_ACTION_TYPES, *ACTIVE_ANNOTATION_TYPES, *ACTIVE_KEYS, "/EmbeddedFile",
             "/NeedsRendering", "/ByteRange", "/Perms"}
        )
    )
    + b')"'
)
_CONTAINERS = (generic.DictionaryObject, generic.ArrayObject, generic.IndirectObject)
# qpdf reads NUL and other control bytes as whitespace where strict pyHanko refuses the
# object; outside stream data (and literal strings: those fall back) there are none.
_ODD_SYNTAX_BYTE = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SCREEN_MAX_BYTES = 64 * 2**20  # above: the walk alone, the file never wholly in memory
_OBJECT_STREAM = b'"/ObjStm"'
_OPEN_ACTION = b'"/OpenAction"'
# A name qpdf read that pyHanko may not: bytes outside printable ASCII (raw UTF-8, JSON
# escapes, or "n:/..." when not UTF-8), which strict pyHanko refuses unescaped.
_UNUSUAL_NAME = re.compile(rb'"n:/|"/[^"]*?[^\x20-\x5b\x5d-\x7e"]')
_BARE_REFERENCE = re.compile(rb'"\d+ \d+ R"')
_JSON_REFERENCE = re.compile(r"(\d+) (\d+) R")


def _qpdf_screen_clean(stream: IO[bytes], reader: PdfFileReader) -> bool:
    """True when qpdf (C++, through pikepdf) reads every object without a warning, holds
    the same objects as pyHanko's cross-reference data, and none of them carries a name
    _ObjectWalk would act on. Anything else (even a harmless /OpenAction destination
    held by reference) goes to that walk, which alone words refusals: the screen only
    spares clean files pyHanko's pure-Python read of every object (~85 µs each)."""
    size = stream.seek(0, os.SEEK_END)
    if size > _SCREEN_MAX_BYTES:
        return False
    stream.seek(0)
    if _odd_syntax(stream.read()):
        return False
    live = list(_live_refs(reader))
    for value in dict.values(reader.trailer_view):  # direct objects: checked here
        items = list.__iter__(value) if isinstance(value, generic.ArrayObject) else ()
        if isinstance(value, generic.DictionaryObject) or any(
            isinstance(v, _CONTAINERS) for v in items
        ):
            return False
    stream.seek(0)
    try:
        with pikepdf.open(cast(BinaryIO, stream), attempt_recovery=False,
                          inherit_page_attributes=False, conversion_mode="explicit") as pdf:
            if len(pdf.objects) != len(live):
                return False
            texts = []
            for idnum, generation in live:
                obj = pdf.get_object(idnum, generation)
                if obj is None:
                    return False
                if not isinstance(obj, pikepdf.Object):
                    continue  # a number: nothing to act on
                text = obj.to_json(dereference=True)
                if _BARE_REFERENCE.fullmatch(text):
                    return False
                if _OBJECT_STREAM in text and not _decodes(reader, idnum, generation):
                    return False  # qpdf forgives a bad checksum; pyHanko reads through it
                texts.append(text)
            if pdf.get_warnings():
                return False
            joined = b"\n".join(texts)
            if _SCREEN_TOKENS.search(joined) or _UNUSUAL_NAME.search(joined):
                return False
            return all(_OPEN_ACTION not in text or _open_actions_are_destinations(pdf, text)
                       for text in texts)
    except Exception:  # qpdf refused it: the walk says why, in pyHanko's words
        return False
    finally:
        stream.seek(0)


def _odd_syntax(data: bytes) -> bool:
    """A control byte anywhere but between a `stream` keyword and the next `endstream`
    (or a stream without an end)."""
    at = 0
    while True:
        start = data.find(b"stream", at)
        end = len(data) if start < 0 else start
        if _ODD_SYNTAX_BYTE.search(data, at, end):
            return True
        if start < 0:
            return False
        close = data.find(b"endstream", start + 6)
        if close < 0:
            return True  # no end to the stream data: let the walk judge
        at = close + 9


def _decodes(reader: PdfFileReader, idnum: int, generation: int) -> bool:
    try:
        stream = reader.get_object(generic.Reference(idnum, generation))
        return not isinstance(stream, generic.StreamObject) or stream.data is not None
    except Exception:
        return False


def _open_actions_are_destinations(pdf: pikepdf.Pdf, text: bytes) -> bool:
    pending = [json.loads(text)]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            if "/OpenAction" in node:
                value = node["/OpenAction"]
                match = (_JSON_REFERENCE.fullmatch(value) if isinstance(value, str)
                         else None)
                if match is not None:
                    target = pdf.get_object(int(match.group(1)), int(match.group(2)))
                    if not isinstance(target, pikepdf.Array):
                        return False
                elif not isinstance(value, list):
                    return False
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    return True


def _live_refs(reader: PdfFileReader) -> Iterator[tuple[int, int]]:
    """(idnum, generation) of every object in use after the last revision."""
    live: dict[int, int] = {}
    xrefs = reader.xrefs
    for revision in range(xrefs.total_revisions):
        freed = xrefs.refs_freed_in_revision(revision)
        for ref in xrefs.explicit_refs_in_revision(revision):
            if ref.generation < 0 or ref in freed:
                live.pop(ref.idnum, None)
            else:
                live[ref.idnum] = ref.generation
    yield from sorted(live.items())


def _deref_strict(reader: PdfFileReader, obj: Any) -> Any:
    for _ in range(_MAX_REF_CHAIN):
        if not isinstance(obj, generic.IndirectObject):
            return obj
        obj = reader.get_object(obj.reference)
    raise _malformed("a chain of references to references is too long")


def _count_pages(reader: PdfFileReader, root: generic.DictionaryObject) -> int:
    if "/Pages" not in root:
        raise _malformed("the document catalog has no page tree (/Pages)")
    tree_root = _deref_strict(reader, dict.__getitem__(root, "/Pages"))
    if not isinstance(tree_root, generic.DictionaryObject):
        raise _malformed("the page tree root is not a dictionary")

    seen: set[tuple[int, int]] = set()
    pages = 0
    stack: list[generic.PdfObject] = [dict.__getitem__(root, "/Pages")]
    while stack:
        raw = stack.pop()
        if isinstance(raw, generic.IndirectObject):
            key = (raw.idnum, raw.generation)
            if key in seen:
                raise _malformed(f"the page tree reaches object {key[0]} {key[1]} twice")
            seen.add(key)
        node = _deref_strict(reader, raw)
        if not isinstance(node, generic.DictionaryObject):
            raise _malformed("a page tree node is not a dictionary")
        if "/Kids" in node:
            kids = _deref_strict(reader, dict.__getitem__(node, "/Kids"))
            if not isinstance(kids, generic.ArrayObject):
                raise _malformed("a page tree node's /Kids is not an array")
            stack.extend(reversed(kids))
        elif dict.get(node, "/Type") == "/Pages":
            raise _malformed("a page tree node has no /Kids")
        else:
            pages += 1

    declared = _deref_strict(reader, dict.get(tree_root, "/Count", generic.NullObject()))
    if not isinstance(declared, int) or declared != pages:
        shown = declared if isinstance(declared, int) else "(none)"
        raise _malformed(f"the page tree declares /Count {shown} but holds {pages} pages")
    if pages == 0:
        raise _malformed("the PDF has no pages")
    return pages


def _signature_fields(
    reader: PdfFileReader, root: generic.DictionaryObject
) -> tuple[list[tuple[str, bool]], bool]:
    """((qualified name, signed?) of each terminal /Sig field, has an AcroForm)."""
    if "/AcroForm" not in root:
        return [], False
    form = _deref_strict(reader, dict.__getitem__(root, "/AcroForm"))
    if isinstance(form, generic.NullObject):
        return [], False
    if not isinstance(form, generic.DictionaryObject):
        raise _malformed("/AcroForm is not a dictionary")
    fields = _deref_strict(reader, dict.get(form, "/Fields", generic.ArrayObject()))
    if not isinstance(fields, generic.ArrayObject):
        raise _malformed("/AcroForm /Fields is not an array")

    found: list[tuple[str, bool]] = []
    seen: set[tuple[int, int]] = set()
    # (field, parent's qualified name, inherited /FT, inherited /V)
    stack: list[tuple[generic.PdfObject, str, object, object]] = [
        (f, "", None, None) for f in reversed(fields)
    ]
    while stack:
        raw, parent_name, ft, value = stack.pop()
        if isinstance(raw, generic.IndirectObject):
            key = (raw.idnum, raw.generation)
            if key in seen:
                raise _malformed(f"the form field tree reaches object {key[0]} {key[1]} twice")
            seen.add(key)
        node = _deref_strict(reader, raw)
        if not isinstance(node, generic.DictionaryObject):
            raise _malformed("a form field is not a dictionary")
        partial = _deref_strict(reader, dict.get(node, "/T", generic.NullObject()))
        name = parent_name
        if isinstance(partial, (generic.TextStringObject, generic.ByteStringObject, str)):
            text = partial.decode("latin-1") if isinstance(partial, bytes) else str(partial)
            name = f"{parent_name}.{text}" if parent_name else text
        ft = _deref_strict(reader, dict.get(node, "/FT", ft))
        value = dict.get(node, "/V", value)

        kids_raw = dict.get(node, "/Kids")
        kids = _deref_strict(reader, kids_raw) if kids_raw is not None else None
        child_fields = []
        if isinstance(kids, generic.ArrayObject):
            for kid in list.__iter__(kids):
                kid_obj = _deref_strict(reader, kid)
                if isinstance(kid_obj, generic.DictionaryObject) and "/T" in kid_obj:
                    child_fields.append(kid)
        if child_fields:
            stack.extend((k, name, ft, value) for k in reversed(child_fields))
        elif ft == "/Sig":
            v = _deref_strict(reader, value) if value is not None else None
            found.append((name or "(unnamed)", isinstance(v, generic.DictionaryObject)))
    return found, True


def _catalog_version(
    reader: PdfFileReader, root: generic.DictionaryObject
) -> tuple[int, int] | None:
    version = _deref_strict(reader, dict.get(root, "/Version", generic.NullObject()))
    match = re.fullmatch(r"/(\d)\.(\d)", str(version)) if isinstance(version, str) else None
    return (int(match.group(1)), int(match.group(2))) if match else None


def _xmp_bytes(reader: PdfFileReader, root: generic.DictionaryObject) -> bytes | None:
    if "/Metadata" not in root:
        return None
    stream = _deref_strict(reader, dict.__getitem__(root, "/Metadata"))
    if not isinstance(stream, generic.StreamObject):
        return None
    return stream.read_data(DecodePurpose.XMP_METADATA)


def _pdfa_conformance(xmp: bytes) -> str | None:
    """'2B' etc. for PDF/A; '' when pdfaid is declared without a readable part."""
    text = xmp.decode("utf-8", errors="replace")
    prefixes = re.findall(r"xmlns:([\w.-]+)\s*=\s*[\"']" + re.escape(_PDFA_NS) + "[\"']", text)
    for prefix in prefixes:
        part = _xmp_property(text, prefix, "part")
        if part is None:
            return ""
        conformance = _xmp_property(text, prefix, "conformance") or ""
        return safe_text(part + conformance.upper(), 8)
    return None


def _xmp_property(text: str, prefix: str, name: str) -> str | None:
    p = re.escape(f"{prefix}:{name}")
    match = re.search(p + r"\s*=\s*[\"']([^\"'<]*)[\"']", text) or re.search(
        "<" + p + r">([^<]*)</" + p + ">", text
    )
    return html.unescape(match.group(1)).strip() if match else None


def _producer(reader: PdfFileReader, xmp: bytes | None) -> str | None:
    info = _deref_strict(reader, dict.get(reader.trailer_view, "/Info"))
    if isinstance(info, generic.DictionaryObject) and "/Producer" in info:
        producer = _deref_strict(reader, dict.__getitem__(info, "/Producer"))
        if isinstance(producer, str):
            return producer
        if isinstance(producer, bytes):
            return producer.decode("latin-1")
    if xmp is not None:
        value = _xmp_property(xmp.decode("utf-8", errors="replace"), "pdf", "Producer")
        if value:
            return value
    return None
