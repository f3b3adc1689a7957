"""Time travel: archived B-LTA records checked at validation dates 2026 -> 2076 under
libfaketime, by `hocba verify` and by pyHanko's `adesverify` (the outside reference);
they must agree at every date, online (the dev responder runs at that date) and offline
(nothing answers). Then the renewal story: `hocba archive renew` at 2033, 2043, 2053 and
2063 keeps the records verifiable in 2076. Nothing is mocked."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RESPONDER_PORT
from tests.integration.helpers import auth, create_archived, make_app, metadata
from tests.integration.timetravel import (
    HOCBA,
    HocbaVerdict,
    Run,
    both,
    hocba_at,
    hocba_verify_at,
    pyhanko_at,
    pyhanko_verdict,
    responder_at,
    run_at,
)

pytestmark = pytest.mark.integration

SMALLEST = "hoc-ba-tieu-hoc-fpdf2.pdf"


@dataclass
class Archive:
    """The module's store and index (under `base`), its records and their first versions."""

    base: Path
    env: dict[str, str]  # the service's settings over this store and index
    service_env: dict[str, str]
    key: str
    records: dict[str, str] = field(default_factory=dict)  # sample -> record id
    first: dict[str, Path] = field(default_factory=dict)  # sample -> v1 PDF


@pytest.fixture(scope="module")
def archive(service_env: dict[str, str], api_keys: dict[str, str],
            samples: dict[str, bytes], responder: Any, csc_server: Any,
            tmp_path_factory: pytest.TempPathFactory) -> Archive:
    """One archived record per sample producer, signed at real time (2026), each first
    version downloaded into a file."""
    responder.start()
    base = tmp_path_factory.mktemp("time-travel")
    env = {**service_env, "HOCBA_STORE": str(base / "store"),
           "HOCBA_INDEX_URL": f"sqlite:///{base / 'index.sqlite3'}"}
    found = Archive(base, env, service_env, api_keys["school-1"])
    app = make_app(service_env, base)
    try:
        http = app.test_client()
        for name, pdf in samples.items():
            record = create_archived(http, found.key, pdf, metadata(name))
            found.records[name] = record["id"]
            resp = http.get(f"/v1/archive/records/{record['id']}/versions/1/document",
                            headers=auth(found.key))
            assert resp.status_code == 200, resp.get_data(as_text=True)
            path = base / f"{Path(name).stem}-v1.pdf"
            path.write_bytes(resp.get_data())
            found.first[name] = path
    finally:
        app.extensions["hocba"].close()
    return found


@pytest.fixture
def own_port(responder: Any) -> Iterator[int]:
    """The responder port the records' URLs name, free for a faked-date responder; the
    session responder is back afterwards."""
    responder.stop()
    try:
        yield RESPONDER_PORT
    finally:
        for attempt in range(3):  # a loaded box: its start may outlast conftest's 20 s
            try:
                responder.start()
                break
            except Exception:
                if attempt == 2:
                    raise


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def explain(what: str, hocba: HocbaVerdict, pyhanko: Run) -> str:
    return (f"{what}\n===== hocba\n{hocba.run.text()}\n===== pyhanko\n{pyhanko.text()}")


def hocba_and_pyhanko(when: datetime, pdf: Path, hocba_trust: list[Path],
                      pyhanko_trust: list[Path], online: bool) -> tuple[HocbaVerdict, Run]:
    result: tuple[HocbaVerdict, Run] = both(
        lambda: hocba_verify_at(when, pdf, hocba_trust, online),
        lambda: pyhanko_at(when, pdf, pyhanko_trust, online))
    return result


