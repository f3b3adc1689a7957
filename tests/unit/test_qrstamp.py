"""The verification stamp (signer/pades/qrstamp.py) on every sample producer, and on
pages a producer might make: rotated, cropped, with inherited resources. Rendered with
poppler (pdftoppm), decoded with zbar (zbarimg), checked with qpdf."""

from __future__ import annotations

import shutil
import struct
import subprocess
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.generic import pdf_name
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader

from archive.verification import display, new_code, verify_url
from signer.errors import ConfigError, PdfRejected
from signer.pades import qrstamp
from signer.policy import VerificationSpec, parse_policy
from signer.settings import Settings
from tests.conftest import SAMPLES

pytestmark = [pytest.mark.tools, pytest.mark.skipif(
    any(shutil.which(t) is None for t in ("pdftoppm", "zbarimg", "qpdf", "pdftotext")),
    reason="poppler-utils, zbar-tools and qpdf are needed")]

BASE = "https://hocba.example.vn"
SAMPLE_FILES = sorted(SAMPLES.glob("*.pdf"))
CORNERS = ("top-right", "top-left", "bottom-right", "bottom-left")
# Where the bottom corners of an unrotated page are once the page is rotated.
FREE_WHEN_ROTATED = {90: ("top-left", "bottom-left"), 180: ("top-right", "top-left"),
                     270: ("bottom-right", "top-right")}


@pytest.fixture(scope="module")
def font() -> Any:
    return qrstamp.font_factory(Settings().stamp_font)


def make(pdf: bytes, font: Any, **spec: Any) -> tuple[bytes, str]:
    code = new_code()
    out = qrstamp.stamp(pdf, url=verify_url(BASE, code), code=code,
                        spec=VerificationSpec(**spec), font=font)
    return out, code


def png_size(path: Path) -> tuple[int, int]:
    width, height = struct.unpack(">II", path.read_bytes()[16:24])
    return width, height


