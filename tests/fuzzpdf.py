"""A PDF mutation corpus, generated at test time from tests/fixtures/samples/*.pdf.

`corpus(seed)` returns the same list of `Mutant`s for the same seed and samples: byte
flips, truncations, xref/trailer damage, deep nesting, decompression bombs, page-tree
tricks, XMP damage and a few active-content variants. Structural mutants are written as
an incremental update appended by hand (`append_update`), so the damage is exactly what
is asked for: no writer repairs it. Run as a script to write the corpus into a directory:
``python -m tests.fuzzpdf /tmp/fuzz``.
"""

from __future__ import annotations

import functools
import random
import re
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SAMPLES = Path(__file__).resolve().parent / "fixtures" / "samples"
SEED = 20261204


@dataclass(frozen=True)
class Mutant:
    name: str
    """``<class>/<sample>/<variant>``: unique in a corpus."""
    kind: str
    """The class: byte_flip, truncation, xref_damage, nesting, bomb, page_tree, xmp, active."""
    data: bytes


def samples() -> dict[str, bytes]:
    found = {p.stem: p.read_bytes() for p in sorted(SAMPLES.glob("*.pdf"))}
    assert found, f"no sample PDFs in {SAMPLES}"
    return found


# --- the last trailer, read by hand --------------------------------------------------

_STARTXREF = re.compile(rb"startxref\s+(\d+)\s*%%EOF\s*$")
_REF = rb"(\d+)\s+(\d+)\s+R"


@dataclass(frozen=True)
class Trailer:
    startxref: int
    size: int
    root: tuple[int, int]
    info: tuple[int, int] | None
    id_array: bytes | None


def trailer_of(data: bytes) -> Trailer:
    """The newest trailer of a well-formed sample (classic table or xref stream)."""
    match = _STARTXREF.search(data[-64:])
    assert match, "no startxref at the end"
    start = int(match.group(1))
    if data.startswith(b"xref", start):
        at = data.index(b"trailer", start)
        end = data.index(b"startxref", at)
    else:  # an xref stream: its dictionary
        at = start
        end = data.index(b"stream", at)
    body = data[at:end]
    size = re.search(rb"/Size\s+(\d+)", body)
    root = re.search(rb"/Root\s+" + _REF, body)
    info = re.search(rb"/Info\s+" + _REF, body)
    ids = re.search(rb"/ID\s*(\[[^\]]*\])", body)
    assert size and root, "a trailer without /Size or /Root"
    return Trailer(
        startxref=start,
        size=int(size.group(1)),
        root=(int(root.group(1)), int(root.group(2))),
        info=(int(info.group(1)), int(info.group(2))) if info else None,
        id_array=ids.group(1) if ids else None,
    )


def object_body(data: bytes, number: int) -> bytes:
    """The text of object `number` (newest definition, outside object streams)."""
    found = list(re.finditer(rb"(?<![0-9])%d 0 obj\b" % number, data))
    assert found, f"object {number} not found"
    start = found[-1].end()
    return data[start : data.index(b"endobj", start)].strip()


def append_update(data: bytes, objects: dict[int, bytes], *, root: int | None = None,
                  size: int | None = None, extra_trailer: bytes = b"") -> bytes:
    """`data` with one classic incremental update: `objects` (number -> body, generation
    0) and a trailer whose /Prev is the last one. `size` overrides the computed /Size."""
    last = trailer_of(data)
    out = bytearray(data if data.endswith(b"\n") else data + b"\n")
    offsets = {}
    for number, body in sorted(objects.items()):
        offsets[number] = len(out)
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref_at = len(out)
    out += b"xref\n"
    for number in sorted(offsets):
        out += b"%d 1\n%010d 00000 n \n" % (number, offsets[number])
    computed = max([last.size, *(n + 1 for n in objects)])
    root_ref = b"%d 0 R" % root if root is not None else b"%d %d R" % last.root
    out += b"trailer\n<< /Size %d /Root %s /Prev %d" % (
        size if size is not None else computed, root_ref, last.startxref)
    if last.info:
        out += b" /Info %d %d R" % last.info
    if last.id_array:
        out += b" /ID " + last.id_array
    out += extra_trailer + b" >>\nstartxref\n%d\n%%%%EOF\n" % xref_at
    return bytes(out)


def stream(body: bytes, dictionary: bytes = b"", *, compress: bool = False) -> bytes:
    """A stream object's text; `compress`: Flate-encoded."""
    if compress:
        body = _deflate(body)
        dictionary += b" /Filter /FlateDecode"
    return b"<< /Length %d%s >>\nstream\n%s\nendstream" % (len(body), dictionary, body)


