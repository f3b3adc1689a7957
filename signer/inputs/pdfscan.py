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
from pyhanko.pdf_utils.metadata import model as xmp_model
from pyhanko.pdf_utils.metadata import xmp_xml
from pyhanko.pdf_utils.reader import PdfFileReader

from signer.errors import HocbaError, InvalidInput, PdfRejected, RequestError
from signer.inputs.text import safe_text

__all__ = ["DEFAULT_MAX_NESTING", "DEFAULT_MAX_OBJECTS", "DEFAULT_MAX_PAGES",
           "DEFAULT_MAX_TREE_DEPTH", "PdfFacts", "check_pdf"]

# Limits (Settings: max_pdf_pages, max_pdf_objects, max_pdf_tree_depth). A record has
# 2-30 pages, a few hundred objects and a page tree 1-3 levels deep.
DEFAULT_MAX_PAGES = 2000
DEFAULT_MAX_OBJECTS = 500_000
DEFAULT_MAX_TREE_DEPTH = 32  # pyHanko walks the page tree recursively
# Arrays and dictionaries nested in one object: pyHanko reads, writes and compares them
# recursively (a catalog holding 500 nested arrays signs, but its signatures no longer
# validate); real documents nest a few levels.
DEFAULT_MAX_NESTING = 64
_MAX_XREF_SECTIONS = 1000  # a /Prev chain read before the parser

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


@dataclass(frozen=True)
class _Limits:
    pages: int
    objects: int
    tree_depth: int
    nesting: int


def check_pdf(data: bytes | IO[bytes], *, max_bytes: int, max_pages: int = DEFAULT_MAX_PAGES,
              max_objects: int = DEFAULT_MAX_OBJECTS,
              max_tree_depth: int = DEFAULT_MAX_TREE_DEPTH,
              max_nesting: int = DEFAULT_MAX_NESTING) -> PdfFacts:
    """Accept an uploaded record PDF (bytes, or a seekable file: a large upload need not
    be in memory) or raise a request error with a stable code. What it accepts, every
    signing path can sign: the page tree and the XMP metadata are checked as pyHanko
    reads them when it signs, and documents above the limits are refused from counts
    read before any parsing (the cross-reference sections' sizes, the page tree's
    /Count)."""
    limits = _Limits(max_pages, max_objects, max_tree_depth, max_nesting)
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
        declared = _declared_objects(stream, size)
        if declared is not None and declared > max_objects:
            raise _too_complex(f"the PDF declares {declared} objects; at most "
                               f"{max_objects} are accepted")
        stream.seek(0)
        return _inspect_pdf(stream, limits)
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


def _too_complex(detail: str) -> InvalidInput:
    return InvalidInput(detail, code="pdf_too_complex")


def _tree_invalid(detail: str) -> PdfRejected:
    return PdfRejected(detail, code="pdf_page_tree_invalid")


def _xmp_invalid(detail: str) -> InvalidInput:
    return InvalidInput(detail, code="pdf_xmp_invalid")


_START_XREF = re.compile(rb"startxref\s+(\d+)\s*%%EOF", re.S)
_SUBSECTION = re.compile(rb"\s*(\d+)\s+(\d+)[ \t]*\r?\n?")
_SIZE = re.compile(rb"/Size\s+(\d+)")
_PREV = re.compile(rb"/Prev\s+(\d+)")
_XREF_STM = re.compile(rb"/XRefStm\s+(\d+)")
_INDEX = re.compile(rb"/Index\s*\[([\d\s]*)\]")
_DICT_WINDOW = 4096