def decode(pdf: bytes, page: int, tmp: Path, corner: str | None = None) -> list[str]:
    """What zbar reads on page `page` (1-based) rendered at 150 dpi, or only in one
    quarter of it."""
    src = tmp / "doc.pdf"
    src.write_bytes(pdf)
    base = ["pdftoppm", "-r", "150", "-png", "-singlefile", "-f", str(page), "-l", str(page)]
    subprocess.run([*base, str(src), str(tmp / "page")], check=True, timeout=60)
    png = tmp / "page.png"
    if corner is not None:
        w, h = png_size(png)
        x = 0 if corner.endswith("left") else w // 2
        y = 0 if corner.startswith("top") else h // 2
        subprocess.run([*base, "-x", str(x), "-y", str(y), "-W", str(w // 2),
                        "-H", str(h // 2), str(src), str(tmp / "page")],
                       check=True, timeout=60)
    res = subprocess.run(["zbarimg", "--raw", "-q", str(png)], capture_output=True,
                         text=True, timeout=60)
    return res.stdout.split()


def word_box(pdf: bytes, page: int, word: str, tmp: Path
             ) -> tuple[float, float, float, float, float, float]:
    """(xmin, ymin, xmax, ymax, page width, page height) of `word` as the page is shown
    (y down), from pdftotext -bbox."""
    src = tmp / "words.pdf"
    src.write_bytes(pdf)
    res = subprocess.run(["pdftotext", "-cropbox", "-bbox", "-f", str(page), "-l", str(page),
                          str(src), "-"], capture_output=True, text=True, check=True,
                         timeout=60)
    import re

    m = re.search(rf'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" '
                  rf'yMax="([\d.]+)">{re.escape(word)}</word>', res.stdout)
    assert m, res.stdout[:2000]
    info = subprocess.run(["pdfinfo", "-f", str(page), "-l", str(page), str(src)],
                          capture_output=True, text=True, check=True).stdout
    size = re.search(rf"Page\s+{page} size:\s+([\d.]+) x ([\d.]+)", info)
    rot = re.search(rf"Page\s+{page} rot:\s+(\d+)", info)
    assert size and rot, info
    w, h = float(size.group(1)), float(size.group(2))
    if int(rot.group(1)) % 180:
        w, h = h, w
    x1, y1, x2, y2 = (float(v) for v in m.groups())
    return x1, y1, x2, y2, w, h


def assert_in_corner(pdf: bytes, page: int, code: str, corner: str, tmp: Path) -> None:
    """The printed code is upright in the named quarter of the page as shown, and the QR
    code decodes there and only there."""
    x1, y1, x2, y2, w, h = word_box(pdf, page, display(code), tmp)
    assert x2 - x1 > 3 * (y2 - y1), "the printed code is not upright"
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    assert (cx > w / 2) == corner.endswith("right"), (corner, cx, w)
    assert (cy < h / 2) == corner.startswith("top"), (corner, cy, h)
    url = verify_url(BASE, code)
    for other in CORNERS:
        assert decode(pdf, page, tmp, other) == ([url] if other == corner else []), other


def qpdf_check(pdf: bytes, tmp: Path) -> None:
    path = tmp / "check.pdf"
    path.write_bytes(pdf)
    res = subprocess.run(["qpdf", "--check", str(path)], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "No syntax or stream encoding errors found" in res.stdout


def page_count(pdf: bytes) -> int:
    return int(PdfFileReader(BytesIO(pdf)).root["/Pages"]["/Count"])


@pytest.mark.parametrize("sample", SAMPLE_FILES, ids=lambda p: p.name)
def test_every_sample_gets_a_decodable_stamp(sample: Path, font: Any, tmp_path: Path) -> None:
    original = sample.read_bytes()
    out, code = make(original, font)
    assert out.startswith(original)  # an incremental update: the upload is revision 1
    assert len(out) - len(original) < 40_000
    qpdf_check(out, tmp_path)
    assert decode(out, 1, tmp_path) == [f"{BASE}/verify/{display(code)}"]
    assert_in_corner(out, 1, code, "top-right", tmp_path)
    # the page's own content is still there
    before = subprocess.run(["pdftotext", "-", "-"], input=original, capture_output=True,
                            check=True).stdout.decode()
    after = subprocess.run(["pdftotext", "-", "-"], input=out, capture_output=True,
                           check=True).stdout.decode()
    for line in before.split():
        assert line in after
    assert "Mã xác thực" in after and display(code) in after


@pytest.mark.slow  # renders every quarter of the page
@pytest.mark.parametrize("corner", CORNERS)
def test_each_position(corner: str, font: Any, tmp_path: Path) -> None:
    out, code = make(SAMPLE_FILES[0].read_bytes(), font, position=corner, margin=24)
    assert_in_corner(out, 1, code, corner, tmp_path)
    x1, y1, x2, y2, w, h = word_box(out, 1, display(code), tmp_path)
    assert min(x1, w - x2, y1, h - y2) >= 24


@pytest.mark.slow  # renders every quarter of the page
def test_page_option_counts_from_either_end_and_clamps(font: Any, tmp_path: Path) -> None:
    multi = next((p.read_bytes() for p in SAMPLE_FILES if page_count(p.read_bytes()) > 1),
                 None)
    if multi is None:
        pytest.skip("no multi-page sample")
    n = page_count(multi)
    url_of = lambda c: verify_url(BASE, c)  # noqa: E731
    for page, expected in ((-1, n), (2, 2), (1, 1), (n + 5, n), (-n - 5, 1)):
        out, code = make(multi, font, page=page)
        for p in range(1, n + 1):
            assert decode(out, p, tmp_path) == ([url_of(code)] if p == expected else []), \
                (page, p)


def transformed(pdf: bytes, change: Any) -> bytes:
    """`pdf` with its first page changed by `change(writer, page_dict, pages_dict)`."""
    w = IncrementalPdfFileWriter(BytesIO(pdf))
    page_ref, _ = w.find_page_for_modification(0)
    pages_ref = w.root.raw_get("/Pages")
    change(w, page_ref.get_object(), pages_ref.get_object())
    w.mark_update(page_ref)
    w.mark_update(pages_ref)
    out = BytesIO()
    w.write(out)
    return out.getvalue()


@pytest.mark.slow  # renders every quarter of the page
@pytest.mark.parametrize("rotate", [90, 180, 270, -90])
@pytest.mark.parametrize("sample", SAMPLE_FILES, ids=lambda p: p.name)
def test_rotated_pages_get_an_upright_stamp_in_the_shown_corner(
        sample: Path, rotate: int, font: Any, tmp_path: Path) -> None:
    def rot(w: Any, page: Any, pages: Any) -> None:
        page[pdf_name("/Rotate")] = generic.NumberObject(rotate)

    rotated = transformed(sample.read_bytes(), rot)
    original = sample.read_bytes()
    if subprocess.run(["pdftotext", "-f", "1", "-l", "1", "-", "-"], input=original,
                      capture_output=True, check=True).stdout.strip():
        # The stamp is drawn over the page, never hiding it: test the corners that are
        # margins once rotated (the samples write from the top of the page down).
        corners = FREE_WHEN_ROTATED[rotate % 360]
    else:
        corners = CORNERS  # a blank page: all of them
    for corner in corners:
        out, code = make(rotated, font, position=corner)
        qpdf_check(out, tmp_path)
        assert_in_corner(out, 1, code, corner, tmp_path)


@pytest.mark.slow  # renders every quarter of the page
def test_inherited_rotation_and_crop_box(font: Any, tmp_path: Path) -> None:
    """/Rotate and /CropBox set on the page tree, not the page; a crop box off the
    origin: the stamp goes in the corner of what is shown."""
    def inherit(w: Any, page: Any, pages: Any) -> None:
        for key in ("/Rotate", "/CropBox"):
            page.pop(key, None)
        pages[pdf_name("/Rotate")] = generic.NumberObject(90)
        pages[pdf_name("/CropBox")] = generic.ArrayObject(
            generic.FloatObject(v) for v in (60, 80, 520, 700))

    pdf = transformed(SAMPLE_FILES[-1].read_bytes(), inherit)
    for corner in CORNERS:
        out, code = make(pdf, font, position=corner)
        qpdf_check(out, tmp_path)
        assert_in_corner(out, 1, code, corner, tmp_path)


@pytest.mark.parametrize("sample", SAMPLE_FILES, ids=lambda p: p.name)
def test_crop_box_smaller_than_the_media_box(sample: Path, font: Any, tmp_path: Path
                                            ) -> None:
    def crop(w: Any, page: Any, pages: Any) -> None:
        page[pdf_name("/CropBox")] = generic.ArrayObject(
            generic.FloatObject(v) for v in (30, 40, 400, 600))

    out, code = make(transformed(sample.read_bytes(), crop), font)
    assert_in_corner(out, 1, code, "top-right", tmp_path)
    _x1, y1, x2, _y2, w, h = word_box(out, 1, display(code), tmp_path)
    assert (w, h) == (370, 560) and x2 < w and y1 > 0


@pytest.mark.parametrize("sample", SAMPLE_FILES, ids=lambda p: p.name)
def test_resources_inherited_from_the_page_tree(sample: Path, font: Any, tmp_path: Path
                                               ) -> None:
    """The page has no /Resources of its own: the stamp's must not hide the inherited
    ones (the page's text still renders)."""
    def inherit(w: Any, page: Any, pages: Any) -> None:
        resources = page.get("/Resources") or pages.get("/Resources")
        pages[pdf_name("/Resources")] = w.add_object(generic.DictionaryObject(
            resources.get_object()))
        page.pop("/Resources", None)

    pdf = transformed(sample.read_bytes(), inherit)
    text = lambda b: subprocess.run(["pdftotext", "-", "-"], input=b,  # noqa: E731
                                    capture_output=True, check=True).stdout.decode()
    out, code = make(pdf, font)
    qpdf_check(out, tmp_path)
    assert text(pdf).split() and all(word in text(out) for word in text(pdf).split())
    assert decode(out, 1, tmp_path) == [verify_url(BASE, code)]


def test_from_a_file_and_the_link_annotation(font: Any, tmp_path: Path) -> None:
    original = SAMPLE_FILES[0].read_bytes()
    code = new_code()
    url = verify_url(BASE, code)
    out = BytesIO()
    with (tmp_path / "upload.pdf").open("w+b") as f:
        f.write(original)
        qrstamp.stamp_to(f, out, url=url, code=code, spec=VerificationSpec(), font=font)
    data = out.getvalue()
    assert data.startswith(original)
    page = PdfFileReader(BytesIO(data)).root["/Pages"]["/Kids"][0].get_object()
    links = [a.get_object() for a in page["/Annots"] if a.get_object()["/Subtype"] == "/Link"]
    assert len(links) == 1
    assert links[0]["/F"] == 4  # printable: PDF/A wants that of every annotation
    assert links[0]["/A"]["/URI"] == url


def test_a_page_too_small_is_refused(font: Any) -> None:
    def tiny(w: Any, page: Any, pages: Any) -> None:
        page[pdf_name("/CropBox")] = generic.ArrayObject(
            generic.FloatObject(v) for v in (0, 0, 80, 80))

    pdf = transformed(SAMPLE_FILES[0].read_bytes(), tiny)
    with pytest.raises(PdfRejected) as e:
        make(pdf, font)
    assert e.value.code == "pdf_not_stampable" and e.value.status < 500


def test_unreadable_pages_are_refused_not_crashed(font: Any) -> None:
    def broken(w: Any, page: Any, pages: Any) -> None:
        page.pop("/MediaBox", None)
        pages.pop("/MediaBox", None)

    with pytest.raises(PdfRejected) as e:
        make(transformed(SAMPLE_FILES[0].read_bytes(), broken), font)
    assert e.value.code == "pdf_not_stampable"


# -- the policy option ------------------------------------------------------------------

def policy_with(verification: Any = None) -> Any:
    raw: dict[str, Any] = {
        "id": "p", "version": 1, "title": "P", "hash_algorithm": "sha256",
        "docmdp": "fill_forms",
        "roles": [{"name": "teacher", "title": "T", "appearance": "%(signer)s",
                   "field": {"name": "Sig", "page": -1, "box": [40, 40, 205, 130]},
                   "key_usage": ["digital_signature"]}],
    }
    if verification is not None:
        raw["verification"] = verification
    return parse_policy("p.toml", raw)


def test_policy_default_and_values() -> None:
    assert policy_with().verification == VerificationSpec(page=1, position="top-right",
                                                          size=64, margin=18)
    spec = policy_with({"page": -1, "position": "bottom-left", "size": 80, "margin": 30})
    assert spec.verification == VerificationSpec(-1, "bottom-left", 80, 30)
    assert policy_with({"position": "top-left"}).verification.size == 64


@pytest.mark.parametrize("bad, message", [
    ({"page": 0}, "page"),
    ({"page": "1"}, "expected int"),
    ({"position": "middle"}, "not one of"),
    ({"position": "top_right"}, "not one of"),
    ({"size": 10}, "size"),
    ({"size": 1000}, "size"),
    ({"size": 64.5}, "expected int"),
    ({"margin": -1}, "margin"),
    ({"margin": True}, "expected int"),
    ({"colour": "red"}, "unknown key"),
    ("top-right", "expected dict"),
])
def test_policy_rejects_bad_values(bad: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        policy_with(bad)


def test_shipped_policies_place_the_stamp() -> None:
    from signer.policy import load_policies
    from tests.conftest import REPO

    for policy in load_policies(REPO / "policies").values():
        assert policy.verification.position in CORNERS