@functools.lru_cache(maxsize=64)
def _deflate(body: bytes) -> bytes:
    return zlib.compress(body, 6)


@functools.cache
def _deflated_zeros(megabytes: int) -> bytes:
    """Flate data that decodes to `megabytes` MiB of zeros, made a MiB at a time."""
    packer = zlib.compressobj(6)
    chunk = b"\0" * 2**20
    return b"".join([*(packer.compress(chunk) for _ in range(megabytes)), packer.flush()])


def set_key(dictionary: bytes, key: bytes, value: bytes) -> bytes:
    """A dictionary's text with `key` set to `value` (a value that is itself a
    dictionary or array is replaced only when it holds no nested brackets)."""
    pattern = re.compile(re.escape(key) + rb"(?![A-Za-z0-9])\s*(\d+\s+\d+\s+R|/[^\s/<>\[\]()]*"
                         rb"|\[[^\[\]]*\]|<<(?:(?!<<|>>).)*>>|\([^()]*\)|[^\s/<>\[\]()]+)",
                         re.S)
    if pattern.search(dictionary):
        return pattern.sub(lambda _: key + b" " + value, dictionary, count=1)
    assert dictionary.endswith(b">>"), dictionary[-20:]
    return dictionary[:-2] + b" " + key + b" " + value + b">>"



# --- what a seed is made of ----------------------------------------------------------


@dataclass(frozen=True)
class Seed:
    name: str
    """The sample it is (or is derived from): its metadata is that sample's."""
    data: bytes
    trailer: Trailer
    pages: int
    """Object number of the page tree root."""
    page_list: tuple[int, ...]
    metadata: int | None
    catalog: bytes


def seed_of(name: str, data: bytes) -> Seed:
    from io import BytesIO

    from pyhanko.pdf_utils.reader import PdfFileReader

    reader = PdfFileReader(BytesIO(data), strict=False)
    root = reader.root
    pages_ref = root.raw_get("/Pages")
    kids = [k.idnum for k in pages_ref.get_object()["/Kids"]]
    meta = root.raw_get("/Metadata") if "/Metadata" in root else None
    trailer = trailer_of(data)
    catalog = (object_body(data, trailer.root[0])
               if re.search(rb"(?<![0-9])%d 0 obj" % trailer.root[0], data) else b"")
    return Seed(name, data, trailer, pages_ref.idnum, tuple(kids),
                meta.idnum if meta is not None else None, catalog)


def seeds() -> list[Seed]:
    """Each sample, and each sample rewritten by qpdf with object and cross-reference
    streams (PDF 1.5+ structure, still the sample)."""
    from io import BytesIO

    import pikepdf

    found = []
    for name, data in samples().items():
        found.append(seed_of(name, data))
        with pikepdf.open(BytesIO(data)) as pdf:
            out = BytesIO()
            pdf.save(out, object_stream_mode=pikepdf.ObjectStreamMode.generate,
                     static_id=True, deterministic_id=True)
        streamed = out.getvalue()
        found.append(seed_of(name, streamed))
    return found


def _catalog_of(seed: Seed) -> bytes:
    """The catalog's dictionary text (object streams: rebuilt from pyHanko's view)."""
    if seed.catalog and seed.catalog.startswith(b"<<"):
        return seed.catalog
    return _dict_text(seed, seed.trailer.root[0])


def _dict_text(seed: Seed, number: int) -> bytes:
    from io import BytesIO

    from pyhanko.pdf_utils import generic
    from pyhanko.pdf_utils.reader import PdfFileReader

    reader = PdfFileReader(BytesIO(seed.data), strict=False)
    obj = reader.get_object(generic.Reference(number, 0))
    out = BytesIO()
    obj.write_to_stream(out)
    return out.getvalue()


# --- the classes -----------------------------------------------------------------------

_STREAM_SPAN = re.compile(rb"stream\r?\n.*?endstream", re.S)


def _structure_positions(data: bytes) -> list[int]:
    """Byte offsets outside stream data."""
    spans = [(m.start(), m.end()) for m in _STREAM_SPAN.finditer(data)]
    positions, at = [], 0
    for start, end in spans:
        positions.extend(range(at, start))
        at = end
    positions.extend(range(at, len(data)))
    return positions


def byte_flips(seed: Seed, rng: random.Random, count: int) -> Iterator[Mutant]:
    structure = _structure_positions(seed.data)
    for i in range(count):
        data = bytearray(seed.data)
        targeted = i % 2 == 0
        for _ in range(rng.randint(1, 8)):
            at = rng.choice(structure) if targeted else rng.randrange(len(data))
            at = min(at, len(data) - 1)
            roll = rng.random()
            if roll < 0.6:
                data[at] = rng.randrange(256)
            elif roll < 0.8:
                del data[at : at + rng.randint(1, 40)]
            else:
                data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        where = "structure" if targeted else "anywhere"
        yield Mutant(f"byte_flip/{seed_label(seed)}/{where}-{i}", "byte_flip", bytes(data))


