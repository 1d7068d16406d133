"""Command line: ``iiifsrv serve``, ``serve --get PATH``, ``samples``, ``settings``, ``migrate``,
``enrich ocr``.

Entry layer: imports settings, web.app and samples; configures logging; starts uvicorn.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import tempfile
from collections.abc import Iterator, MutableMapping
from types import FrameType
from typing import Any

from iiifsrv import __version__
from iiifsrv.ingest import cli as ingest_cli
from iiifsrv.settings import REGISTRY, Settings, SettingsError, load, replace, to_environ

log = logging.getLogger("iiifsrv")


def _add_server_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="TOML configuration file (see config/iiifsrv.example.toml)")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 8182)")
    p.add_argument("--workers", type=int, help="worker processes (0 = one per core)")
    p.add_argument(
        "--images",
        help="image root (a folder or s3://bucket/prefix): identifiers are paths under it",
    )
    p.add_argument("--data", help="state directory (catalogue, annotations, manifests)")
    p.add_argument("--public-url", dest="public_url", help="public base URL used in ids")


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {
        name: getattr(args, name, None)
        for name in ("host", "port", "workers", "images", "data", "public_url")
    }
    return load(config_file=args.config, environ=os.environ, overrides=overrides)


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("pyvips").setLevel(logging.WARNING)


def shown(settings: Settings, name: str) -> Any:
    """A setting's value as logs and ``iiifsrv settings`` show it: secrets masked."""
    value: Any = getattr(settings, name)
    if name == "tokens" and value:
        value = f"<{len(value.split(','))} token(s)>"
    if name in ("session_secret", "oidc_client_secret"):
        value = "<set>" if value and settings.sources.get(name, "default") != "default" else ""
    if name in ("database_url", "cache_url") and value and "@" in value:
        value = value.split("://")[0] + "://…@" + value.split("@", 1)[1]
    return value


def log_settings(settings: Settings) -> None:
    log.info("iiifsrv %s", __version__)
    for spec in REGISTRY:
        value = shown(settings, spec.name)
        log.info("setting %s = %r (%s)", spec.name, value, settings.sources.get(spec.name, "?"))