@pytest.mark.slow
@pytest.mark.tools
def test_verifier_matches_pyhanko_at_every_date(archive: Archive, test_state: Path,
                                                own_port: int) -> None:
    pdf = archive.first[SMALLEST]
    hocba_trust = [test_state / "trust.toml"]
    pyhanko_trust = [test_state / "pki" / "root.pem", test_state / "pki" / "root-g2.pem"]
    now = datetime.now(UTC)
    dates = {
        "now+1min": now + timedelta(minutes=1),
        "+2 days": now + timedelta(days=2),
        "+8 days": now + timedelta(days=8),
        "+1 year": now + timedelta(days=365),
        "2030-12-31": at("2030-12-31T12:00:00"),
        "2031-01-02": at("2031-01-02T12:00:00"),
        "2033-12-31": at("2033-12-31T12:00:00"),
        "2034-01-02": at("2034-01-02T12:00:00"),
        "2034-12-31": at("2034-12-31T12:00:00"),
        "2035-01-02": at("2035-01-02T12:00:00"),
        "2076-06-01": at("2076-06-01T12:00:00"),
    }
    results: dict[tuple[str, str], tuple[HocbaVerdict, Run]] = {}
    for label, when in dates.items():
        started = time.monotonic()
        with responder_at(test_state, own_port, when):
            print(f"{label}: responder up after {time.monotonic() - started:.1f}s")
            results[(label, "online")] = hocba_and_pyhanko(when, pdf, hocba_trust,
                                                           pyhanko_trust, True)
        # nothing listens now: pyHanko's fetches are refused, hocba does not fetch
        print(f"{label}: online done after {time.monotonic() - started:.1f}s")
        results[(label, "offline")] = hocba_and_pyhanko(when, pdf, hocba_trust,
                                                        pyhanko_trust, False)
        print(f"{label}: offline done after {time.monotonic() - started:.1f}s")

    problems: list[str] = []
    rows = [f"{'date':<12} {'mode':<8} {'hocba':<28} pyhanko"]
    for (label, mode), (hocba, pyhanko) in results.items():
        report = hocba.report or {}
        rows.append(f"{label:<12} {mode:<8} "
                    f"{hocba.indication + ' (' + str(report.get('sub_indication')) + ')':<28} "
                    f"{pyhanko_verdict(pyhanko)}")
        if hocba.passed != pyhanko.passed:
            problems.append(explain(f"MISMATCH at {label} {mode}: hocba "
                                    f"{'passes' if hocba.passed else 'refuses'}, pyhanko "
                                    f"{'passes' if pyhanko.passed else 'refuses'}",
                                    hocba, pyhanko))
        if label == "+1 year" and mode == "offline" and (
                not report.get("valid_as_of")
                or "verify online" not in str(report.get("explanation"))):
            problems.append(explain("+1 year offline: expected valid_as_of set and an "
                                    "explanation saying 'verify online'", hocba, pyhanko))
        if label == "2035-01-02" and (
                hocba.passed or report.get("valid_as_of") is not None
                or "renewal" not in str(report.get("explanation"))):
            problems.append(explain(f"2035-01-02 {mode} (TSA expired, never renewed): "
                                    "expected not passed, valid_as_of null, an explanation "
                                    "mentioning 'renewal'", hocba, pyhanko))
    print("\n" + "\n".join(rows))
    assert not problems, "\n\n".join(problems)


# -- the renewal story ------------------------------------------------------------------


def versions_of(archive: Archive) -> dict[str, list[dict[str, Any]]]:
    """Each record's versions, through the HTTP API of an app over the module's store."""
    app = make_app(archive.service_env, archive.base)
    try:
        http = app.test_client()
        out: dict[str, list[dict[str, Any]]] = {}
        for name, rid in archive.records.items():
            resp = http.get(f"/v1/archive/records/{rid}/versions", headers=auth(archive.key))
            assert resp.status_code == 200, resp.get_data(as_text=True)
            out[name] = resp.get_json()
        return out
    finally:
        app.extensions["hocba"].close()


def download(archive: Archive, name: str, version: int) -> Path:
    app = make_app(archive.service_env, archive.base)
    try:
        resp = app.test_client().get(
            f"/v1/archive/records/{archive.records[name]}/versions/{version}/document",
            headers=auth(archive.key))
        assert resp.status_code == 200, resp.get_data(as_text=True)
        path = archive.base / f"{Path(name).stem}-v{version}.pdf"
        path.write_bytes(resp.get_data())
        return path
    finally:
        app.extensions["hocba"].close()


def renew(archive: Archive, when: datetime, *flags: str) -> dict[str, Any]:
    done = hocba_at(when, "archive", "renew", "--json", *flags, env=archive.env)
    assert done.returncode == 0, done.text()
    try:
        summary: dict[str, Any] = json.loads(done.stdout)
    except ValueError:
        pytest.fail(f"renew --json printed no JSON:\n{done.text()}")
    return summary


@dataclass
class Findings:
    mismatches: list[str] = field(default_factory=list)  # hocba and pyhanko disagree
    required: list[str] = field(default_factory=list)  # both agree, not as the story wants
    unmet: list[str] = field(default_factory=list)  # the same, a known limitation


