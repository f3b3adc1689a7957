"""SIGKILL the real gunicorn service between (and during) signatures; after a restart the
record is exactly where it was and signing continues to an archived, valid record."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.integration.gunicorn_service import Service, free_port
from tests.integration.helpers import metadata

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def service(service_env: dict[str, str], live_responder: Any,
            tmp_path: Path) -> Iterator[Service]:
    env = {**service_env, "HOCBA_STORE": str(tmp_path / "store"),
           "HOCBA_INDEX_URL": f"sqlite:///{tmp_path / 'index.sqlite3'}"}
    svc = Service(env, free_port())
    svc.start()
    yield svc
    svc.stop()


def create(svc: Service, key: str, pdf: bytes) -> dict[str, Any]:
    name = "hoc-ba-tieu-hoc-fpdf2.pdf"
    r = requests.post(f"{svc.base}/v1/records", headers={"Authorization": f"Bearer {key}"},
                      files={"document": ("r.pdf", pdf, "application/pdf"),
                             "metadata": (None, json.dumps(metadata(name)))}, timeout=60)
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def sign(svc: Service, key: str, record_id: str, role: str, signer: str) -> requests.Response:
    return requests.post(f"{svc.base}/v1/records/{record_id}/signatures",
                         headers={"Authorization": f"Bearer {key}"},
                         json={"role": role, "key": signer}, timeout=120)


def get(svc: Service, key: str, record_id: str) -> dict[str, Any]:
    r = requests.get(f"{svc.base}/v1/records/{record_id}",
                     headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def finish_and_verify(svc: Service, key: str, record_id: str) -> None:
    rec = get(svc, key, record_id)
    for role in ("teacher", "principal", "seal"):
        if next(s for s in rec["signatures"] if s["role"] == role)["status"] == "signed":
            continue
        r = sign(svc, key, record_id, role, f"school-1-{role}")
        assert r.status_code == 200, r.text
        rec = r.json()
    assert rec["status"] == "archived"
    pdf = requests.get(f"{svc.base}/v1/records/{record_id}/document",
                       headers={"Authorization": f"Bearer {key}"}, timeout=30).content
    report = requests.post(f"{svc.base}/v1/verify", files={"document": ("x.pdf", pdf)},
                           timeout=120).json()
    assert report["indication"] == "TOTAL_PASSED", report
    assert report["level"] == "PAdES-B-LTA"


def test_sigkill_between_signatures(service: Service, api_keys: dict[str, str],
                                    samples: dict[str, bytes]) -> None:
    key = api_keys["school-1"]
    rec = create(service, key, samples["hoc-ba-tieu-hoc-fpdf2.pdf"])
    r = sign(service, key, rec["id"], "teacher", "school-1-teacher")
    assert r.status_code == 200, r.text
    before = r.json()

    service.kill9()
    service.start()

    after = get(service, key, rec["id"])
    assert after["document"] == before["document"]
    assert after["signatures"] == before["signatures"]
    assert after["next_role"] == "principal"
    finish_and_verify(service, key, rec["id"])


def test_sigkill_during_a_signature(service: Service, api_keys: dict[str, str],
                                    samples: dict[str, bytes]) -> None:
    """Killed mid-request: the record is at the old or the new revision, never between."""
    key = api_keys["school-1"]
    rec = create(service, key, samples["hoc-ba-tieu-hoc-fpdf2.pdf"])
    assert sign(service, key, rec["id"], "teacher", "school-1-teacher").status_code == 200
    old = get(service, key, rec["id"])

    t = threading.Thread(target=lambda: _swallow(sign, service, key, rec["id"], "principal",
                                                 "school-1-principal"))
    t.start()
    time.sleep(0.25)
    service.kill9()
    t.join(timeout=30)
    service.start()

    now = get(service, key, rec["id"])
    signed = [s["role"] for s in now["signatures"] if s["status"] == "signed"]
    assert signed in (["teacher"], ["teacher", "principal"])
    if signed == ["teacher"]:
        assert now["document"] == old["document"]
    finish_and_verify(service, key, rec["id"])


def _swallow(fn: Any, *args: Any) -> None:
    with contextlib.suppress(requests.RequestException):
        fn(*args)
