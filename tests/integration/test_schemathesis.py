"""schemathesis against the OpenAPI document the app serves (GET /openapi.yaml, the same
bytes as the file: checked below), through a WSGI call of the real app: every operation,
every check schemathesis has, with an API key that has the operation's scope (the checks
that leave auth out expect 401). Bounded examples per operation so the whole run takes a
minute or two.

The schema is loaded from the file at import: schemathesis's lazy loader (`from_fixture`,
which would take the app's own answer) needs a pytest attribute pytest 9 no longer has
(`Function._nodeid`, schemathesis 4.32)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode

from signer.http.schemas import openapi_path
from tests.integration.helpers import auth, create_archived, make_app, metadata, upload

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MAX_EXAMPLES = 100
SAMPLE = "hoc-ba-tieu-hoc-fpdf2.pdf"
# the client whose key has the scope (tests/conftest.py's clients: school-1 writes and
# signs, the archivist reads, admin administers and reads statistics)
CLIENT_OF_SCOPE = {"records:write": "school-1", "records:sign": "school-1",
                   "archive:read": "archivist", "archive:admin": "admin",
                   "stats:read": "admin"}


RECORDS: list[str] = []  # real records (one awaiting signatures, one archived)


@pytest.fixture(scope="module")
def st_app(tmp_path_factory: pytest.TempPathFactory, service_env: dict[str, str],
           responder: Any, api_keys: dict[str, str], samples: dict[str, bytes]) -> Any:
    """The app, holding a record awaiting signatures and an archived one, so generated
    requests reach past 404 too."""
    responder.start()
    app = make_app(service_env, tmp_path_factory.mktemp("schemathesis"))
    http, key = app.test_client(), api_keys["school-1"]
    resp = upload(http, key, samples[SAMPLE], metadata(SAMPLE))
    assert resp.status_code == 201, resp.get_data(as_text=True)
    archived = create_archived(http, key, samples[SAMPLE], metadata(
        SAMPLE, student={"id_number": "001217088801", "full_name": "Lê Thu Hà",
                         "date_of_birth": "2017-11-20", "student_code": "HS-088801"}))
    RECORDS[:] = [resp.get_json()["id"], archived["id"]]
    return app


@pytest.fixture(scope="module")
def keys_by_operation(st_app: Any, api_keys: dict[str, str]) -> dict[tuple[str, str], str]:
    """(OpenAPI path, METHOD) -> an API key with the scope the view requires (none for a
    public one)."""
    found = KEYS
    for rule in st_app.url_map.iter_rules():
        scopes = getattr(st_app.view_functions[rule.endpoint], "required_scopes", ())
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            if scopes:
                found[(openapi_path(rule.rule), method)] = \
                    api_keys[CLIENT_OF_SCOPE[scopes[0]]]
    return found


SPEC = Path(__file__).resolve().parents[2] / "openapi.yaml"
# Every check, with two settings said here:
# - a query parameter the document does not name is ignored, as HTTP APIs do (a cache
#   buster, a tracking tag on a link to a page), so none is generated as "negative" data;
# - the operations whose inputs hold what a schema cannot express (a PDF, PEM
#   certificates, a role and a key the deployment's policies and registry name, a
#   pupil's real identification number, a school that exists, a cursor the service gave
#   out, a share link's lifetime of at least 60 s, below the schema's floor of 1 s that
#   tests use) refuse most schema-valid inputs with their documented 400/422 codes: those
#   are expected answers to positive data there (every other check still applies).
CONFIG = schemathesis.Config.from_str("""
[checks]
enabled = true

[generation]
allow-extra-parameters = false

[[operations]]
include-operation-id = ["createRecord", "verify", "verifyUploadPage",
                        "startSigningSession", "startBatchSigningSession",
                        "createTransfer", "listArchiveRecords", "signRecord",
                        "createBatch", "shareRecord"]
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404",
                                                     "409", "422"]
""")
schema = schemathesis.openapi.from_path(str(SPEC), config=CONFIG)
KEYS: dict[tuple[str, str], str] = {}  # (OpenAPI path, METHOD) -> API key, filled below


@schemathesis.auth(refresh_interval=None, retry_on=[])
class ApiKeyOfTheScope:
    """The key with the scope the operation needs; schemathesis leaves it out of the
    cases (and checks) that test a missing or wrong credential."""

    def get(self, case: Any, context: Any) -> str | None:
        return KEYS.get((case.operation.path, case.method.upper()))

    def set(self, case: Any, data: str | None, context: Any) -> None:
        if data:
            case.headers = {**(case.headers or {}), **auth(data)}


def test_the_served_document_is_the_one_tested(st_app: Any) -> None:
    served = st_app.test_client().get("/openapi.yaml")
    assert served.status_code == 200
    assert served.get_data() == SPEC.read_bytes()


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_api(case: Any, st_app: Any, keys_by_operation: dict[tuple[str, str], str]) -> None:
    assert keys_by_operation  # the keys ApiKeyOfTheScope gives
    path = case.path_parameters or {}
    if "record_id" in path and case.meta.generation.mode == GenerationMode.POSITIVE:
        # most positive cases name a real record (which one: from the generated id)
        pick = sum(map(ord, str(path["record_id"]))) % (len(RECORDS) + 1)
        if pick < len(RECORDS):
            path["record_id"] = RECORDS[pick]
    # every call, the checks' own included, goes to the app (WSGI): the operation and the
    # copy of the schema `parametrize` keeps are given it
    case.operation.app = case.operation.schema.app = st_app
    case.call_and_validate()


def test_every_secured_operation_has_a_key(st_app: Any,
                                           keys_by_operation: dict[tuple[str, str], str]
                                           ) -> None:
    """The key table covers each route behind `require` (a new scope is mapped)."""
    import yaml

    doc = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    public = {(p, m.upper()) for p, ops in doc["paths"].items() for m, op in ops.items()
              if isinstance(op, dict) and op.get("security") == []}
    for rule in st_app.url_map.iter_rules():
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            op = (re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule), method)
            assert (op in keys_by_operation) != (op in public), op