def truncations(seed: Seed, rng: random.Random, count: int) -> Iterator[Mutant]:
    data = seed.data
    tail = data[data.rindex(b"startxref"):]
    for i in range(count):
        cut = rng.randrange(8, len(data))
        mode = i % 3
        if mode == 0:
            body = data[:cut]
        elif mode == 1:
            body = data[:cut] + b"\n%%EOF\n"
        else:  # the middle gone, the tail (startxref, %%EOF) kept
            body = data[:cut] + tail
        yield Mutant(f"truncation/{seed_label(seed)}/{mode}-{i}", "truncation", body)


def xref_damage(seed: Seed, rng: random.Random, count: int) -> Iterator[Mutant]:
    data, trailer = seed.data, seed.trailer
    start = trailer.startxref
    fixed: list[tuple[str, bytes]] = [
        ("startxref-zero", re.sub(rb"startxref\s+\d+", b"startxref\n0", data)),
        ("startxref-huge", re.sub(rb"startxref\s+\d+", b"startxref\n99999999999", data)),
        ("startxref-negative", re.sub(rb"startxref\s+\d+", b"startxref\n-5", data)),
        ("startxref-text", re.sub(rb"startxref\s+\d+", b"startxref\nabc", data)),
        ("prev-loop", append_update(data, {}, extra_trailer=b"")
         .replace(b"/Prev %d" % start, b"/Prev %d" % (len(data) + 1))),
        ("size-zero", append_update(data, {}, size=0)),
        ("size-small", append_update(data, {}, size=3)),
        ("size-huge", append_update(data, {}, size=10**9)),
        ("size-negative", append_update(data, {}, size=-1)),
        ("root-missing", re.sub(rb"/Root\s+\d+\s+\d+\s+R", b"", append_update(data, {}))),
        ("root-not-dict", append_update(data, {trailer.size: b"[1 2 3]"}, root=trailer.size)),
        ("root-null", append_update(data, {trailer.size: b"null"}, root=trailer.size)),
        ("root-dangling", append_update(data, {}, root=trailer.size + 50)),
        ("root-self", append_update(data, {trailer.size: b"%d 0 R" % trailer.size},
                                    root=trailer.size)),
        ("trailer-garbage", data[: data.rindex(b"startxref")] + b"trailer\n<<>>\n" +
         data[data.rindex(b"startxref"):]),
        ("double-eof", data + b"%%EOF\n%%EOF\n"),
        ("xref-removed", data[:start] + data[data.rindex(b"startxref"):]),
        ("xref-entries-shifted", re.sub(rb"(\d{10}) (\d{5}) n",
                                        lambda m: b"%010d %s n" % (int(m.group(1)) + 7,
                                                                   m.group(2)), data)),
        ("xref-free-all", re.sub(rb"(\d{10} \d{5}) n", rb"\1 f", data)),
        ("encrypt-claim", append_update(data, {trailer.size: b"<< /Filter /Standard /V 1 >>"},
                                        extra_trailer=b" /Encrypt %d 0 R" % trailer.size)),
    ]
    for label, body in fixed:
        yield Mutant(f"xref_damage/{seed_label(seed)}/{label}", "xref_damage", body)
    entries = list(re.finditer(rb"(\d{10}) (\d{5}) ([nf])", data))
    for i in range(count - len(fixed)):
        body = bytearray(data)
        if entries:
            for _ in range(rng.randint(1, 4)):
                m = rng.choice(entries)
                choice = rng.random()
                if choice < 0.5:
                    new = b"%010d" % rng.randrange(len(data) + 1000)
                    body[m.start(1):m.end(1)] = new
                elif choice < 0.75:
                    body[m.start(2):m.end(2)] = b"%05d" % rng.randrange(100000)
                else:
                    body[m.start(3)] = ord("f") if m.group(3) == b"n" else ord("n")
        else:  # an xref stream: damage its dictionary and data
            at = start + rng.randrange(0, min(400, len(data) - start))
            body[at] = rng.randrange(256)
        yield Mutant(f"xref_damage/{seed_label(seed)}/random-{i}", "xref_damage", bytes(body))


def _with_catalog_key(seed: Seed, key: bytes, value: bytes,
                      objects: dict[int, bytes] | None = None) -> bytes:
    catalog = set_key(_catalog_of(seed), key, value)
    return append_update(seed.data, {seed.trailer.root[0]: catalog, **(objects or {})})


