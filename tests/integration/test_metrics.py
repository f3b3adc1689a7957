"""/readyz asks the TSA for a real timestamp (a server that merely answers HTTP fails),
reuses that answer for 30 s, and /metrics probes nothing; /metrics counts per route and
status across gunicorn workers, and times signing, archiving and the TSA."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.gunicorn_service import Service, bearer, free_port
from tests.integration.helpers import auth, create_archived, make_app, metadata, upload

pytestmark = pytest.mark.integration
SAMPLE = "hoc-ba-tieu-hoc-fpdf2.pdf"
SIGNERS = [("teacher", "school-1-teacher"), ("principal", "school-1-principal"),
           ("seal", "school-1-seal")]
# TimeStampResp { status { rejection, "bad request" }, an empty data ContentInfo }
REJECTION = bytes.fromhex("30253012020102300d0c0b6261642072657175657374"
                          "300f06092a864886f70d010701a0020400")
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


class FakeTsa:
    """An HTTP server on 127.0.0.1 that counts requests and answers each (after `delay`
    seconds) with `body` as `content_type`: 200 text/html by default, no timestamp."""

    def __init__(self, body: bytes = b"<html>hello</html>", content_type: str = "text/html",
                 delay: float = 0.0) -> None:
        self.hits = 0
        self.body, self.content_type, self.delay = body, content_type, delay
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                fake.hits += 1
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                time.sleep(fake.delay)
                self.send_response(200)
                self.send_header("Content-Type", fake.content_type)
                self.send_header("Content-Length", str(len(fake.body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(fake.body)

            do_GET = do_HEAD = do_POST = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/tsa"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def html_server() -> Iterator[FakeTsa]:
    server = FakeTsa()
    yield server
    server.close()


def scrape(text: str) -> Samples:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


# -- the TSA check --------------------------------------------------------------------


def test_readiness_passes_with_a_real_tsa(http: Any) -> None:
    ready = http.get("/readyz")
    assert ready.status_code == 200, ready.get_json()
    assert ready.get_json()["checks"]["tsa"] == "ok"


@pytest.mark.parametrize(("server", "reason"), [
    (dict(), "TSA did not answer with a timestamp (ContentTypeError)"),
    (dict(body=b"not DER", content_type="application/timestamp-reply"),
     "TSA answer is not a timestamp response"),
    (dict(body=REJECTION, content_type="application/timestamp-reply"),
     "TSA did not answer with a timestamp (refused)"),
], ids=["html-200", "garbage-reply", "rejection"])
def test_a_server_that_is_no_tsa_fails_the_check(service_env: dict[str, str], tmp_path: Path,
                                                 live_responder: Any, server: dict[str, Any],
                                                 reason: str) -> None:
    fake = FakeTsa(**server)
    app = make_app(service_env, tmp_path, tsa_url=fake.url)
    try:
        ready = app.test_client().get("/readyz")
        assert ready.status_code == 503
        assert ready.get_json()["checks"]["tsa"].startswith(f"error: {reason}")
        assert fake.hits == 1
        assert all(v == "ok" for k, v in ready.get_json()["checks"].items() if k != "tsa")
    finally:
        app.extensions["hocba"].close()
        fake.close()


def test_the_tsa_answer_is_reused_and_metrics_never_probe(
        service_env: dict[str, str], tmp_path: Path, live_responder: Any,
        html_server: FakeTsa) -> None:
    app = make_app(service_env, tmp_path, tsa_url=html_server.url)
    http = app.test_client()
    try:
        for _ in range(5):
            assert http.get("/readyz").status_code == 503
        assert html_server.hits == 1  # one probe, reused
        for _ in range(5):
            text = http.get("/metrics").get_data(as_text=True)
        assert html_server.hits == 1  # a scrape probes nothing
        samples = scrape(text)
        assert value(samples, "hocba_dependency_up", dependency="tsa") == 0
        assert value(samples, "hocba_dependency_up", dependency="index") == 1
        assert value(samples, "hocba_dependency_up", dependency="hsm") == 1
        assert value(samples, "hocba_readiness_checked_timestamp_seconds",
                     dependency="tsa") > time.time() - 60

        app.extensions["hocba"].health.tsa_cache_seconds = 0  # the 30 s are over
        assert http.get("/readyz").status_code == 503
        assert html_server.hits == 2
    finally:
        app.extensions["hocba"].close()


# -- counted in one process -------------------------------------------------------------


def test_metrics_count_routes_signing_archiving_and_the_tsa(
        app: Any, http: Any, api_keys: dict[str, str], samples: dict[str, bytes]) -> None:
    key = api_keys["school-1"]
    before = scrape(http.get("/metrics").get_data(as_text=True))
    record = create_archived(http, key, samples[SAMPLE], metadata(SAMPLE), SIGNERS)
    for _ in range(3):
        assert http.get(f"/v1/records/{record['id']}", headers=auth(key)).status_code == 200
    assert http.get("/v1/records/no-such-record", headers=auth(key)).status_code == 404
    assert http.get("/no/such/path").status_code == 404
    after = scrape(http.get("/metrics").get_data(as_text=True))

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    route = "/v1/records/<record_id>"  # the URL rule, never the record's id
    assert delta("hocba_http_requests_total", method="GET", route=route, status="200") == 3
    assert delta("hocba_http_requests_total", method="GET", route=route, status="404") == 1
    assert delta("hocba_http_request_duration_seconds_count", method="GET", route=route,
                 status="200") == 3
    assert delta("hocba_http_requests_total", method="GET", route="(unmatched)",
                 status="404") == 1
    assert delta("hocba_http_requests_total", method="POST", route="/v1/records",
                 status="201") == 1
    assert not any(record["id"] in dict(labels).get("route", "") for _, labels in after)
    assert delta("hocba_signing_step_seconds_count", producer="LocalKey") == 2
    assert delta("hocba_signing_step_seconds_count", producer="Pkcs11Key") == 1
    assert delta("hocba_signing_outcomes_total", producer="Pkcs11Key", outcome="ok") == 1
    assert delta("hocba_archiving_seconds_count", outcome="ok") == 1
    # three signature timestamps and the document timestamp, at least (size estimates)
    assert delta("hocba_tsa_request_seconds_count", outcome="ok") >= 4
    assert delta("hocba_tsa_request_seconds_sum", outcome="ok") > 0


def test_metrics_read_the_index(app: Any, http: Any, api_keys: dict[str, str],
                                samples: dict[str, bytes]) -> None:
    upload(http, api_keys["school-1"], samples[SAMPLE], metadata(SAMPLE))
    index = app.extensions["hocba"].index
    index.create_job(tenant="DEMO-SCHOOL-1", kind="batch_sign", total=1, params={},
                     actor="test")  # queued; no job runner started in this test
    time.sleep(1.1)
    found = scrape(http.get("/metrics").get_data(as_text=True))
    assert value(found, "hocba_records", status="awaiting_signatures") == 1
    assert value(found, "hocba_jobs", status="queued") == 1
    assert value(found, "hocba_job_queue_depth") == 1
    assert value(found, "hocba_job_queue_oldest_age_seconds") >= 1
    assert value(found, "hocba_service_flag", flag="archive_lock") == 0
    assert ("hocba_audit_rows", frozenset()) in found


# -- counted across gunicorn workers ---------------------------------------------------


@pytest.mark.slow
def test_a_scrape_counts_every_workers_requests(service_env: dict[str, str], tmp_path: Path,
                                                live_responder: Any,
                                                api_keys: dict[str, str]) -> None:
    """Two sync workers: two slow /readyz at once take one each (the TSA is asked twice,
    once per worker, as each caches its own answer); any worker's scrape counts both."""
    slow_tsa = FakeTsa(delay=1.5)
    env = {**service_env, "HOCBA_STORE": str(tmp_path / "store"),
           "HOCBA_INDEX_URL": f"sqlite:///{tmp_path / 'index.sqlite3'}",
           "HOCBA_TSA_URL": slow_tsa.url}
    svc = Service(env, free_port(), workers=2, log=tmp_path / "gunicorn.log")
    svc.start()
    try:
        time.sleep(2)  # both workers booted (the service answers once one has)
        with ThreadPoolExecutor(2) as pool:
            statuses = list(pool.map(
                lambda _: requests.get(f"{svc.base}/readyz", timeout=30).status_code,
                range(2)))
        assert statuses == [503, 503]
        assert slow_tsa.hits == 2, "each worker answered one /readyz"
        key = bearer(api_keys["school-1"])
        for i in range(10):
            r = requests.get(f"{svc.base}/v1/records/missing-{i}", headers=key, timeout=30)
            assert r.status_code == 404
        for _ in range(6):  # whichever worker answers, the same counts
            text = requests.get(f"{svc.base}/metrics", timeout=30).text
            found = scrape(text)
            assert value(found, "hocba_http_requests_total", method="GET", route="/readyz",
                         status="503") == 2
            assert value(found, "hocba_http_requests_total", method="GET",
                         route="/v1/records/<record_id>", status="404") == 10
            assert value(found, "hocba_dependency_up", dependency="tsa") == 0
        assert slow_tsa.hits == 2  # scrapes probe nothing
    finally:
        svc.stop()
        slow_tsa.close()
    assert "Traceback" not in svc.log_text()
