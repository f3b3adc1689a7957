"""One Idempotency-Key, 20 callers at once, against gunicorn (2 workers x 4 threads) on the
default SQLite index and on PostgreSQL: exactly one effect, and every caller gets either
the replay of the one answer or 409 idempotency_conflict (issue 14, defect 4). Then, in
one process, what a caller sees while the first request is at work, fails, or died."""

from __future__ import annotations

import itertools
import json
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from archive.index import Index, schema
from signer.errors import DependencyError
from signer.http import idempotency
from tests.conftest import Responder, postgres_database
from tests.integration.gunicorn_service import SAMPLE, Service, bearer, free_port
from tests.integration.helpers import metadata, problem, pupil_name, upload

pytestmark = [pytest.mark.integration]
N = 20
TRIALS = 3
_pupils = itertools.count(1)


class Backend:
    def __init__(self, svc: Service, index_url: str) -> None:
        self.svc = svc
        url = sa.make_url(index_url)
        if url.drivername == "postgresql":
            url = url.set(drivername="postgresql+psycopg")
        self.engine = sa.create_engine(url)

    def count(self, table: sa.Table) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, service_env: dict[str, str], responder: Responder,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    responder.start()
    tmp = tmp_path_factory.mktemp(f"idem-{request.param}")

    def run(index_url: str) -> Iterator[Backend]:
        env = {**service_env, "HOCBA_STORE": str(tmp / "store"), "HOCBA_INDEX_URL": index_url}
        svc = Service(env, free_port(), workers=2, threads=4, log=tmp / "gunicorn.log")
        svc.start()
        b = Backend(svc, index_url)
        try:
            yield b
            log = svc.log_text()
            assert "Traceback" not in log, log[-6000:]
        finally:
            svc.stop()
            b.engine.dispose()

    if request.param == "sqlite":
        yield from run(f"sqlite:///{tmp / 'index.sqlite3'}")
    else:
        with postgres_database() as pg_url:
            yield from run(pg_url)


def race(calls: list[Callable[[], requests.Response]]) -> list[requests.Response]:
    """Run every call in its own thread, released together."""
    barrier = threading.Barrier(len(calls))
    answers: list[requests.Response | BaseException | None] = [None] * len(calls)

    def one(i: int) -> None:
        barrier.wait(timeout=30)
        try:
            answers[i] = calls[i]()
        except BaseException as e:  # reported below
            answers[i] = e

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    failed = [a for a in answers if not isinstance(a, requests.Response)]
    assert not failed, failed
    return [a for a in answers if isinstance(a, requests.Response)]


def pupil_metadata() -> str:
    i = next(_pupils)
    meta = metadata(SAMPLE, student={"id_number": f"0012179{i:05d}",
                                     "full_name": pupil_name(i),
                                     "date_of_birth": "2017-11-20", "student_code": f"HS-{i}"})
    return json.dumps(meta, ensure_ascii=False)


def post_record(svc: Service, api_key: str, pdf: bytes, meta: str,
                idempotency_key: str | None = None) -> requests.Response:
    headers = bearer(api_key)
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    files: dict[str, Any] = {"document": ("r.pdf", pdf, "application/pdf"),
                             "metadata": (None, meta)}
    return requests.post(f"{svc.base}/v1/records", headers=headers, files=files, timeout=120)


def post_signature(svc: Service, api_key: str, record_id: str,
                   idempotency_key: str) -> requests.Response:
    return requests.post(f"{svc.base}/v1/records/{record_id}/signatures",
                         headers={**bearer(api_key), "Idempotency-Key": idempotency_key},
                         json={"role": "teacher", "key": "school-1-teacher"}, timeout=120)


def new_record(svc: Service, api_key: str, pdf: bytes) -> str:
    r = post_record(svc, api_key, pdf, pupil_metadata())
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def summary(answers: list[requests.Response]) -> str:
    return str(sorted(Counter((r.status_code, r.json().get("code"),
                               r.headers.get("Idempotent-Replayed")) for r in answers).items(),
                      key=str))


def assert_one_winner_others_conflict(answers: list[requests.Response], status: int) -> None:
    won = [r for r in answers if r.status_code == status]
    lost = [r for r in answers if r.status_code == 409
            and r.json().get("code") == "idempotency_conflict"]
    assert len(won) == 1 and len(lost) == N - 1, summary(answers)
    assert "Idempotent-Replayed" not in won[0].headers
    assert all(r.headers["Content-Type"] == "application/problem+json" for r in lost)