def nesting(seed: Seed, rng: random.Random) -> Iterator[Mutant]:
    new = seed.trailer.size
    for depth in (10, 64, 100, 250, 500, 1000, 5000, 100_000):
        arrays = b"[" * depth + b"1" + b"]" * depth
        dicts = b"<< /A " * depth + b"1" + b" >>" * depth
        yield Mutant(f"nesting/{seed_label(seed)}/arrays-{depth}", "nesting",
                     _with_catalog_key(seed, b"/HocbaJunk", b"%d 0 R" % new, {new: arrays}))
        yield Mutant(f"nesting/{seed_label(seed)}/dicts-{depth}", "nesting",
                     _with_catalog_key(seed, b"/HocbaJunk", b"%d 0 R" % new, {new: dicts}))
        yield Mutant(f"nesting/{seed_label(seed)}/direct-{depth}", "nesting",
                     _with_catalog_key(seed, b"/HocbaJunk", arrays))
    for length in (10, 31, 33, 200, 5000):  # a reference to a reference to ...
        chain = {new + i: b"%d 0 R" % (new + i + 1) for i in range(length)}
        chain[new + length] = b"<< /Deep true >>"
        yield Mutant(f"nesting/{seed_label(seed)}/ref-chain-{length}", "nesting",
                     _with_catalog_key(seed, b"/HocbaJunk", b"%d 0 R" % new, chain))


def bombs(seed: Seed, rng: random.Random) -> Iterator[Mutant]:
    new = seed.trailer.size
    page = seed.page_list[0]
    page_dict = _dict_text(seed, page)
    for megabytes in (8, 64, 300, 1024):
        zeros = _deflated_zeros(megabytes)
        body = b"<< /Length %d /Filter /FlateDecode >>\nstream\n%s\nendstream" % (
            len(zeros), zeros)
        yield Mutant(f"bomb/{seed_label(seed)}/orphan-{megabytes}MB", "bomb",
                     append_update(seed.data, {new: body}))
        if megabytes <= 300:
            content = set_key(page_dict, b"/Contents", b"%d 0 R" % new)
            yield Mutant(f"bomb/{seed_label(seed)}/content-{megabytes}MB", "bomb",
                         append_update(seed.data, {page: content, new: body}))
    twice = _deflate(_deflated_zeros(200))
    stacked = b"<< /Length %d /Filter [/FlateDecode /FlateDecode] >>\nstream\n%s\nendstream" % (
        len(twice), twice)
    yield Mutant(f"bomb/{seed_label(seed)}/stacked-200MB", "bomb",
                 append_update(seed.data, {new: stacked}))
    xmp_bomb = stream(b"<x:xmpmeta xmlns:x='adobe:ns:meta/'>" + b" " * (100 * 2**20)
                      + b"</x:xmpmeta>", b" /Type /Metadata /Subtype /XML", compress=True)
    yield Mutant(f"bomb/{seed_label(seed)}/xmp-100MB", "bomb",
                 _with_catalog_key(seed, b"/Metadata", b"%d 0 R" % new, {new: xmp_bomb}))
    objstm_data = b" ".join(b"%d 0" % (new + 1 + i) for i in range(3)) + b" "
    header_len = len(objstm_data)
    objstm = _deflate(objstm_data + b"1 2 3" + b" " * (80 * 2**20))
    yield Mutant(f"bomb/{seed_label(seed)}/objstm-80MB", "bomb", append_update(seed.data, {
        new: b"<< /Type /ObjStm /N 3 /First %d /Length %d /Filter /FlateDecode >>\nstream\n"
             b"%s\nendstream" % (header_len, len(objstm), objstm)}))
    yield Mutant(f"bomb/{seed_label(seed)}/length-lies", "bomb", append_update(seed.data, {
        new: b"<< /Length 999999999 >>\nstream\nabc\nendstream"}))


_PAGE = b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 595 842] >>"


def _pages_with(seed: Seed, kids: bytes, count: bytes | int,
                objects: dict[int, bytes] | None = None) -> bytes:
    """The seed with its page tree root's /Kids and /Count replaced."""
    node = _dict_text(seed, seed.pages)
    node = set_key(set_key(node, b"/Kids", kids), b"/Count",
                   count if isinstance(count, bytes) else b"%d" % count)
    return append_update(seed.data, {seed.pages: node, **(objects or {})})