def check(problems: Findings, what: str, hocba: HocbaVerdict, pyhanko: Run,
          hocba_should: bool | None, pyhanko_should: bool | None, *,
          known_limitation: bool = False) -> None:
    """Note it when hocba and pyhanko disagree, or either is not as expected (None: only
    the agreement matters)."""
    unmet = problems.unmet if known_limitation else problems.required
    if hocba.passed != pyhanko.passed:
        problems.mismatches.append(explain(f"MISMATCH {what}", hocba, pyhanko))
    if hocba_should is not None and hocba.passed != hocba_should:
        unmet.append(explain(
            f"{what}: hocba should {'pass' if hocba_should else 'refuse'}", hocba, pyhanko))
    if pyhanko_should is not None and pyhanko.passed != pyhanko_should:
        unmet.append(explain(
            f"{what}: pyhanko should {'pass' if pyhanko_should else 'refuse'}", hocba,
            pyhanko))
    print(f"{what:<48} hocba {hocba.indication:<14} pyhanko {pyhanko_verdict(pyhanko)}")


@pytest.mark.slow
@pytest.mark.tools
def test_story_2026_to_2076(archive: Archive, test_state: Path, own_port: int) -> None:
    help_run = run_at(datetime.now(UTC), [HOCBA, "archive", "renew", "--help"], archive.env)
    if help_run.returncode != 0:
        pytest.skip("hocba archive renew not available")
    root = test_state / "pki" / "root.pem"
    roots = [root, test_state / "pki" / "root-g2.pem"]
    store = test_state / "trust.toml"
    n = len(archive.records)
    problems = Findings()

    # 2033: the 2026 timestamps' TSA certificate expires 2035-01-01, within the margin
    when = at("2033-06-01T00:00:00")
    with responder_at(test_state, own_port, when):
        dry = renew(archive, when, "--dry-run")
        assert (dry["due"], dry["renewed"]) == (n, 0), dry
        summary = renew(archive, when)
        assert summary == {"due": n, "renewed": n, "failed": []}, summary
        again = renew(archive, when)
        assert (again["due"], again["renewed"], again["failed"]) == (0, 0, []), again
    versions = versions_of(archive)
    for name, items in versions.items():
        assert [(v["version"], v["reason"]) for v in items] == [
            (1, "archived"), (2, "renewed")], (name, items)

    when = at("2035-06-01T00:00:00")
    second = {name: download(archive, name, 2) for name in archive.records}
    with responder_at(test_state, own_port, when):
        for name in archive.records:
            hocba, pyhanko = hocba_and_pyhanko(when, second[name], [root], [root], True)
            check(problems, f"2035-06-01 online v2 {name}", hocba, pyhanko, True, True)
            hocba, pyhanko = hocba_and_pyhanko(when, archive.first[name], [root], [root],
                                               True)
            check(problems, f"2035-06-01 online v1 {name}", hocba, pyhanko, False, False)

    # each decade: the newest timestamp's TSA certificate expires within two years
    for step, date in enumerate(("2043-06-01", "2053-06-01", "2063-06-01"), start=3):
        when = at(f"{date}T00:00:00")
        with responder_at(test_state, own_port, when):
            summary = renew(archive, when)
            assert summary == {"due": n, "renewed": n, "failed": []}, (date, summary)
        for name, items in versions_of(archive).items():
            assert [v["version"] for v in items] == list(range(1, step + 1)), (
                date, name, items)
            assert items[-1]["reason"] == "renewed", (date, name, items)

    when = at("2076-06-01T00:00:00")
    newest = {name: download(archive, name, 5) for name in archive.records}
    with responder_at(test_state, own_port, when):
        for name in archive.records:
            hocba, pyhanko = hocba_and_pyhanko(when, newest[name], [store], roots, True)
            check(problems, f"2076-06-01 online v5 {name}", hocba, pyhanko, True, True,
                  known_limitation=True)
            hocba, pyhanko = hocba_and_pyhanko(when, archive.first[name], [store], roots,
                                               True)
            check(problems, f"2076-06-01 online v1 {name}", hocba, pyhanko, False, False)
    for name in archive.records:
        hocba, pyhanko = hocba_and_pyhanko(when, newest[name], [store], roots, False)
        check(problems, f"2076-06-01 offline v5 {name}", hocba, pyhanko, None, None)
    # hocba never disagrees with the outside reference, at any date
    assert not problems.mismatches, "\n\n".join(problems.mismatches)
    assert not problems.required, "\n\n".join(problems.required)
    if problems.unmet:
        # Known, open (issue 11): in 2076 the issuing CAs of the older timestamps and of
        # the signers have expired (2060, 2070). pyHanko 0.38 reports an expired
        # intermediate at the current time as CERTIFICATE_CHAIN_GENERAL_FAILURE, which its
        # past validation does not try to improve (only OUT_OF_BOUNDS_*, TRY_LATER,
        # REVOKED_*_NO_POE, CRYPTO_CONSTRAINTS_FAILURE_NO_POE), so the older timestamps
        # and the signatures get no proof of existence. Both tools refuse alike.
        pytest.xfail("2076: the newest version is not provable once the original "
                     "issuing CAs have expired:\n" + "\n\n".join(problems.unmet))