def assert_one_answer_replayed(answers: list[requests.Response], status: int) -> None:
    assert all(r.status_code == status for r in answers), summary(answers)
    first = [r for r in answers if "Idempotent-Replayed" not in r.headers]
    replays = [r for r in answers if r.headers.get("Idempotent-Replayed") == "true"]
    assert len(first) == 1 and len(replays) == N - 1, summary(answers)
    assert all(r.content == first[0].content for r in replays)
    assert all(r.headers["Content-Type"] == "application/json" for r in answers)


@pytest.mark.slow
def test_create_one_key_different_bodies(backend: Backend, api_keys: dict[str, str],
                                         samples: dict[str, bytes]) -> None:
    api_key, pdf = api_keys["school-1"], samples[SAMPLE]
    for _ in range(TRIALS):
        key = f"create-{uuid.uuid4()}"
        metas = [pupil_metadata() for _ in range(N)]
        before = backend.count(schema.records)
        answers = race([partial(post_record, backend.svc, api_key, pdf, m, key)
                        for m in metas])
        assert_one_winner_others_conflict(answers, 201)
        assert backend.count(schema.records) == before + 1
        # the one record is the winner's, and a replay of the winner's body gives it again
        winner = next(i for i, r in enumerate(answers) if r.status_code == 201)
        again = post_record(backend.svc, api_key, pdf, metas[winner], key)
        assert again.status_code == 201 and again.content == answers[winner].content
        assert again.headers["Idempotent-Replayed"] == "true"


@pytest.mark.slow
def test_create_one_key_same_body(backend: Backend, api_keys: dict[str, str],
                                  samples: dict[str, bytes]) -> None:
    api_key, pdf = api_keys["school-1"], samples[SAMPLE]
    for _ in range(TRIALS):
        key, meta = f"create-{uuid.uuid4()}", pupil_metadata()
        before = backend.count(schema.records)
        answers = race([partial(post_record, backend.svc, api_key, pdf, meta, key)] * N)
        assert_one_answer_replayed(answers, 201)
        assert backend.count(schema.records) == before + 1


@pytest.mark.slow
def test_sign_one_key_different_records(backend: Backend, api_keys: dict[str, str],
                                        samples: dict[str, bytes]) -> None:
    api_key, pdf = api_keys["school-1"], samples[SAMPLE]
    for _ in range(TRIALS):
        with ThreadPoolExecutor(4) as pool:
            ids = list(pool.map(lambda _i: new_record(backend.svc, api_key, pdf), range(N)))
        key = f"sign-{uuid.uuid4()}"
        before = backend.count(schema.signatures)
        answers = race([partial(post_signature, backend.svc, api_key, rid, key)
                        for rid in ids])
        assert_one_winner_others_conflict(answers, 200)
        assert backend.count(schema.signatures) == before + 1


@pytest.mark.slow
def test_sign_one_key_same_body(backend: Backend, api_keys: dict[str, str],
                                samples: dict[str, bytes]) -> None:
    api_key, pdf = api_keys["school-1"], samples[SAMPLE]
    for _ in range(TRIALS):
        rid = new_record(backend.svc, api_key, pdf)
        key = f"sign-{uuid.uuid4()}"
        before = backend.count(schema.signatures)
        answers = race([partial(post_signature, backend.svc, api_key, rid, key)] * N)
        assert_one_answer_replayed(answers, 200)
        assert backend.count(schema.signatures) == before + 1
        assert [s["role"] for s in answers[0].json()["signatures"]
                if s["status"] == "signed"] == ["teacher"]


# -- in one process: waiting, failing, a dead holder --------------------------------------