def _deep_tree(seed: Seed, depth: int, *, inner_count: int | None = None) -> bytes:
    """`depth` intermediate nodes above the seed's page tree root."""
    new = seed.trailer.size
    total = len(seed.page_list)
    objects = {}
    for level in range(depth):
        number = new + level
        parent = b"/Parent %d 0 R " % (number - 1) if level else b""
        count = inner_count if inner_count is not None and level == depth - 1 else total
        objects[number] = b"<< /Type /Pages %s/Kids [%d 0 R] /Count %d >>" % (
            parent, number + 1 if level < depth - 1 else seed.pages, count)
    old_root = set_key(_dict_text(seed, seed.pages), b"/Parent", b"%d 0 R" % (new + depth - 1))
    objects[seed.pages] = old_root
    catalog = set_key(_catalog_of(seed), b"/Pages", b"%d 0 R" % new)
    return append_update(seed.data, {seed.trailer.root[0]: catalog, **objects})


def _many_pages(seed: Seed, count: int) -> bytes:
    new = seed.trailer.size
    kids = [b"%d 0 R" % k for k in seed.page_list]
    objects = {}
    for i in range(count - len(seed.page_list)):
        objects[new + i] = _PAGE % seed.pages
        kids.append(b"%d 0 R" % (new + i))
    return _pages_with(seed, b"[" + b" ".join(kids) + b"]", count, objects)


def page_tree(seed: Seed, rng: random.Random) -> Iterator[Mutant]:
    new = seed.trailer.size
    refs = [b"%d 0 R" % k for k in seed.page_list]
    first = _dict_text(seed, seed.page_list[0])
    n = len(refs)

    def kids(items: list[bytes]) -> bytes:
        return b"[" + b" ".join(items) + b"]"

    cases: list[tuple[str, bytes]] = [
        ("direct-kid", _pages_with(seed, kids([first, *refs[1:]]), n)),
        ("direct-kids-all", _pages_with(seed, kids([_dict_text(seed, k)
                                                   for k in seed.page_list]), n)),
        ("direct-kid-extra", _pages_with(seed, kids([*refs, _PAGE % seed.pages]), n + 1)),
        ("kid-null", _pages_with(seed, kids([b"null", *refs]), n)),
        ("kid-number", _pages_with(seed, kids([b"5", *refs]), n)),
        ("kid-name", _pages_with(seed, kids([b"/Page", *refs]), n)),
        ("kid-dangling", _pages_with(seed, kids([*refs, b"%d 0 R" % (new + 99)]), n)),
        ("kid-is-root", _pages_with(seed, kids([*refs, b"%d 0 R" % seed.pages]), n + 1)),
        ("kid-is-catalog", _pages_with(seed, kids([*refs, b"%d 0 R" % seed.trailer.root[0]]),
                                       n + 1)),
        ("kid-twice", _pages_with(seed, kids([*refs, refs[0]]), n + 1)),
        ("kids-empty", _pages_with(seed, b"[]", 0)),
        ("kids-not-array", _pages_with(seed, b"5", n)),
        ("kids-indirect", _pages_with(seed, b"%d 0 R" % new, n, {new: kids(refs)})),
        ("kids-dict", _pages_with(seed, b"<< /A 1 >>", n)),
        ("parent-self", append_update(seed.data, {
            seed.page_list[0]: set_key(first, b"/Parent", refs[0])})),
        ("parent-missing", append_update(seed.data, {
            seed.page_list[0]: first.replace(b"/Parent %d 0 R" % seed.pages, b"")})),
        ("page-is-pages", append_update(seed.data, {
            seed.page_list[0]: set_key(first, b"/Type", b"/Pages")})),
        ("page-has-kids", append_update(seed.data, {
            seed.page_list[0]: set_key(first, b"/Kids", kids(refs[1:]))})),
        ("page-untyped", append_update(seed.data, {
            seed.page_list[0]: first.replace(b"/Type /Page", b"").replace(b"/Type/Page", b"")})),
        ("mediabox-garbage", append_update(seed.data, {
            seed.page_list[0]: set_key(first, b"/MediaBox", b"[0 0 /A (b)]")})),
        ("mediabox-tiny", append_update(seed.data, {
            seed.page_list[0]: set_key(first, b"/MediaBox", b"[0 0 10 10]")})),
        ("mediabox-huge", append_update(seed.data, {
            seed.page_list[0]: set_key(first, b"/MediaBox", b"[0 0 1e30 1e30]")})),
        ("mediabox-inverted", append_update(seed.data, {
            seed.page_list[0]: set_key(first, b"/MediaBox", b"[595 842 0 0]")})),
        ("mediabox-short", append_update(seed.data, {
            seed.page_list[0]: set_key(first, b"/MediaBox", b"[0 0 595]")})),
        ("rotate-odd", append_update(seed.data, {
            seed.page_list[0]: set_key(first, b"/Rotate", b"45")})),
        ("rotate-huge", append_update(seed.data, {
            seed.page_list[0]: set_key(first, b"/Rotate", b"99999999999999999999")})),
        ("rotate-negative", append_update(seed.data, {
            seed.page_list[0]: set_key(first, b"/Rotate", b"-90")})),
        ("annots-garbage", append_update(seed.data, {
            seed.page_list[0]: set_key(first, b"/Annots", b"5")})),
        ("annots-dangling", append_update(seed.data, {
            seed.page_list[0]: set_key(first, b"/Annots", b"[%d 0 R]" % (new + 77))})),
        ("resources-garbage", append_update(seed.data, {
            seed.page_list[0]: set_key(first, b"/Resources", b"(x)")})),
        ("contents-garbage", append_update(seed.data, {
            seed.page_list[0]: set_key(first, b"/Contents", b"[1 2]")})),
        ("pages-is-page", append_update(seed.data, {
            seed.trailer.root[0]: set_key(_catalog_of(seed), b"/Pages", refs[0])})),
        ("pages-missing", append_update(seed.data, {
            seed.trailer.root[0]: set_key(_catalog_of(seed), b"/Pages", b"null")})),
        ("pages-direct", append_update(seed.data, {
            seed.trailer.root[0]: set_key(_catalog_of(seed), b"/Pages",
                                          b"<< /Type /Pages /Kids [%s] /Count %d >>"
                                          % (b" ".join(refs), n))})),
        ("many-500", _many_pages(seed, 500)),
        ("many-2001", _many_pages(seed, 2001)),
        ("many-20000", _many_pages(seed, 20000)),
    ]
    for count in (0, -1, n + 1, 10**6, 10**9, 2**63, 2**70):
        cases.append((f"count-{count}", _pages_with(seed, kids(refs), count)))
    for count in (b"1.5", b"(2)", b"/Two", b"null", b"%d 0 R" % new):
        cases.append((f"count-{count.decode()}", _pages_with(
            seed, kids(refs), count, {new: b"%d" % n} if b"R" in count else None)))
    for depth in (2, 8, 31, 64, 100, 200, 500, 1000, 3000):
        cases.append((f"deep-{depth}", _deep_tree(seed, depth)))
    cases.append(("deep-3-inner-count", _deep_tree(seed, 3, inner_count=n + 5)))
    cases.append(("deep-3-inner-zero", _deep_tree(seed, 3, inner_count=0)))
    for label, body in cases:
        yield Mutant(f"page_tree/{seed_label(seed)}/{label}", "page_tree", body)