async def run_once(settings: Settings, path: str) -> tuple[int, list[tuple[str, str]], bytes]:
    """Run one GET through the ASGI app in-process (no socket)."""
    from iiifsrv.web.app import create_app

    app = create_app(settings)
    raw_path, _, query = path.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": raw_path,
        "raw_path": raw_path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", f"{settings.host}:{settings.port}".encode())],
        "server": (settings.host, settings.port),
        "client": ("127.0.0.1", 0),
    }
    from urllib.parse import unquote

    scope["path"] = unquote(raw_path)
    status = 0
    headers: list[tuple[str, str]] = []
    body = bytearray()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            headers.extend((k.decode(), v.decode("latin-1")) for k, v in message["headers"])
        elif message["type"] == "http.response.body":
            body.extend(message.get("body", b""))

    await app(scope, receive, send)
    return status, headers, bytes(body)


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's options: X-Forwarded-* only from the configured proxies, the guarded protocol
    (header timeout, per-client cap; see web/connections.py), connection limits."""
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "loop": "uvloop",
        "http": "iiifsrv.web.connections:GuardedHttpToolsProtocol",
        "log_level": settings.log_level,
        "access_log": settings.log_level == "debug" and settings.access_log != "json",
        "proxy_headers": bool(settings.forwarded_allow_ips),
        "server_header": False,
        "timeout_keep_alive": 30,
        "backlog": settings.backlog,
        "limit_concurrency": settings.limit_concurrency or None,
        # after SIGTERM and the drain (lifecycle.py): how long in-flight requests may finish
        "timeout_graceful_shutdown": settings.shutdown_timeout,
    }
    if settings.forwarded_allow_ips:
        options["forwarded_allow_ips"] = settings.forwarded_allow_ips
    from iiifsrv.web.access_log import uvicorn_log_config

    # masks /key/<token> in the access log; the JSON access log when access_log = "json"
    options["log_config"] = uvicorn_log_config(settings.access_log)
    return options


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings(args)
    _setup_logging(settings.log_level)
    if args.get:
        status, headers, body = asyncio.run(run_once(settings, args.get))
        print(status)
        for k, v in headers:
            print(f"{k}: {v}")
        print(f"body: {len(body)} bytes")
        if args.body:
            sys.stdout.buffer.write(body)
        return 0 if status < 400 else 1
    log_settings(settings)
    if not settings.session_secret:  # one random key for every worker (sessions end on restart)
        from iiifsrv.access.sessions import new_secret

        settings = replace(settings, session_secret=new_secret())
    if settings.image_root.kind == "local":  # an S3 root is never a local folder
        os.makedirs(settings.images_path, exist_ok=True)
    os.makedirs(settings.data_path, exist_ok=True)
    import uvicorn

    workers = settings.effective_workers
    common = uvicorn_options(settings)
    # uvicorn re-raises a handled SIGTERM once it has stopped: exit 0 then (a clean stop)
    signal.signal(signal.SIGTERM, _exit_cleanly)
    if workers > 1:
        os.environ.update(to_environ(settings))
        from iiifsrv import workers as supervisor

        why_not = supervisor.per_worker_sockets() if settings.reuse_port else "reuse_port = false"
        if why_not and settings.reuse_port:
            log.warning("the workers share one listening socket: %s", why_not)
        with metrics_directory():
            if why_not:
                uvicorn.run("iiifsrv.web.app:app_from_env", factory=True, workers=workers, **common)
            else:  # each worker its own socket on the same port (workers.py)
                config = uvicorn.Config(
                    "iiifsrv.web.app:app_from_env", factory=True, workers=workers, **common
                )
                supervisor.run(config)
    else:
        from iiifsrv.web import connections
        from iiifsrv.web.app import create_app

        connections.configure(
            settings.header_timeout,
            settings.max_connections_per_client,
            settings.forwarded_allow_ips,
        )
        uvicorn.run(create_app(settings), **common)
    return 0


def _exit_cleanly(sig: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


@contextlib.contextmanager
def metrics_directory() -> Iterator[None]:
    """Prometheus multiprocess mode for several workers: every worker writes its values to
    files in PROMETHEUS_MULTIPROC_DIR and a scrape of any worker reads them all. A private
    temporary directory, removed at exit, unless the variable is already set (then its stale
    ``*.db`` files are removed first, as prometheus_client requires)."""
    from iiifsrv.telemetry import MULTIPROC_ENV

    given = os.environ.get(MULTIPROC_ENV)
    if given:
        os.makedirs(given, exist_ok=True)
        for name in os.listdir(given):
            if name.endswith(".db"):
                os.unlink(os.path.join(given, name))
        yield
        return
    with tempfile.TemporaryDirectory(prefix="iiifsrv-metrics-") as path:
        os.environ[MULTIPROC_ENV] = path
        try:
            yield
        finally:
            del os.environ[MULTIPROC_ENV]


def cmd_samples(args: argparse.Namespace) -> int:
    settings = _settings(args)
    _setup_logging(settings.log_level)
    from iiifsrv import samples

    if settings.image_root.kind != "local":
        raise SettingsError("samples: --images must be a local folder")
    made = samples.ensure(settings.images_path, small=args.small, data=settings.data_path)
    for path in made:
        print(f"created {path}")
    print(samples.read_printed_page(settings))
    print(f"sample collection ready in {settings.images_path}")
    return 0


def cmd_enrich_ocr(args: argparse.Namespace) -> int:
    settings = _settings(args)
    _setup_logging("warning")
    from iiifsrv.agents import ocr, tesseract
    from iiifsrv.semantic import encoder

    if bool(args.objects) == bool(args.all):
        print("iiifsrv enrich ocr: name OBJECT… or give --all", file=sys.stderr)
        return 2
    try:
        results = ocr.run(
            settings,
            [] if args.all else args.objects,
            lang=args.lang,
            jobs=args.jobs,
            force=args.force,
            agent=settings.ocr_agent,
            embed=settings.semantic_search and encoder.available(),
        )
    except tesseract.EngineError as exc:
        print(f"iiifsrv enrich ocr: {exc}", file=sys.stderr)
        return 2
    return 1 if any(r.status == "failed" for r in results) else 0


def example_config() -> str:
    """The commented example configuration: every setting, its help and its default."""
    lines = [
        "# iiifsrv configuration (TOML). Every key is optional; shown with its default.",
        "# Precedence: defaults < this file (--config) < IIIFSRV_<NAME> environment < CLI.",
        "",
    ]
    for spec in REGISTRY:
        value = spec.default
        literal = (
            ("true" if value else "false")
            if isinstance(value, bool)
            else str(value)
            if isinstance(value, int)
            else f'"{value}"'
        )
        lines.append(f"## {spec.help} (environment: IIIFSRV_{spec.name.upper()})")
        lines.append(f"# {spec.name} = {literal}")
        lines.append("")
    return "\n".join(lines)


def cmd_settings(args: argparse.Namespace) -> int:
    if args.example:
        print(example_config(), end="")
        return 0
    settings = _settings(args)
    for spec in REGISTRY:
        print(f"{spec.name} = {shown(settings, spec.name)!r}    # {spec.help}")
    return 0


def _read_password(args: argparse.Namespace) -> str:
    """A new password: generated (and printed), from stdin when it is not a terminal, else
    asked twice without echo."""
    if getattr(args, "generate", False):
        import secrets

        password = secrets.token_urlsafe(15)
        print(f"password for {args.name}: {password}")
        return password
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    import getpass

    first = getpass.getpass(f"password for {args.name}: ")
    if getpass.getpass("again: ") != first:
        raise ValueError("the two passwords differ")
    return first


def cmd_users(args: argparse.Namespace) -> int:
    """Local accounts for viewing protected images (README "Access control")."""
    settings = _settings(args)
    from iiifsrv.access.accounts import Accounts

    accounts = Accounts(settings.data_path)
    roles = [r for item in (getattr(args, "role", None) or []) for r in item.split(",")]
    try:
        if args.action == "list":
            for account in accounts.all():
                print(f"{account.name}\t{','.join(account.roles)}")
        elif args.action == "add":
            accounts.add(args.name, _read_password(args), roles)
            print(f"added {args.name} (roles: {', '.join(sorted(set(roles))) or 'none'})")
        elif args.action == "passwd":
            if accounts.get(args.name) is None:
                raise ValueError(f"no user {args.name!r}")
            accounts.passwd(args.name, _read_password(args))
            print(f"password of {args.name} changed: its sessions have ended")
        elif args.action == "roles":
            accounts.set_roles(args.name, roles)
            print(f"roles of {args.name}: {', '.join(sorted(set(roles))) or 'none'}")
        else:
            accounts.remove(args.name)
            print(f"removed {args.name}")
    except ValueError as exc:
        print(f"iiifsrv users: {exc}", file=sys.stderr)
        return 1
    return 0


def _users_parser(sub: Any) -> None:
    users = sub.add_parser("users", help="local accounts: add, passwd, roles, remove, list")
    actions = users.add_subparsers(dest="action", required=True)
    for action, text in (
        ("add", "add an account (password asked, read from stdin, or --generate)"),
        ("passwd", "set a new password (ends the account's sessions)"),
        ("roles", "replace the account's roles"),
        ("remove", "remove an account"),
        ("list", "list accounts and their roles"),
    ):
        p = actions.add_parser(action, help=text)
        _add_server_options(p)
        if action != "list":
            p.add_argument("name")
        if action in ("add", "roles"):
            p.add_argument("--role", action="append", help="a role (repeat, or comma-separated)")
        if action in ("add", "passwd"):
            p.add_argument("--generate", action="store_true", help="generate and print one")
        p.set_defaults(func=cmd_users)


def cmd_migrate(args: argparse.Namespace) -> int:
    """Copy <data>'s SQLite and file state into PostgreSQL (database_url); 1 on any mismatch."""
    from iiifsrv.errors import IIIFError
    from iiifsrv.migrate import migrate

    settings = _settings(args)
    url = args.database_url or settings.database_url
    if not url:
        print("iiifsrv migrate: set database_url (or --database-url)", file=sys.stderr)
        return 2
    try:
        outcomes = migrate(settings.data_path, url)
    except IIIFError as exc:
        print(f"iiifsrv migrate: {exc.message}", file=sys.stderr)
        return 1
    print(f"migrate: {settings.data_path} -> PostgreSQL")
    for outcome in outcomes:
        print(outcome.line())
    return 1 if any(o.problems for o in outcomes) else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="iiifsrv", description="IIIF image server")
    parser.add_argument("--version", action="version", version=f"iiifsrv {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the server")
    _add_server_options(serve)
    serve.add_argument("--get", metavar="PATH", help="run one GET in-process and print the result")
    serve.add_argument("--body", action="store_true", help="with --get: also write the body")
    serve.set_defaults(func=cmd_serve)

    samples = sub.add_parser("samples", help="generate the sample collection in --images")
    _add_server_options(samples)
    samples.add_argument("--small", action="store_true", help="small images (for tests)")
    samples.set_defaults(func=cmd_samples)

    settings = sub.add_parser("settings", help="print every setting with its effective value")
    _add_server_options(settings)
    settings.add_argument("--example", action="store_true", help="print the example config")
    settings.set_defaults(func=cmd_settings)
    migrate = sub.add_parser(
        "migrate",
        help="copy the data directory's catalogue, manifests and change log into "
        "PostgreSQL (idempotent; verified by counts and checksums)",
    )
    _add_server_options(migrate)
    migrate.add_argument("--database-url", dest="database_url", help="default: database_url")
    migrate.set_defaults(func=cmd_migrate)
    ingest_cli.register(sub)  # ingest, objects
    _users_parser(sub)

    enrich = sub.add_parser("enrich", help="machine enrichment: annotations made by agents")
    agents = enrich.add_subparsers(dest="agent", required=True)
    ocr = agents.add_parser(
        "ocr",
        help="OCR image objects into searchable line annotations (tesseract)",
        description="One supplementing annotation per line, written by the OCR agent; ALTO "
        "and hOCR linked from each canvas. Reruns skip unchanged objects.",
    )
    _add_server_options(ocr)
    ocr.add_argument("objects", nargs="*", metavar="OBJECT", help="catalogue object ids")
    ocr.add_argument("--all", action="store_true", help="every image object of the catalogue")
    ocr.add_argument("--lang", default="eng", help="tesseract languages, e.g. eng+lat (eng)")
    ocr.add_argument("--jobs", type=int, default=0, help="parallel pages (0 = one per core)")
    ocr.add_argument("--force", action="store_true", help="redo objects already done")
    ocr.set_defaults(func=cmd_enrich_ocr)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except SettingsError as exc:
        print(f"iiifsrv: {exc}", file=sys.stderr)
        return 2