class Held:
    """records.create made to wait, in the app, until the test lets it go on."""

    def __init__(self, app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.started, self.go_on = threading.Event(), threading.Event()
        records = app.extensions["hocba"].records
        real = records.create
        self.calls = 0

        def create(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            self.started.set()
            assert self.go_on.wait(30)
            return real(*args, **kwargs)

        monkeypatch.setattr(records, "create", create)


def in_thread(action: Callable[[], Any]) -> Callable[[], Any]:
    """Start action in a thread; the returned function joins it and gives its result."""
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(action()))
    thread.start()

    def result() -> Any:
        thread.join(60)
        assert out, "the request did not finish"
        return out[0]

    return result


def test_a_caller_waits_for_the_first_answer_and_gets_it_replayed(
        app: Any, api_keys: dict[str, str], samples: dict[str, bytes],
        monkeypatch: pytest.MonkeyPatch) -> None:
    api_key, pdf, meta = api_keys["school-1"], samples[SAMPLE], pupil_metadata()
    idem = {"Idempotency-Key": "wait-1"}
    held = Held(app, monkeypatch)
    first = in_thread(lambda: upload(app.test_client(), api_key, pdf, meta, idem))
    assert held.started.wait(30)
    second = in_thread(lambda: upload(app.test_client(), api_key, pdf, meta, idem))
    # a different request with the key is refused at once, while the first one works
    other = upload(app.test_client(), api_key, pdf, pupil_metadata(), idem)
    problem(other, 409, "idempotency_conflict")
    held.go_on.set()
    a, b = first(), second()
    assert a.status_code == 201 and "Idempotent-Replayed" not in a.headers
    assert b.status_code == 201 and b.headers["Idempotent-Replayed"] == "true"
    assert b.get_data() == a.get_data()
    assert held.calls == 1


def test_a_caller_stops_waiting_with_idempotency_in_progress(
        app: Any, api_keys: dict[str, str], samples: dict[str, bytes],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(idempotency, "WAIT_SECONDS", 0.3)
    api_key, pdf, meta = api_keys["school-1"], samples[SAMPLE], pupil_metadata()
    idem = {"Idempotency-Key": "wait-2"}
    held = Held(app, monkeypatch)
    first = in_thread(lambda: upload(app.test_client(), api_key, pdf, meta, idem))
    assert held.started.wait(30)
    late = upload(app.test_client(), api_key, pdf, meta, idem)
    problem(late, 409, "idempotency_in_progress")
    assert late.headers["Retry-After"] == "1"
    held.go_on.set()
    assert first().status_code == 201
    again = upload(app.test_client(), api_key, pdf, meta, idem)
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert held.calls == 1


def test_a_failed_request_keeps_no_answer(app: Any, http: Any, api_keys: dict[str, str],
                                          samples: dict[str, bytes],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    api_key, pdf = api_keys["school-1"], samples[SAMPLE]
    idem = {"Idempotency-Key": "fails-1"}
    # a 4xx: the same key serves the corrected request
    problem(upload(http, api_key, pdf, "{}", idem), 422, "metadata_invalid")
    assert upload(http, api_key, pdf, pupil_metadata(), idem).status_code == 201
    # a dependency failure (5xx) and an unexpected error: the same request runs again
    records = app.extensions["hocba"].records
    real = records.create
    failures = [DependencyError("the store is down", code="store_unavailable"),
                RuntimeError("boom")]

    def flaky(*args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop(0)
        return real(*args, **kwargs)

    monkeypatch.setattr(records, "create", flaky)
    idem, meta = {"Idempotency-Key": "fails-2"}, pupil_metadata()
    problem(upload(http, api_key, pdf, meta, idem), 503, "store_unavailable")
    problem(upload(http, api_key, pdf, meta, idem), 500, "internal_error")
    ok = upload(http, api_key, pdf, meta, idem)
    assert ok.status_code == 201 and "Idempotent-Replayed" not in ok.headers
    replay = upload(http, api_key, pdf, meta, idem)
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.get_data() == ok.get_data()


def test_a_dead_holders_reservation_is_taken_over(app: Any, http: Any,
                                                  api_keys: dict[str, str],
                                                  samples: dict[str, bytes]) -> None:
    api_key = api_keys["school-1"]
    rid = str(upload(http, api_key, samples[SAMPLE], pupil_metadata()).get_json()["id"])
    path = f"/v1/records/{rid}/signatures"
    body = {"role": "teacher", "key": "school-1-teacher"}
    with app.test_request_context(path, method="POST"):
        fingerprint = idempotency.request_hash(json.dumps(body, sort_keys=True).encode())
    # a worker reserved the key and was killed: its reservation is older than STALE_AFTER
    url = app.extensions["hocba"].settings.index_url
    ago = datetime.now(UTC) - idempotency.STALE_AFTER - timedelta(seconds=5)
    dead = Index(url, clock=lambda: ago)
    try:
        assert dead.reserve_idempotent("DEMO-SCHOOL-1", "sign-dead", fingerprint,
                                       stale_after=idempotency.STALE_AFTER).token
    finally:
        dead.close()
    other = {"role": "teacher", "key": "school-1-teacher-badku"}
    problem(http.post(path, headers={**bearer(api_key), "Idempotency-Key": "sign-dead"},
                      json=other), 409, "idempotency_conflict")
    signed = http.post(path, headers={**bearer(api_key), "Idempotency-Key": "sign-dead"},
                       json=body)
    assert signed.status_code == 200, signed.get_data(as_text=True)
    teacher = signed.get_json()["signatures"][0]
    assert teacher["role"] == "teacher" and teacher["status"] == "signed", teacher