_XMP_OK = (
    '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
    '<x:xmpmeta xmlns:x="adobe:ns:meta/">\n'
    '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n'
    '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/"'
    ' xmlns:pdfaid="http://www.aiim.org/pdfa/ns/id/">\n'
    '<pdfaid:part>2</pdfaid:part><pdfaid:conformance>B</pdfaid:conformance>\n'
    '<dc:title><rdf:Alt><rdf:li xml:lang="x-default">Học bạ %s</rdf:li></rdf:Alt></dc:title>\n'
    '</rdf:Description>\n</rdf:RDF>\n</x:xmpmeta>\n<?xpacket end="w"?>'
)


def _xmp_text(filler: str = "") -> str:
    return _XMP_OK % filler


def _with_xmp(seed: Seed, body: bytes, *, compress: bool = False) -> bytes:
    new = seed.trailer.size
    metadata = stream(body, b" /Type /Metadata /Subtype /XML", compress=compress)
    if seed.metadata is not None and rng_free(seed):
        return append_update(seed.data, {seed.metadata: metadata})
    return _with_catalog_key(seed, b"/Metadata", b"%d 0 R" % new, {new: metadata})


def rng_free(seed: Seed) -> bool:
    """Replace the seed's own metadata object in place (it is not in an object stream)."""
    return re.search(rb"(?<![0-9])%d 0 obj" % seed.metadata, seed.data) is not None