def _declared_objects(stream: IO[bytes], size: int) -> int | None:
    """How many objects the cross-reference sections declare, read without parsing the
    document: the largest /Size, or more entries if a classic table lists more (its
    subsection headers give their counts; the entries are skipped, not read). None when
    the sections cannot be found this way (the parser then says what is wrong)."""
    stream.seek(max(size - _EOF_WINDOW, 0))
    found = list(_START_XREF.finditer(stream.read(_EOF_WINDOW)))
    if not found:
        return None
    pending = [int(found[-1].group(1))]
    seen: set[int] = set()
    largest = 0
    while pending and len(seen) < _MAX_XREF_SECTIONS:
        offset = pending.pop()
        if offset in seen or offset >= size:
            continue
        seen.add(offset)
        stream.seek(offset)
        head = stream.read(_DICT_WINDOW)
        if head.startswith(b"xref"):
            entries, at = 0, offset + 4
            while True:
                stream.seek(at)
                line = stream.read(64)
                match = _SUBSECTION.match(line)
                if match is None:
                    break
                count = int(match.group(2))
                entries += count
                at += match.end() + 20 * count  # entries are 20 bytes each
                if entries > largest:
                    largest = entries
            stream.seek(at)
            head = stream.read(_DICT_WINDOW)
            end = head.find(b"startxref")
            head = head[:end] if end >= 0 else head
        else:
            end = head.find(b"stream")
            head = head[:end] if end >= 0 else head
            index = _INDEX.search(head)
            if index is not None:
                counts = index.group(1).split()[1::2]
                largest = max(largest, sum(int(c) for c in counts))
        for pattern in (_SIZE,):
            match = pattern.search(head)
            if match is not None:
                largest = max(largest, int(match.group(1)))
        pending += [int(m.group(1)) for m in (_PREV.search(head), _XREF_STM.search(head))
                    if m is not None]
    return largest or None


def _inspect_pdf(stream: IO[bytes], limits: _Limits) -> PdfFacts:
    reader = PdfFileReader(stream, strict=True)
    entries = sum(len(reader.xrefs.explicit_refs_in_revision(r))
                  for r in range(reader.xrefs.total_revisions))
    if entries > limits.objects:
        raise _too_complex(f"the PDF has {entries} cross-reference entries; at most "
                           f"{limits.objects} are accepted")
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

    _check_page_count(reader, root, limits)
    findings: list[str] = []
    signatures: list[str] = []
    if not _qpdf_screen_clean(stream, reader, max_nesting=limits.nesting):
        walk = _ObjectWalk(reader, limits.nesting)
        walk.run()
        findings, signatures = walk.findings, walk.signatures
    page_count = _count_pages(reader, root, limits)
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
    _check_xmp_as_signing_updates_it(reader, root)
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

    def __init__(self, reader: PdfFileReader, max_nesting: int = 10**9) -> None:
        self.reader = reader
        self.max_nesting = max_nesting
        self.seen: set[tuple[int, int]] = set()
        self.findings: list[str] = []
        self.signatures: list[str] = []
        self._reported: set[str] = set()
        # (object, where, owning object, arrays and dictionaries it is nested in)
        self._queue: deque[tuple[Any, _Path, _Owner, int]] = deque()

    def run(self) -> None:
        trailer = self.reader.trailer_view
        for key, value in dict.items(trailer):
            self._queue.append((value, ("", "/" + safe_text(key[1:])), None, 1))
        self._drain()
        for idnum, generation in _live_refs(self.reader):
            if (idnum, generation) not in self.seen:
                ref = generic.IndirectObject(idnum, generation, self.reader)
                self._queue.append((ref, _ORPHAN, None, 0))
                self._drain()

    def _drain(self) -> None:
        queue = self._queue
        while queue:
            obj, path, owner, depth = queue.popleft()
            if depth > self.max_nesting:
                raise _too_complex(f"arrays and dictionaries nest more than "
                                   f"{self.max_nesting} levels deep in {_where(path, owner)}")
            if isinstance(obj, generic.IndirectObject):
                key = (obj.idnum, obj.generation)
                if key in self.seen:
                    continue
                self.seen.add(key)
                if self.reader.xrefs[obj.reference] is None:
                    continue  # a reference to an undefined object is null (ISO 32000 7.3.10)
                queue.append((self.reader.get_object(obj.reference), path, key, 0))
            elif isinstance(obj, generic.DictionaryObject):
                self._check_dict(obj, path, owner)
                for key_name, value in dict.items(obj):
                    queue.append((value, (path, "/" + safe_text(key_name[1:])), owner,
                                  depth + 1))
            elif isinstance(obj, generic.ArrayObject):
                for index, value in enumerate(list.__iter__(obj)):
                    queue.append((value, (path, f"[{index}]"), owner, depth + 1))

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


