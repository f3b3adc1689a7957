"""The PDF mutation corpus (tests/fuzzpdf.py, >= 1,000 files made at test time from the
samples) through the API: every mutant to POST /v1/records and POST /v1/verify; every
mutant the upload accepts through every signing path (teacher by the CSC provider,
principal in two steps with a client-held key, seal by the PKCS#11 key), its archived
final verified; a few of them through a batch. Never a 5xx; a refusal is problem+json
with a stable code and stores nothing; no accepted record is left unsignable."""

from __future__ import annotations

import base64
import collections
import io
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from tests import fuzzpdf
from tests.integration.helpers import PROBLEM_JSON, auth, metadata, sign, state_of
from tests.integration.test_batches import wait_job

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# The codes an upload of a PDF may be refused with (signer/inputs, qrstamp).
UPLOAD_CODES = {"pdf_not_a_pdf", "pdf_encrypted", "pdf_malformed", "pdf_already_signed",
                "pdf_active_content", "pdf_too_large", "pdf_not_stampable",
                "pdf_xmp_invalid", "pdf_page_tree_invalid", "pdf_too_complex"}
# The codes a verification may answer a document it cannot judge with.
VERIFY_CODES = {"pdf_not_a_pdf", "pdf_malformed", "pdf_encrypted", "pdf_too_large",
                "pdf_unreadable", "not_signed", "pdf_too_complex"}
BATCH_SIZE = 6


def post_form(http: Any, path: str, pdf: bytes, headers: dict[str, str],
              meta: dict[str, Any] | None = None) -> Any:
    """The multipart body encoded here, in memory (the test client spools a body over
    500 KB to a temporary file it never closes)."""
    fields: dict[str, Any] = {
        "document": FileStorage(io.BytesIO(pdf), "record.pdf", content_type="application/pdf")}
    if meta is not None:
        fields["metadata"] = json.dumps(meta, ensure_ascii=False)
    boundary, body = encode_multipart(fields)
    return http.post(path, headers=headers, data=body,
                     content_type=f"multipart/form-data; boundary={boundary}")


def check_answer(resp: Any, label: str, codes: set[str]) -> dict[str, Any]:
    """No 5xx; a 4xx is problem+json with one of `codes`."""
    body: dict[str, Any] = resp.get_json(silent=True) or {}
    assert resp.status_code < 500, (label, resp.status_code, resp.get_data(as_text=True)[:500])
    if resp.status_code >= 400:
        assert resp.mimetype == PROBLEM_JSON, (label, resp.mimetype)
        assert body.get("status") == resp.status_code, (label, body)
        assert body.get("code") in codes, (label, body)
    return body


def pupil_meta(sample: str, number: int) -> dict[str, Any]:
    """The sample's metadata for a pupil of its own (uniqueness is per pupil)."""
    student = metadata(sample)["student"]
    return metadata(sample, student={**student, "id_number": student["id_number"][:6]
                                     + f"{number:06d}", "student_code": f"HS-F{number}"})


class Paths:
    """The three signing paths, each driven as its client would."""

    def __init__(self, http: Any, key: str, clients_doc: dict[str, Any],
                 test_state: Path) -> None:
        self.http, self.key = http, key
        self.otp = next(s for s in clients_doc["signers"]
                        if s["backend"] == "csc")["authorization"]["otp"]
        certs = test_state / "pki" / "certs"
        self.chain = [(certs / "client-principal-1.pem").read_text(),
                      (certs / "interm.pem").read_text()]
        private = serialization.load_pem_private_key(
            (test_state / "pki" / "keys" / "client-principal-1.key.pem").read_bytes(), None)
        assert isinstance(private, rsa.RSAPrivateKey)
        self.client_key = private

    def teacher_csc(self, rid: str) -> Any:
        return self.http.post(f"/v1/records/{rid}/signatures", headers=auth(self.key),
                              json={"role": "teacher", "key": "school-1-csc-teacher",
                                    "authorization": {"otp": self.otp}})

    def principal_two_step(self, rid: str) -> Any:
        started = self.http.post(f"/v1/records/{rid}/signing-sessions", headers=auth(self.key),
                                 json={"role": "principal", "certificate_chain": self.chain})
        if started.status_code != 201:
            return started
        session = started.get_json()
        value = self.client_key.sign(base64.b64decode(session["data_to_sign"]),
                                     padding.PKCS1v15(), hashes.SHA256())
        return self.http.post(f"/v1/signing-sessions/{session['session_id']}/complete",
                              headers=auth(self.key),
                              json={"signature_value": base64.b64encode(value).decode()})

    def seal_pkcs11(self, rid: str) -> Any:
        return sign(self.http, self.key, rid, "seal", "school-1-seal")


