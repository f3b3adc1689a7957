"""The qpdf screen in front of the object walk: it may only spare the walk, never change an
outcome. Every file here is checked twice, with the screen and with the walk alone, and the
two outcomes (facts, or error class, code and detail) must be the same."""

import random
import re
from collections.abc import Callable
from io import BytesIO
from typing import Any

import pytest
from pyhanko.pdf_utils.reader import PdfFileReader

from signer.errors import HocbaError
from signer.inputs import check_pdf, pdfscan
from tests.fixtures import make_bad_pdfs as pdfs
from tests.unit.test_inputs import ACCEPTED, MAX, REFUSED

SAMPLES: list[Callable[[], bytes]] = [pdfs.fpdf2_sample, pdfs.pdfa_sample,
                                      pdfs.minimal_pdf_xref_stream]


def outcome(data: bytes) -> Any:
    try:
        return check_pdf(data, max_bytes=MAX)
    except HocbaError as e:
        # Python words a RecursionError by where in C the stack ran out; the type is the fact
        detail = re.sub(r"(RecursionError): .*", r"\1", e.detail)
        return (type(e).__name__, e.code, detail)


def walk_only(monkeypatch: pytest.MonkeyPatch, data: bytes) -> Any:
    with monkeypatch.context() as m:
        m.setattr(pdfscan, "_qpdf_screen_clean", lambda stream, reader, **limits: False)
        return outcome(data)


def screened(data: bytes) -> bool:
    return pdfscan._qpdf_screen_clean(BytesIO(data), PdfFileReader(BytesIO(data), strict=True))


@pytest.mark.parametrize("build", SAMPLES, ids=lambda f: f.__name__)
def test_clean_samples_pass_the_screen(build: Callable[[], bytes]) -> None:
    assert screened(build())


@pytest.mark.parametrize("build", [b for b, *_ in REFUSED if b.__name__ != "<lambda>"]
                         + ACCEPTED, ids=lambda f: f.__name__)
def test_same_outcome_with_and_without_the_screen(
    build: Callable[[], bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = build()
    assert outcome(data) == walk_only(monkeypatch, data)


@pytest.mark.parametrize("build", [pdfs.open_action_js_pdf, pdfs.orphan_js_pdf,
                                   pdfs.js_in_object_stream_pdf, pdfs.indirect_js_name_pdf,
                                   pdfs.incremental_js_on_sample_pdf, pdfs.embedded_file_pdf,
                                   pdfs.signed_pdf, pdfs.open_action_goto_pdf],
                         ids=lambda f: f.__name__)
def test_active_content_never_passes_the_screen(build: Callable[[], bytes]) -> None:
    assert not screened(build())


def test_mutated_files_same_outcome(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(20261204)
    seeds = [b() for b in SAMPLES]
    screened_clean = 0
    for _ in range(300):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 8)):
            at = rng.randrange(len(data))
            if rng.random() < 0.7:
                data[at] = rng.randrange(256)
            else:
                del data[at : at + rng.randint(1, 40)]
        got = outcome(bytes(data))
        assert got == walk_only(monkeypatch, bytes(data))
        screened_clean += not isinstance(got, tuple)
    assert screened_clean > 0
