"""A real S3 server for the tests: OpenStack Swift with its s3api middleware (Debian's packages,
installed by ``scripts/setup --test``), started on 127.0.0.1 in a temporary folder and stopped
afterwards. Nothing here installs anything; if Swift cannot be started the S3 tests fail.

One account/container/object server each, a one-device ring, memcached, a tempauth user
``test:tester`` / ``testing`` (the S3 access key and secret). The proxy runs with ``-v`` so its
access log (proxy-logging) goes to a file the tests read to count what iiifsrv asked for.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.ports import free_port as _free_port

ACCESS_KEY = "test:tester"
SECRET_KEY = "testing"
REGION = "us-east-1"
BUCKET = "images"

BINARIES = (
    "swift-ring-builder",
    "swift-proxy-server",
    "swift-account-server",
    "swift-container-server",
    "swift-object-server",
    "memcached",
)


# SIGKILL when the test process dies, so nothing is left running: util-linux's setpriv sets
# PR_SET_PDEATHSIG and execs the server. (A preexec_fn did it in the forked child before, where
# Python code may deadlock on a lock another thread held at fork time: CI hung there once.)
_DIE_WITH_PARENT = ["setpriv", "--pdeathsig", "KILL", "--"]


_SERVER_CONF = """[DEFAULT]
devices = {root}/node
mount_check = false
disable_fallocate = true
bind_ip = 127.0.0.1
bind_port = {port}
workers = 1
user = root
swift_dir = {root}/etc
recon_cache_path = {root}/cache
log_level = WARNING

[pipeline:main]
pipeline = {kind}-server

[app:{kind}-server]
use = egg:swift#{kind}

[{kind}-replicator]

[{kind}-updater]

[{kind}-auditor]
"""

_PROXY_FILTERS = (
    "catch_errors",
    "gatekeeper",
    "healthcheck",
    "proxy-logging",
    "listing_formats",
    "copy",
    "slo",
    "dlo",
)

_PROXY_CONF = """[DEFAULT]
bind_ip = 127.0.0.1
bind_port = {port}
workers = 1
user = root
swift_dir = {root}/etc
log_level = INFO