def test_fuzz_corpus_create_sign_verify(app: Any, http: Any, api_keys: dict[str, str],
                                        clients_doc: dict[str, Any],
                                        test_state: Path) -> None:
    mutants = fuzzpdf.corpus()
    assert len(mutants) >= 1000
    assert {m.kind for m in mutants} == {"byte_flip", "truncation", "xref_damage", "nesting",
                                         "bomb", "page_tree", "xmp", "active"}
    key = api_keys["school-1"]
    accepted: list[tuple[fuzzpdf.Mutant, str]] = []
    outcomes: collections.Counter[tuple[str, str]] = collections.Counter()
    before = state_of(app)
    for number, mutant in enumerate(mutants):
        sample = mutant.name.split("/")[1].rsplit("-", 1)[0] + ".pdf"
        resp = post_form(http, "/v1/records", mutant.data, auth(key), pupil_meta(sample, number))
        body = check_answer(resp, mutant.name, UPLOAD_CODES)
        if resp.status_code == 201:
            accepted.append((mutant, body["id"]))
            before = state_of(app)
            outcomes[(mutant.kind, "accepted")] += 1
        else:
            outcomes[(mutant.kind, body["code"])] += 1
            after = state_of(app)
            assert after == before, (mutant.name, "a refused upload changed the archive")
        check_answer(post_form(http, "/v1/verify", mutant.data, {}), mutant.name,
                     VERIFY_CODES)
    print(json.dumps({f"{k}/{c}": n for (k, c), n in sorted(outcomes.items())}, indent=1))
    # Each class both accepted and refused something: the corpus tests the gate.
    assert accepted, "the upload accepted nothing: the corpus is all noise"
    assert any(m.kind == "active" for m, _ in accepted)  # a URI link, a destination
    for kind in ("byte_flip", "page_tree", "xmp", "active"):
        assert any(k == kind and c != "accepted" for k, c in outcomes), kind

    paths = Paths(http, key, clients_doc, test_state)
    batch = accepted[:BATCH_SIZE]
    unsignable: list[tuple[str, str, int, str]] = []  # every one listed, then asserted
    for mutant, rid in accepted[BATCH_SIZE:]:
        for step in (paths.teacher_csc, paths.principal_two_step, paths.seal_pkcs11):
            resp = step(rid)
            if resp.status_code != 200:
                unsignable.append((mutant.name, step.__name__, resp.status_code,
                                   resp.get_data(as_text=True)[:300]))
                break
        else:
            assert resp.get_json()["status"] == "archived", mutant.name
            final = http.get(f"/v1/records/{rid}/document", headers=auth(key))
            assert final.status_code == 200
            report = check_answer(post_form(http, "/v1/verify", final.data, {}), mutant.name,
                                  set())
            if report["indication"] != "TOTAL_PASSED":
                unsignable.append((mutant.name, "verify", 200, json.dumps(
                    [(s["field"], s["indication"], s["sub_indication"], s["intact"])
                     for s in report["signatures"]])))
    assert not unsignable, "\n".join(map(str, unsignable))

    # A class of accepted mutants through batches (server-held keys), role by role.
    ids = [rid for _, rid in batch]
    for role, signer in (("teacher", "school-1-teacher"), ("principal", "school-1-principal"),
                         ("seal", "school-1-seal")):
        resp = http.post("/v1/batches", headers=auth(key),
                         json={"role": role, "key": signer, "record_ids": ids})
        assert resp.status_code == 202, resp.get_data(as_text=True)
        job = wait_job(http, key, resp.get_json()["job_id"])
        assert (job["done"], job["failed"]) == (len(ids), []), (role, job)
    for mutant, rid in batch:
        rec = http.get(f"/v1/records/{rid}", headers=auth(key)).get_json()
        assert rec["status"] == "archived", (mutant.name, rec["status"])


# --- a signing step that still meets an unreadable document --------------------------


def test_an_unreadable_document_at_signing_is_a_problem_never_a_500(
        http: Any, api_keys: dict[str, str], samples: dict[str, bytes],
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from signer.service import archiving, keysigning

    key = api_keys["school-1"]
    sample = "hoc-ba-tieu-hoc-fpdf2.pdf"
    created = post_form(http, "/v1/records", samples[sample], auth(key),
                        pupil_meta(sample, 999_001))
    assert created.status_code == 201, created.get_data(as_text=True)
    rid = created.get_json()["id"]
    before = http.get(f"/v1/records/{rid}", headers=auth(key)).get_json()

    def failing(error: Exception) -> Any:
        async def produce(*args: Any, **kwargs: Any) -> None:
            raise error
        return produce

    for error, status, code in [(RecursionError("deep"), 422, "record_unreadable"),
                                (KeyError("/Kids"), 422, "record_unreadable"),
                                (RuntimeError("surprise"), 503, "signing_failed")]:
        monkeypatch.setattr(keysigning, "sign_role_to", failing(error))
        caplog.clear()
        resp = sign(http, key, rid, "teacher", "school-1-teacher")
        body = resp.get_json()
        assert resp.mimetype == PROBLEM_JSON
        assert (resp.status_code, body["status"], body["code"]) == (status, status, code)
        logged = [r for r in caplog.records if r.exc_info and r.exc_info[1] is error]
        assert len(logged) == 1, caplog.records  # once, with its traceback
        assert http.get(f"/v1/records/{rid}", headers=auth(key)).get_json() == before
    monkeypatch.undo()

    for role in ("teacher", "principal"):
        assert sign(http, key, rid, role, f"school-1-{role}").status_code == 200
    # the last role commits, then archiving (DSS + document timestamp) meets the failure
    monkeypatch.setattr(archiving, "finish_lta_to", failing(IndexError("list index")))
    resp = sign(http, key, rid, "seal", "school-1-seal")
    assert check_answer(resp, "finish", {"record_unreadable"})["status"] == 422
    assert http.get(f"/v1/records/{rid}", headers=auth(key)).get_json()["status"] != "archived"
    monkeypatch.undo()
    resp = sign(http, key, rid, "seal", "school-1-seal")  # asking again finishes it
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.get_json()["status"] == "archived"


def test_base_exceptions_still_propagate() -> None:
    from signer.service.signing import SigningStep, _as_problem

    step = SigningStep.__new__(SigningStep)
    for error in (KeyboardInterrupt(), SystemExit(3)):
        with pytest.raises(type(error)):
            _as_problem(error)

        def interrupted(error: BaseException = error) -> Any:
            raise error
        with pytest.raises(type(error)):
            step._guard(interrupted)
    assert _as_problem(RecursionError()).code == "record_unreadable"
    assert _as_problem(ValueError()).status == 503
