"""Two records whose uploads are byte-identical share one content-addressed working
object: archiving one must not release what the other still needs."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.helpers import auth, metadata, sign, upload

pytestmark = pytest.mark.integration
SAMPLE = "hoc-ba-tieu-hoc-fpdf2.pdf"


def test_archiving_one_keeps_the_other_signable(http: Any, api_keys: dict[str, str],
                                               samples: dict[str, bytes]) -> None:
    key = api_keys["school-1"]
    first = upload(http, key, samples[SAMPLE], metadata(SAMPLE)).get_json()["id"]
    other = metadata(SAMPLE, student={"id_number": "001217000888", "full_name": "Học Sinh B",
                                      "date_of_birth": "2017-11-20"})
    second = upload(http, key, samples[SAMPLE], other).get_json()["id"]
    for role in ("teacher", "principal", "seal"):
        assert sign(http, key, first, role, f"school-1-{role}").status_code == 200
    assert http.get(f"/v1/records/{second}/document", headers=auth(key)).status_code == 200
    for role in ("teacher", "principal", "seal"):
        r = sign(http, key, second, role, f"school-1-{role}")
        assert r.status_code == 200, r.get_json()
    assert r.get_json()["status"] == "archived"