[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats s3api \
tempauth copy slo dlo proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true

[filter:s3api]
use = egg:swift#s3api
location = {region}

[filter:tempauth]
use = egg:swift#tempauth
user_test_tester = {secret} .admin

[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:{memcached}
{filters}
"""

# proxy-logging's access line: client ip, remote addr, date, method, path, protocol, status,
# referer, user agent, auth token, bytes received, bytes sent, ...
_ACCESS = re.compile(
    r"proxy-server: (?P<client>\S+) \S+ \S+ (?P<method>[A-Z]+) (?P<path>\S+) HTTP/\S+ "
    r"(?P<status>\d{3}) \S+ \S+ \S+ \S+ (?P<sent>\S+)"
)


@dataclass(frozen=True)
class Access:
    method: str
    path: str
    status: int
    sent: int


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


@dataclass
class Swift:
    """A running Swift AIO: its S3 endpoint, and how to stop, restart and read its proxy log."""

    root: Path
    port: int
    memcached_port: int
    backend_ports: dict[str, int] = field(default_factory=dict)  # account, container, object
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def proxy_log(self) -> Path:
        return self.root / "log" / "proxy.log"

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = open(self.root / "log" / f"{name}.log", "ab")  # noqa: SIM115 (owned by the child)
        self.procs[name] = subprocess.Popen(
            [*_DIE_WITH_PARENT, *argv],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},  # the access log line by line
            start_new_session=True,  # its own process group: the server and its workers
        )
        log.close()

    def start(self) -> None:
        etc = self.root / "etc"
        if "memcached" not in self.procs:
            self._spawn(
                "memcached",
                ["memcached", "-l", "127.0.0.1", "-p", str(self.memcached_port), "-U", "0"]
                + ["-u", "root", "-m", "64"],
            )
        for kind in ("account", "container", "object"):
            if kind not in self.procs:
                self._spawn(kind, [f"swift-{kind}-server", str(etc / f"{kind}-server.conf"), "-v"])
        self.start_proxy()

    def start_proxy(self) -> None:
        self._spawn("proxy", ["swift-proxy-server", str(self.root / "etc/proxy-server.conf"), "-v"])
        self.wait_ready()

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    tail = (self.root / "log" / f"{name}.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"swift {name} exited ({proc.returncode}):\n{tail}")
            # The proxy's healthcheck does not ask the servers behind it: a PUT sent before the
            # object server listens is refused, and the proxy then error-limits that server for
            # a minute (CI saw every upload of the session fixture answered 503 that way).
            waiting = [n for n, port in self.backend_ports.items() if not _listening(port)]
            if waiting:
                last = f"not listening yet: {', '.join(waiting)}"
                time.sleep(0.2)
                continue
            try:
                with urllib.request.urlopen(f"{self.endpoint}/healthcheck", timeout=2) as r:
                    if r.read() == b"OK":
                        return
            except OSError as exc:
                last = str(exc)
            time.sleep(0.2)
        raise RuntimeError(f"swift proxy not ready after {timeout:.0f} s: {last}")

    def stop_proxy(self) -> None:
        proc = self.procs.pop("proxy", None)
        if proc is not None:  # the parent and the worker it forked (which holds the socket)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)

    def stop(self) -> None:
        for name in ("proxy", "object", "container", "account", "memcached"):
            proc = self.procs.pop(name, None)
            if proc is None:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)

    def accesses(self) -> list[Access]:
        """The client requests the proxy logged so far (S3 requests as sent, and their status)."""
        out = []
        text = self.proxy_log.read_text(errors="replace") if self.proxy_log.exists() else ""
        for line in text.splitlines():
            m = _ACCESS.search(line)
            if m and m.group("client") != "-":  # "-" = Swift's own sub-requests
                sent = m.group("sent")
                out.append(
                    Access(
                        m.group("method"),
                        # without the query (a presigned URL's signature)
                        re.split(r"\?|%3F", m.group("path"), maxsplit=1)[0],
                        int(m.group("status")),
                        int(sent) if sent.isdigit() else 0,
                    )
                )
        return out

    def mark(self) -> int:
        """Send a marker request and wait until the proxy logged it: the number of logged
        requests up to and including it (everything before it is in the log)."""
        self._marks = getattr(self, "_marks", 0) + 1
        path = f"/{BUCKET}/--mark-{self._marks}--"
        with contextlib.suppress(Exception):
            self.client().head_object(Bucket=BUCKET, Key=path.split("/", 2)[2])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            seen = self.accesses()
            for i, access in enumerate(seen):
                if access.path == path:
                    return i + 1
            time.sleep(0.05)
        raise RuntimeError("the proxy did not log the marker request")

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            config=Config(
                s3={"addressing_style": "path"},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )


def start_swift(root: Path) -> Swift:
    """Configure and start Swift AIO under ``root``; raises RuntimeError if it cannot."""
    missing = [b for b in BINARIES if shutil.which(b) is None]
    if missing:
        raise RuntimeError(
            f"Swift is not installed ({', '.join(missing)} missing): run scripts/setup --test"
        )
    for sub in ("etc", "node/d1", "run", "cache", "log"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    swift = Swift(root, _free_port(), _free_port())
    etc = root / "etc"
    ports = {"account": _free_port(), "container": _free_port(), "object": _free_port()}
    swift.backend_ports = ports
    for kind, port in ports.items():
        (etc / f"{kind}-server.conf").write_text(
            _SERVER_CONF.format(root=root, port=port, kind=kind)
        )
        builder = str(etc / f"{kind}.builder")
        for args in (
            ["create", "8", "1", "1"],
            ["add", f"r1z1-127.0.0.1:{port}/d1", "100"],
            ["rebalance"],
        ):
            done = subprocess.run(
                ["swift-ring-builder", builder, *args], capture_output=True, cwd=etc
            )
            if done.returncode not in (0, 1):  # 1 = warnings (e.g. a one-replica ring)
                raise RuntimeError(f"swift-ring-builder {args[0]}: {done.stdout!r}{done.stderr!r}")
    filters = "".join(
        f"\n[filter:{f}]\nuse = egg:swift#{f.replace('-', '_')}\n" for f in _PROXY_FILTERS
    )
    (etc / "proxy-server.conf").write_text(
        _PROXY_CONF.format(
            root=root,
            port=swift.port,
            region=REGION,
            secret=SECRET_KEY,
            memcached=swift.memcached_port,
            filters=filters,
        )
    )
    env_note = os.environ.get("IIIFSRV_TEST_SWIFT_KEEP")  # debugging aid only
    try:
        swift.start()
        client = swift.client()
        client.create_bucket(Bucket=BUCKET)
    except BaseException:
        if not env_note:
            swift.stop()
        raise
    return swift
