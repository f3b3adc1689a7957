"""Prometheus metrics (prometheus_client): requests per route and status, the signing
step, archiving and the TSA, readiness checks, and the index's counts.

Several gunicorn workers, one answer: gunicorn.conf.py sets PROMETHEUS_MULTIPROC_DIR (a
new directory per run) before any worker starts, so prometheus_client keeps each
worker's counters, histograms and gauges in memory-mapped files there, and a scrape,
whichever worker answers it, adds up every worker's files (those of workers that exited
too: counters never go back). Without it (tests, `flask run`), one process's registry.

Three kinds of values:
- counted where they happen (requests, signing, archiving, TSA requests);
- the last readiness checks (`hocba_dependency_up`): set by whichever worker ran them
  (/readyz), the most recent one wins; a scrape never checks anything itself;
- read from the index at scrape time (records, jobs, queue, flags): the same whichever
  worker or instance answers.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, g, request
from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from archive.index.service_state import FLAGS
from signer.errors import HocbaError

# hocba's own metrics only: the default process/platform/GC collectors answer a keyless
# scrape with byte counts and times that look like identifiers and say nothing to users
for _default in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
    with contextlib.suppress(KeyError):  # already removed (module reloaded)
        REGISTRY.unregister(_default)

if TYPE_CHECKING:
    from asn1crypto import tsp

    from signer.service import Hocba
    from signer.service.archiving import Archiving
    from signer.service.signing import SigningStep
    from signer.service.verification import CheckResult

# Seconds: from a health check (ms) to a large upload signed as B-LTA (a minute).
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
SIGNING_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
TSA_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20)
# the text format every Prometheus version reads (generate_latest's, for these names)
TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"
UNMATCHED = "(unmatched)"  # the route label of a request no URL rule matched (404, 405)

HTTP_REQUESTS = Counter(
    "hocba_http_requests_total",
    "HTTP requests answered, by method, route (the URL rule, not the path) and status.",
    ["method", "route", "status"])
HTTP_SECONDS = Histogram(
    "hocba_http_request_duration_seconds",
    "Time to answer an HTTP request (until the body starts), by method, route and status.",
    ["method", "route", "status"], buckets=HTTP_BUCKETS)
SIGNING_SECONDS = Histogram(
    "hocba_signing_step_seconds",
    "One call of the signing step (one record, or a CSC batch's records together), "
    "archiving included when it signed the last role, by producer.",
    ["producer"], buckets=SIGNING_BUCKETS)
SIGNING_OUTCOMES = Counter(
    "hocba_signing_outcomes_total",
    "Records through the signing step, by producer and outcome (ok or the problem code).",
    ["producer", "outcome"])
ARCHIVING_SECONDS = Histogram(
    "hocba_archiving_seconds",
    "Finishing a record: revocation data, document timestamp, locked final, by outcome.",
    ["outcome"], buckets=SIGNING_BUCKETS)
TSA_SECONDS = Histogram(
    "hocba_tsa_request_seconds",
    "Requests to the TSA for signatures, document timestamps and evidence records, by "
    "outcome (ok: an answer came back; error: none did).",
    ["outcome"], buckets=TSA_BUCKETS)
DEPENDENCY_UP = Gauge(
    "hocba_dependency_up",
    "1 when the dependency passed its most recent readiness check (/readyz, any worker).",
    ["dependency"], multiprocess_mode="mostrecent")
CHECK_SECONDS = Gauge(
    "hocba_readiness_check_seconds",
    "How long the most recent readiness check of the dependency took.",
    ["dependency"], multiprocess_mode="mostrecent")
CHECKED_AT = Gauge(
    "hocba_readiness_checked_timestamp_seconds",
    "When the dependency was last checked (Unix time).",
    ["dependency"], multiprocess_mode="mostrecent")


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


# -- requests ---------------------------------------------------------------------------


def install(app: Flask) -> None:
    """Count every request of `app` and time its service's signing step, archiving and
    TSA requests; readiness checks report here. Installing twice counts once."""
    app.before_request(_start)
    app.after_request(_observe)
    svc: Hocba = app.extensions["hocba"]
    svc.health.on_check = observe_check
    _time_tsa(svc.services.timestamper)
    _time_signing(svc.step)
    _time_archiving(svc.archiving)


def _start() -> None:
    g.metrics_t0 = time.perf_counter()


def _observe(resp: Response) -> Response:
    t0 = g.pop("metrics_t0", None)
    if t0 is not None:  # a request that began before this app's hooks (none) is not timed
        observe_request(request.method, route_of(request.url_rule),
                        resp.status_code, time.perf_counter() - t0)
    return resp


def route_of(rule: Any) -> str:
    return str(rule.rule) if rule is not None else UNMATCHED


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    labels = (method, route, str(status))
    HTTP_REQUESTS.labels(*labels).inc()
    HTTP_SECONDS.labels(*labels).observe(seconds)


# -- the service's steps ------------------------------------------------------------------


def observe_check(name: str, result: CheckResult) -> None:
    """A readiness check ran (signer.service.verification.Health.on_check)."""
    DEPENDENCY_UP.labels(name).set(1 if result.status == "ok" else 0)
    CHECK_SECONDS.labels(name).set(result.seconds)
    CHECKED_AT.labels(name).set(result.checked_at)


def observe_tsa(seconds: float, ok: bool) -> None:
    TSA_SECONDS.labels("ok" if ok else "error").observe(seconds)


def observe_signing(producer: str, seconds: float, outcomes: Sequence[object]) -> None:
    """One call of the signing step and its outcomes (records or HocbaErrors)."""
    SIGNING_SECONDS.labels(producer).observe(seconds)
    for outcome in outcomes:
        code = outcome.code if isinstance(outcome, HocbaError) else "ok"
        SIGNING_OUTCOMES.labels(producer, code).inc()


def observe_archiving(seconds: float, error: BaseException | None) -> None:
    code = "ok" if error is None else getattr(error, "code", None) or type(error).__name__
    ARCHIVING_SECONDS.labels(str(code)).observe(seconds)


def producer_name(producer: object) -> str:
    """A bounded label: the key backend's class (Pkcs11Key, CscKey, LocalKey), or the
    producer's own (SignatureValues: two-step, client-held keys)."""
    return type(getattr(producer, "key", producer)).__name__