def _qpdf_screen_clean(stream: IO[bytes], reader: PdfFileReader,
                       max_nesting: int = DEFAULT_MAX_NESTING) -> bool:
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
            if _json_nesting(joined) > max_nesting:
                return False  # the walk words the refusal
            return all(_OPEN_ACTION not in text or _open_actions_are_destinations(pdf, text)
                       for text in texts)
    except Exception:  # qpdf refused it: the walk says why, in pyHanko's words
        return False
    finally:
        stream.seek(0)


_JSON_TOKEN = re.compile(rb'[\[\]{}]|"(?:[^"\\]|\\.)*"')


def _json_nesting(text: bytes) -> int:
    """How deep arrays and objects nest in qpdf's JSON of one or more objects (the
    outer object of a dictionary counts as one level, as in the walk)."""
    deepest = depth = 0
    for match in _JSON_TOKEN.finditer(text):
        token = match.group()[:1]
        if token in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        elif token in (b"]", b"}"):
            depth -= 1
    return deepest


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


def _check_page_count(reader: PdfFileReader, root: generic.DictionaryObject,
                      limits: _Limits) -> None:
    """Refuse on the page tree root's declared /Count before anything walks it."""
    if "/Pages" not in root:
        return  # _count_pages says so
    tree_root = _deref_strict(reader, dict.__getitem__(root, "/Pages"))
    if isinstance(tree_root, generic.DictionaryObject):
        declared = _deref_strict(reader, dict.get(tree_root, "/Count", generic.NullObject()))
        if isinstance(declared, int) and declared > limits.pages:
            raise _too_complex(f"the PDF declares {declared} pages; at most {limits.pages} "
                               "are accepted")


def _count_pages(reader: PdfFileReader, root: generic.DictionaryObject,
                 limits: _Limits) -> int:
    """Walk the page tree as pyHanko does when it finds a page to sign on (rw_common's
    _walk_page_tree): the root and every kid an indirect reference, every node typed
    /Pages or /Page, every /Pages node's /Count its number of pages (pyHanko skips
    subtrees by it), and (it recurses) a bounded depth."""
    if "/Pages" not in root:
        raise _malformed("the document catalog has no page tree (/Pages)")
    raw_root = dict.__getitem__(root, "/Pages")
    tree_root = _deref_strict(reader, raw_root)
    if not isinstance(tree_root, generic.DictionaryObject):
        raise _malformed("the page tree root is not a dictionary")
    if not isinstance(raw_root, generic.IndirectObject):
        raise _tree_invalid("the page tree root (/Pages) is not an indirect object")

    seen: set[tuple[int, int]] = {(raw_root.idnum, raw_root.generation)}
    pages = 0
    # (node, its kids, the next kid to visit, pages before the node)
    stack: list[tuple[generic.DictionaryObject, list[Any], int, int]] = []

    def enter(node: generic.DictionaryObject) -> None:
        if "/Kids" not in node:
            raise _malformed("a page tree node has no /Kids")
        kids = _deref_strict(reader, dict.__getitem__(node, "/Kids"))
        if not isinstance(kids, generic.ArrayObject):
            raise _malformed("a page tree node's /Kids is not an array")
        if len(stack) >= limits.tree_depth:
            raise _too_complex(f"the page tree is more than {limits.tree_depth} levels deep")
        stack.append((node, list(list.__iter__(kids)), 0, pages))

    if not _is_type(reader, tree_root, "/Pages") and "/Kids" not in tree_root:
        raise _malformed("the page tree root is not a /Pages node")
    enter(tree_root)
    while stack:
        node, kids, next_kid, before = stack[-1]
        if next_kid == len(kids):
            stack.pop()
            if stack:  # an inner node: pyHanko skips it by its /Count
                declared = _deref_strict(reader, dict.get(node, "/Count"))
                if not isinstance(declared, int) or declared != pages - before:
                    shown = declared if isinstance(declared, int) else "(none)"
                    raise _tree_invalid(f"a page tree node declares /Count {shown} but "
                                        f"holds {pages - before} pages")
            continue
        stack[-1] = (node, kids, next_kid + 1, before)
        raw = kids[next_kid]
        if not isinstance(raw, generic.IndirectObject):
            raise _tree_invalid("a page tree node lists a kid that is not an indirect "
                                "reference (a page written inside /Kids)")
        key = (raw.idnum, raw.generation)
        if key in seen:
            raise _malformed(f"the page tree reaches object {key[0]} {key[1]} twice")
        seen.add(key)
        kid = _deref_strict(reader, raw)
        if not isinstance(kid, generic.DictionaryObject):
            raise _malformed("a page tree node is not a dictionary")
        if "/Kids" in kid:
            if not _is_type(reader, kid, "/Pages"):
                raise _tree_invalid(f"page tree node {key[0]} {key[1]} has /Kids but is "
                                    "not of /Type /Pages")
            enter(kid)
        elif _is_type(reader, kid, "/Pages"):
            raise _malformed("a page tree node has no /Kids")
        elif not _is_type(reader, kid, "/Page"):
            raise _tree_invalid(f"page tree leaf {key[0]} {key[1]} is not of /Type /Page")
        else:
            pages += 1
            if pages > limits.pages:
                raise _too_complex(f"the PDF has more than {limits.pages} pages")
            _check_annotations(reader, kid, key)

    declared = _deref_strict(reader, dict.get(tree_root, "/Count", generic.NullObject()))
    if not isinstance(declared, int) or declared != pages:
        shown = declared if isinstance(declared, int) else "(none)"
        raise _malformed(f"the page tree declares /Count {shown} but holds {pages} pages")
    if pages == 0:
        raise _malformed("the PDF has no pages")
    return pages