@pytest.mark.slow
@pytest.mark.tools
def test_evidence_story_2026_to_2076(service_env: dict[str, str], api_keys: dict[str, str],
                                     samples: dict[str, bytes], test_state: Path,
                                     own_port: int,
                                     tmp_path_factory: pytest.TempPathFactory) -> None:
    """A record whose PDF is never renewed, but whose evidence record (RFC 4998) is
    renewed in 2033, 2043, 2053 and 2063, is proven in 2076 through its evidence."""
    from tests.integration.bcers import bc_check

    base = tmp_path_factory.mktemp("evidence-story")
    env = {**service_env, "HOCBA_STORE": str(base / "store"),
           "HOCBA_INDEX_URL": f"sqlite:///{base / 'index.sqlite3'}"}
    now = datetime.now(UTC)
    with responder_at(test_state, own_port, now):
        app = make_app(service_env, base)
        try:
            http = app.test_client()
            key = api_keys["school-1"]
            record = create_archived(http, key, samples[SMALLEST], metadata(SMALLEST))
            pdf = base / "v1.pdf"
            pdf.write_bytes(http.get(f"/v1/archive/records/{record['id']}/versions/1/"
                                     "document", headers=auth(key)).get_data())
        finally:
            app.extensions["hocba"].close()
        built = hocba_at(now, "archive", "evidence", "--all", "--json", env=env)
        assert built.returncode == 0, built.text()
        assert json.loads(built.stdout)["built"] == 1

    for date in ("2033-06-01", "2043-06-01", "2053-06-01", "2063-06-01"):
        when = at(f"{date}T00:00:00")
        with responder_at(test_state, own_port, when):
            done = hocba_at(when, "archive", "evidence", "--renew", "--json", env=env)
            assert done.returncode == 0, done.text()
            summary = json.loads(done.stdout)
            assert (summary["renewed"], summary["timestamp_requests"],
                    summary["failed"]) == (1, 1, []), (date, summary)

    app = make_app(service_env, base)
    try:
        http = app.test_client()
        got = http.get(f"/v1/archive/records/{record['id']}/evidence",
                       headers=auth(api_keys["school-1"]))
        assert got.status_code == 200, got.get_data(as_text=True)
    finally:
        app.extensions["hocba"].close()
    ers = base / "v1.ers"
    ers.write_bytes(got.get_data())
    bc = bc_check(ers, pdf)
    assert bc["valid"] and len(bc["timestamps"]) == 5, bc

    when = at("2076-06-01T00:00:00")
    store = test_state / "trust.toml"
    roots = [test_state / "pki" / "root.pem", test_state / "pki" / "root-g2.pem"]
    with responder_at(test_state, own_port, when):
        proof = hocba_at(when, "evidence", "verify", "--json", "--trust", str(store),
                         str(pdf), str(ers))
        assert proof.returncode == 0, proof.text()
        assert json.loads(proof.stdout)["existed_at"].startswith(f"{now:%Y-%m-%d}")
        alone, pyhanko = hocba_and_pyhanko(when, pdf, [store], roots, True)
        assert not alone.passed and not pyhanko.passed, explain("2076 v1 alone", alone,
                                                                 pyhanko)
        through = hocba_verify_at(when, pdf, [store], True, evidence=ers)
        assert through.passed, through.run.text()
        assert through.report is not None
        assert through.report["proven_by"] == "evidence_record", through.run.text()
        assert "evidence record" in str(through.report["explanation"])
    # offline in 2076: the newest archive timestamp's revocation data is from 2063
    offline = hocba_verify_at(when, pdf, [store], False, evidence=ers)
    assert not offline.passed, offline.run.text()  # as for a PDF: stale data, not a pass
    print("2076 offline through evidence:", offline.indication,
          (offline.report or {}).get("evidence"))