def _instrumented(fn: Any) -> bool:
    return bool(getattr(fn, "hocba_metrics", False))


def _time_tsa(timestamper: Any) -> None:
    """Every request of the signing services' TSA client (all timestamps go through it:
    signer.pades reads `services.timestamper` at each use)."""
    original = timestamper.async_request_tsa_response
    if _instrumented(original):
        return

    @functools.wraps(original)
    async def timed(req: tsp.TimeStampReq) -> tsp.TimeStampResp:
        start, ok = time.perf_counter(), False
        try:
            resp = await original(req)
            ok = True
            return resp
        finally:
            observe_tsa(time.perf_counter() - start, ok)

    timed.hocba_metrics = True  # type: ignore[attr-defined]
    timestamper.async_request_tsa_response = timed


def _time_signing(step: SigningStep) -> None:
    """The one signing step every path ends in (signer/service/signing.py)."""
    original = step.sign
    if _instrumented(original):
        return

    @functools.wraps(original)
    def timed(actor: Any, targets: Any, producer: Any) -> Any:
        start = time.perf_counter()
        # looked up at each call: a class-level patch (tests' spies) still applies
        outcomes = type(step).sign(step, actor, targets, producer)
        observe_signing(producer_name(producer), time.perf_counter() - start, outcomes)
        return outcomes

    timed.hocba_metrics = True  # type: ignore[attr-defined]
    step.sign = timed  # type: ignore[method-assign]


def _time_archiving(archiving: Archiving) -> None:
    original = archiving.finish
    if _instrumented(original):
        return
    calls = threading.local()  # finish() calls itself once to open the revision

    @functools.wraps(original)
    def timed(*args: Any, **kwargs: Any) -> Any:
        depth = getattr(calls, "depth", 0)
        calls.depth = depth + 1
        start, error = time.perf_counter(), None
        try:
            return type(archiving).finish(archiving, *args, **kwargs)
        except BaseException as e:
            error = e
            raise
        finally:
            calls.depth = depth
            if depth == 0:
                observe_archiving(time.perf_counter() - start, error)

    timed.hocba_metrics = True  # type: ignore[attr-defined]
    archiving.finish = timed  # type: ignore[method-assign]


# -- the /metrics body --------------------------------------------------------------------


class IndexCollector(Collector):
    """What the index says at scrape time: the same whichever worker answers."""

    def __init__(self, svc: Hocba, now: Callable[[], float] = time.time) -> None:
        self.svc = svc
        self.now = now

    def collect(self) -> Iterator[Metric]:
        svc = self.svc
        totals = svc.health.totals()
        yield _gauge("hocba_records", "Records in the index by status.", "status",
                     totals["records"])
        yield _gauge("hocba_jobs", "Jobs (batches, audits) by status.", "status",
                     totals["jobs"])
        yield GaugeMetricFamily("hocba_audit_rows", "Rows in the hash-chained audit log.",
                                value=totals["audit"]["rows"])
        queue = svc.index.job_queue()
        yield GaugeMetricFamily(
            "hocba_job_queue_depth", "Jobs waiting for a worker: queued, or running with "
            "a lease that ran out (their worker died).", value=queue.waiting)
        age = (0.0 if queue.oldest_created_at is None
               else max(0.0, self.now() - queue.oldest_created_at.timestamp()))
        yield GaugeMetricFamily(
            "hocba_job_queue_oldest_age_seconds",
            "Age of the oldest job waiting for a worker (0: none waits).", value=age)
        raised = {f.name for f in svc.health.flags()}
        yield _gauge("hocba_service_flag", "1 while the service-wide flag is raised (an "
                     "operator clears it: DELETE /v1/admin/flags/{name}).", "flag",
                     {name: int(name in raised) for name in FLAGS})
        yield _gauge(
            "hocba_records_renewal", "Archived records by renewal state: due (newest "
            "document timestamp valid for less than the margin), overdue (no longer "
            "valid), unknown (archived before the date was recorded).", "state",
            svc.renewals.counts())
        yield _gauge(
            "hocba_evidence", "Archived objects by evidence record (RFC 4998) state: "
            "missing (no evidence yet), ok, due (newest archive timestamp valid for less "
            "than the margin), overdue (no longer valid).", "state", svc.evidence.counts())


def _gauge(name: str, doc: str, label: str, values: dict[str, int]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([str(key)], value)
    return family


def render(svc: Hocba) -> Response:
    """The /metrics body: every worker's counted values (or this process's), then the
    index's; nothing is checked or probed."""
    if multiprocess_dir():
        counted = CollectorRegistry()
        multiprocess.MultiProcessCollector(counted)
    else:
        counted = REGISTRY
    from_index = CollectorRegistry(auto_describe=False)
    from_index.register(IndexCollector(svc))
    body = generate_latest(counted) + generate_latest(from_index)
    return Response(body, content_type=TEXT_FORMAT)