def xmp(seed: Seed, rng: random.Random) -> Iterator[Mutant]:
    good = _xmp_text().encode("utf-8")
    rdf = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
    dc = "http://purl.org/dc/elements/1.1/"
    cases: list[tuple[str, bytes]] = [
        ("valid", good),
        ("valid-compressed", good),
        ("utf16-whole-header", '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
         .encode("utf-16-le") + _xmp_text()[55:].encode("utf-16-le")),
        ("valid-utf16-header-bom", b'<?xpacket begin="\xff\xfe" id="W5M0MpCehiHzreSzNTczkc9d"?>'
         + _xmp_text()[55:].encode("utf-16-le")),
        ("valid-rdf-root", f'<rdf:RDF xmlns:rdf="{rdf}"><rdf:Description rdf:about=""/>'
         "</rdf:RDF>".encode()),
        ("valid-2MB", _xmp_text("x" * 2 * 2**20).encode()),
        ("huge-40MB", _xmp_text("x" * 40 * 2**20).encode()),
        ("empty", b""),
        ("lt", b"<"),
        ("garbage", bytes(rng.randrange(256) for _ in range(300))),
        ("latin1", _xmp_text("Trường").encode("utf-8").replace("ọ".encode(), b"\xf4")),
        ("cp1258", _xmp_text().replace("Học bạ", "Hoc ba \xe9\xe8").encode("latin-1",
                                                                            "replace")),
        ("declared-latin1", b'<?xml version="1.0" encoding="ISO-8859-1"?>'
         + _xmp_text("\xe9")[55:].encode("latin-1", "replace")),
        ("utf16-no-bom", _xmp_text()[55:].encode("utf-16-le")),
        ("bom-mismatch", '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
         .encode("utf-8") + _xmp_text()[55:].encode("utf-16-be")),
        ("nul-bytes", good.replace(b"<rdf:Description", b"<rdf:Desc\0ription")),
        ("entity", b'<!DOCTYPE x [<!ENTITY e "hello">]>' + good[55:].replace(
            b"H\xe1\xbb\x8dc", b"&e;")),
        ("xxe", b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
         + good[55:].replace(b"H\xe1\xbb\x8dc", b"&e;")),
        ("laughs", b'<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;'
         b'&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>'
         + good[55:].replace(b"H\xe1\xbb\x8dc", b"&c;")),
        ("root-other", b"<foo/>"),
        ("root-no-rdf", b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><y/></x:xmpmeta>'),
        ("duplicate-field", f'<rdf:RDF xmlns:rdf="{rdf}"><rdf:Description rdf:about=""'
         f' xmlns:dc="{dc}"><dc:format>a</dc:format><dc:format>b</dc:format>'
         "</rdf:Description></rdf:RDF>".encode()),
        ("parse-type-literal", f'<rdf:RDF xmlns:rdf="{rdf}"><rdf:Description rdf:about=""'
         f' xmlns:dc="{dc}"><dc:format rdf:parseType="Literal">a</dc:format>'
         "</rdf:Description></rdf:RDF>".encode()),
        ("two-children", f'<rdf:RDF xmlns:rdf="{rdf}"><rdf:Description rdf:about=""'
         f' xmlns:dc="{dc}"><dc:format><a/><b/></dc:format>'
         "</rdf:Description></rdf:RDF>".encode()),
        ("unknown-array", f'<rdf:RDF xmlns:rdf="{rdf}"><rdf:Description rdf:about=""'
         f' xmlns:dc="{dc}"><dc:format><rdf:List/></dc:format>'
         "</rdf:Description></rdf:RDF>".encode()),
        ("unqualified-array", f'<rdf:RDF xmlns:rdf="{rdf}"><rdf:Description rdf:about=""'
         f' xmlns:dc="{dc}"><dc:format><Seq/></dc:format>'
         "</rdf:Description></rdf:RDF>".encode()),
        ("bad-date", f'<rdf:RDF xmlns:rdf="{rdf}"><rdf:Description rdf:about=""'
         ' xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:CreateDate="yesterday"/>'
         "</rdf:RDF>".encode()),
        ("bad-date-element", f'<rdf:RDF xmlns:rdf="{rdf}"><rdf:Description rdf:about=""'
         ' xmlns:xmp="http://ns.adobe.com/xap/1.0/"><xmp:ModifyDate>2024-13-45T99:00'
         "</xmp:ModifyDate></rdf:Description></rdf:RDF>".encode()),
        ("title-struct", f'<rdf:RDF xmlns:rdf="{rdf}"><rdf:Description rdf:about=""'
         f' xmlns:dc="{dc}"><dc:title><rdf:Description><rdf:value>x</rdf:value>'
         "</rdf:Description></dc:title></rdf:Description></rdf:RDF>".encode()),
        ("creator-text", f'<rdf:RDF xmlns:rdf="{rdf}"><rdf:Description rdf:about=""'
         f' xmlns:dc="{dc}"><dc:creator>one</dc:creator></rdf:Description>'
         "</rdf:RDF>".encode()),
        ("deep-300", b"<a>" * 300 + b"</a>" * 300),
        ("deep-xmp-300", good[:good.index(b"</rdf:Description>")]
         + b"<dc:x>" + b"<rdf:Description><dc:y>" * 300 + b"1"
         + b"</dc:y></rdf:Description>" * 300 + b"</dc:x>"
         + good[good.index(b"</rdf:Description>"):]),
    ]
    valid_len = len(good)
    for i in range(12):  # truncated at random points
        cut = rng.randrange(1, valid_len - 1)
        cases.append((f"truncated-{i}", good[:cut]))
    for i in range(8):  # random bytes flipped in the XML
        body = bytearray(good)
        for _ in range(rng.randint(1, 4)):
            body[rng.randrange(len(body))] = rng.randrange(256)
        cases.append((f"flipped-{i}", bytes(body)))
    for label, body in cases:
        yield Mutant(f"xmp/{seed_label(seed)}/{label}", "xmp",
                     _with_xmp(seed, body, compress=label.endswith(("compressed", "MB"))))
    new = seed.trailer.size
    for label, value, objects in [
        ("not-stream-dict", b"%d 0 R" % new, {new: b"<< /Type /Metadata >>"}),
        ("not-stream-number", b"%d 0 R" % new, {new: b"42"}),
        ("direct-dict", b"<< /Type /Metadata /Subtype /XML >>", {}),
        ("dangling", b"%d 0 R" % (new + 40), {}),
        ("null", b"null", {}),
    ]:
        yield Mutant(f"xmp/{seed_label(seed)}/{label}", "xmp",
                     _with_catalog_key(seed, b"/Metadata", value, objects))


def active(seed: Seed, rng: random.Random) -> Iterator[Mutant]:
    new = seed.trailer.size
    page = seed.page_list[0]
    first = _dict_text(seed, page)
    js = b"<< /Type /Action /S /JavaScript /JS (app.alert(1)) >>"
    link = (b"<< /Type /Annot /Subtype /Link /Rect [0 0 10 10] /A << /S /%s /F (x.exe) >> >>")
    cases: list[tuple[str, bytes]] = [
        ("open-action-js", _with_catalog_key(seed, b"/OpenAction", b"%d 0 R" % new,
                                             {new: js})),
        ("open-action-js-hex-name", _with_catalog_key(
            seed, b"/OpenAction", b"%d 0 R" % new,
            {new: js.replace(b"/JavaScript", b"/J#61vaScript")})),
        ("catalog-aa", _with_catalog_key(seed, b"/AA", b"<< /WC %d 0 R >>" % new, {new: js})),
        ("page-aa", append_update(seed.data, {page: set_key(first, b"/AA",
                                                            b"<< /O %d 0 R >>" % new),
                                              new: js})),
        ("launch-link", append_update(seed.data, {
            page: set_key(first, b"/Annots", b"[%d 0 R]" % new), new: link % b"Launch"})),
        ("orphan-js", append_update(seed.data, {new: js})),
        ("embedded-file", _with_catalog_key(
            seed, b"/Names", b"<< /EmbeddedFiles << /Names [(a) %d 0 R] >> >>" % new,
            {new: b"<< /Type /Filespec /F (a.exe) /EF << /F %d 0 R >> >>" % (new + 1),
             new + 1: stream(b"MZ", b" /Type /EmbeddedFile")})),
        ("uri-link", append_update(seed.data, {
            page: set_key(first, b"/Annots", b"[%d 0 R]" % new),
            new: b"<< /Type /Annot /Subtype /Link /Rect [0 0 10 10] /A << /S /URI "
                 b"/URI (https://moet.gov.vn/) >> >>"})),
        ("goto-open-action", _with_catalog_key(
            seed, b"/OpenAction", b"[%d 0 R /Fit]" % page)),
    ]
    for label, body in cases:
        yield Mutant(f"active/{seed_label(seed)}/{label}", "active", body)


def seed_label(seed: Seed) -> str:
    kind = "xrefstm" if b"/XRef" in seed.data[seed.trailer.startxref:][:200] else "classic"
    return f"{seed.name.removesuffix('.pdf')}-{kind}"


def main(argv: list[str]) -> int:
    target = Path(argv[1] if len(argv) > 1 else "fuzz-pdfs")
    mutants = corpus()
    for mutant in mutants:
        path = target / f"{mutant.name.replace('/', '--')}.pdf"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(mutant.data)
    print(f"{len(mutants)} mutants in {target}")
    return 0


def corpus(seed: int = SEED) -> list[Mutant]:
    rng = random.Random(seed)
    found: list[Mutant] = []
    for s in seeds():
        found += byte_flips(s, rng, 100)
        found += truncations(s, rng, 25)
        found += xref_damage(s, rng, 30)
        found += nesting(s, rng)
        found += bombs(s, rng)
        found += page_tree(s, rng)
        found += xmp(s, rng)
        found += active(s, rng)
    names = [m.name for m in found]
    assert len(names) == len(set(names)), "mutant names must be unique"
    return found


if __name__ == "__main__":
    sys.exit(main(sys.argv))
