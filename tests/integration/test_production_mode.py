"""HOCBA_ENV=production refuses dev parts: the dev clients file, the dev TSA, software keys,
plain API keys."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from signer.errors import ConfigError
from signer.service import Hocba
from signer.settings import load_settings

pytestmark = pytest.mark.integration


def test_production_refuses_the_dev_clients_file(service_env: dict[str, str],
                                                 tmp_path: Path) -> None:
    settings = load_settings({**service_env, "HOCBA_ENV": "production",
                              "HOCBA_STORE": str(tmp_path / "s"),
                              "HOCBA_INDEX_URL": f"sqlite:///{tmp_path / 'i.sqlite3'}"})
    with pytest.raises(ConfigError, match="production refuses dev parts"):
        Hocba(settings)


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d, r"software \(local\) signer keys"),
    (lambda d: {**d, "signers": [s for s in d["signers"] if s["backend"] != "local"]},
     "api_key_sha256 only"),
])
def test_production_refuses_dev_keys(clients_doc: dict[str, Any], tmp_path: Path,
                                     change: Any, message: str) -> None:
    prod = tmp_path / "prod-clients.json"
    prod.write_text(json.dumps(change(clients_doc)), encoding="utf-8")
    settings = load_settings({"HOCBA_ENV": "production", "HOCBA_CLIENTS_FILE": str(prod),
                              "HOCBA_TSA_URL": "https://tsa.example.vn/tsa",
                              "HOCBA_STORE": str(tmp_path / "s"),
                              "HOCBA_INDEX_URL": f"sqlite:///{tmp_path / 'i.sqlite3'}"})
    with pytest.raises(ConfigError, match=message):
        Hocba(settings)