def _check_annotations(reader: PdfFileReader, page: generic.DictionaryObject,
                       key: tuple[int, int]) -> None:
    """A page's /Annots, which the stamp and every signature field are added to and which
    validation reads back: an array of annotation dictionaries. A dangling reference
    there signs, but no signature on the document then validates."""
    if "/Annots" not in page:
        return
    annots = _deref_strict(reader, dict.__getitem__(page, "/Annots"))
    if isinstance(annots, generic.NullObject):
        return
    if not isinstance(annots, generic.ArrayObject):
        raise _tree_invalid(f"page {key[0]} {key[1]} has an /Annots that is not an array")
    for item in list.__iter__(annots):
        if isinstance(item, generic.IndirectObject) and reader.xrefs[item.reference] is None:
            raise _tree_invalid(f"page {key[0]} {key[1]} lists an annotation that does not "
                                "exist")
        if not isinstance(_deref_strict(reader, item), generic.DictionaryObject):
            raise _tree_invalid(f"page {key[0]} {key[1]} lists an annotation that is not a "
                                "dictionary")


def _is_type(reader: PdfFileReader, node: generic.DictionaryObject, name: str) -> bool:
    return bool(_deref_strict(reader, dict.get(node, "/Type")) == name)


def _check_xmp_as_signing_updates_it(reader: PdfFileReader,
                                     root: generic.DictionaryObject) -> None:
    """Every pyHanko write (the QR stamp, each signature, the document timestamp) updates
    the catalog's XMP metadata (BasePdfFileWriter._update_meta): it reads /Metadata as a
    MetadataStream, parses it with pyHanko's own XMP parser (xmp_xml.parse_xmp: UTF-8
    unless the packet header's BOM says otherwise, lxml, no entities), merges the new
    dates and producer in and serialises it again. Do the same here, on a copy."""
    if "/Metadata" not in root:
        return
    raw = dict.__getitem__(root, "/Metadata")
    target = _deref_strict(reader, raw)
    if isinstance(target, generic.NullObject):
        # pyHanko finds the key but root['/Metadata'] raises KeyError
        raise _xmp_invalid("the catalog's /Metadata is null; remove it or give a stream")
    if not isinstance(raw, generic.IndirectObject) or not isinstance(
            target, generic.StreamObject):
        return  # not a metadata stream: pyHanko writes a new one
    try:
        data = target.read_data(DecodePurpose.XMP_METADATA)
        roots = xmp_xml.parse_xmp(BytesIO(data))
        meta = xmp_model.DocumentMetadata(last_modified="now")
        xmp_xml.serialise_xmp(xmp_xml.update_xmp_with_meta(meta, roots=roots), BytesIO())
    except Exception as e:  # what pyHanko would raise at signing
        cause = e.__cause__ if isinstance(e, xmp_xml.XmpXmlProcessingError) else None
        reason = _describe_exception(e) + (f" ({_describe_exception(cause)})"
                                           if cause is not None else "")
        raise _xmp_invalid(f"the XMP metadata (/Metadata) cannot be read as pyHanko reads "
                           f"it to sign: {reason}") from e


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
