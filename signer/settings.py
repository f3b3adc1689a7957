"""One frozen, typed settings object; the only reader of os.environ.

Sources, later wins: defaults, a TOML file named by HOCBA_CONFIG, HOCBA_* variables.
Secrets are never values here: settings name the variable that holds a PIN.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from signer.errors import ConfigError

DEFAULT_FONT = "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf"
REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    env: str = "dev"
    clients_file: Path = Path("var/dev/clients.json")
    store: str = "var/store"
    s3_endpoint_url: str = ""
    index_url: str = "sqlite:///var/index.sqlite3"
    tsa_url: str = "http://127.0.0.1:9780/dev/tsa/tsa"
    pkcs11_module: str = ""
    pkcs11_token_label: str = "hocba-dev"  # noqa: S105 - a label, not a secret
    pkcs11_pin_env: str = "HOCBA_HSM_PIN"
    policy_dir: Path = REPO_ROOT / "policies"
    stamp_font: Path = Path(DEFAULT_FONT)
    max_pdf_bytes: int = 50 * 1024 * 1024
    max_pdf_pages: int = 2000  # a record has 2-30 (signer.inputs.pdfscan.DEFAULT_MAX_PAGES)
    max_pdf_objects: int = 500_000  # cross-reference entries
    max_pdf_tree_depth: int = 32  # page tree levels
    max_pdf_nesting: int = 64  # arrays and dictionaries nested in one object
    revocation_cache_seconds: int = 600
    network_timeout_seconds: int = 20
    public_base_url: str = "http://127.0.0.1:8080"
    session_ttl_seconds: int = 900
    job_lease_seconds: int = 60
    finish_grace_seconds: float = 30.0  # all signed, not archived: the service finishes it
    evidence_policy: str = ""  # a TOML like policies/crypto/evidence.toml ("": that one)

    @property
    def production(self) -> bool:
        return self.env == "production"

    def pkcs11_pin(self) -> str | None:
        return os.environ.get(self.pkcs11_pin_env) or None


_ENV_NAMES = {
    "env": "HOCBA_ENV",
    "clients_file": "HOCBA_CLIENTS_FILE",
    "store": "HOCBA_STORE",
    "s3_endpoint_url": "HOCBA_S3_ENDPOINT_URL",
    "index_url": "HOCBA_INDEX_URL",
    "tsa_url": "HOCBA_TSA_URL",
    "pkcs11_module": "HOCBA_PKCS11_MODULE",
    "pkcs11_token_label": "HOCBA_PKCS11_TOKEN_LABEL",
    "pkcs11_pin_env": "HOCBA_PKCS11_PIN_ENV",
    "policy_dir": "HOCBA_POLICY_DIR",
    "stamp_font": "HOCBA_STAMP_FONT",
    "max_pdf_bytes": "HOCBA_MAX_PDF_BYTES",
    "max_pdf_pages": "HOCBA_MAX_PDF_PAGES",
    "max_pdf_objects": "HOCBA_MAX_PDF_OBJECTS",
    "max_pdf_tree_depth": "HOCBA_MAX_PDF_TREE_DEPTH",
    "max_pdf_nesting": "HOCBA_MAX_PDF_NESTING",
    "revocation_cache_seconds": "HOCBA_REVOCATION_CACHE_SECONDS",
    "network_timeout_seconds": "HOCBA_NETWORK_TIMEOUT_SECONDS",
    "public_base_url": "HOCBA_PUBLIC_BASE_URL",
    "session_ttl_seconds": "HOCBA_SESSION_TTL_SECONDS",
    "job_lease_seconds": "HOCBA_JOB_LEASE_SECONDS",
    "finish_grace_seconds": "HOCBA_FINISH_GRACE_SECONDS",
    "evidence_policy": "HOCBA_EVIDENCE_POLICY",
}


def _coerce(name: str, kind: Any, value: Any) -> Any:
    try:
        if kind in (Path, "Path"):
            return Path(value)
        if kind in (int, "int"):
            if isinstance(value, bool):
                raise ValueError
            return int(value)
        if kind in (float, "float"):
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        return str(value)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"setting {name}: {value!r} is not a valid {kind}") from e


def load_settings(environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
    env = dict(os.environ if environ is None else environ)
    kinds = {f.name: f.type for f in fields(Settings)}
    values: dict[str, Any] = {}
    config_file = env.get("HOCBA_CONFIG")
    if config_file:
        try:
            raw = tomllib.loads(Path(config_file).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise ConfigError(f"HOCBA_CONFIG {config_file}: {e}") from e
        unknown = set(raw) - set(kinds)
        if unknown:
            raise ConfigError(f"HOCBA_CONFIG {config_file}: unknown key(s) {sorted(unknown)}")
        values.update(raw)
    for name, var in _ENV_NAMES.items():
        if var in env:
            values[name] = env[var]
    values.update(overrides)
    settings = Settings(**{k: _coerce(k, kinds[k], v) for k, v in values.items()})
    if settings.env not in ("dev", "test", "production"):
        raise ConfigError(f"HOCBA_ENV must be dev, test or production, not {settings.env!r}")
    return settings


def with_overrides(settings: Settings, **changes: Any) -> Settings:
    return replace(settings, **changes)
