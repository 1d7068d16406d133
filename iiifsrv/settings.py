"""Settings: the registry (name, type, default, help) and one frozen Settings object.

Imports only the standard library, iiifsrv.tokens (to check the tokens syntax) and
iiifsrv.sources.storage (pure: to parse the image root).
Values come from defaults, a TOML file, ``IIIFSRV_<NAME>`` environment variables and CLI
overrides, in that order of precedence (last wins).
The environment is passed in explicitly; nothing here reads a global later.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iiifsrv.sources.storage import ImageRoot, parse_root
from iiifsrv.tokens import check_strength, parse_tokens


@dataclass(frozen=True)
class Spec:
    name: str
    type: type
    default: Any
    help: str


REGISTRY: tuple[Spec, ...] = (
    Spec("host", str, "127.0.0.1", "Address to listen on."),
    Spec("port", int, 8182, "TCP port to listen on."),
    Spec("workers", int, 1, "Worker processes (0 = one per CPU core)."),
    Spec(
        "reuse_port",
        bool,
        True,
        "With several workers on Linux, each accepts from its own listening socket "
        "(SO_REUSEPORT: the kernel spreads new connections by a hash of their addresses); "
        "false = all accept from one shared socket.",
    ),
    Spec(
        "images",
        str,
        "var/images",
        "Image root: a folder, or s3://bucket/prefix; identifiers are paths relative to it.",
    ),
    Spec(
        "s3_endpoint",
        str,
        "",
        "S3 endpoint URL for an s3:// image root (MinIO, Swift, ...); empty = AWS S3.",
    ),
    Spec("s3_region", str, "us-east-1", "S3 region (signing); path-style addressing is used."),
    Spec("s3_timeout", int, 10, "Seconds an S3 request may take, retries included (then 503)."),
    Spec("s3_retries", int, 2, "Retries of a failed S3 request (5xx, timeouts), with back-off."),
    Spec("s3_concurrency", int, 16, "S3 requests in flight at once per worker (connection pool)."),
    Spec(
        "s3_revalidate",
        int,
        60,
        "Seconds an S3 object's version (ETag) is trusted before it is listed again.",
    ),
    Spec(
        "s3_max_whole_object",
        int,
        64 * 1024 * 1024,
        "Largest untiled S3 object (JPEG, PNG, JPEG2000, flat TIFF) read whole; beyond, 501.",
    ),
    Spec("data", str, "var/data", "State directory: catalogue, annotations, manifests, caches."),
    Spec(
        "public_url",
        str,
        "",
        "Public base URL (scheme://host[:port][/prefix]) used in every id; empty = from the "
        "request's Host header.",
    ),
    Spec("max_width", int, 10000, "Largest output width in pixels (0 = no limit)."),
    Spec("max_height", int, 10000, "Largest output height in pixels (0 = no limit)."),
    Spec("max_area", int, 25_000_000, "Largest output area in pixels (0 = no limit)."),
    Spec(
        "max_source_pixels",
        int,
        250_000_000,
        "Largest untiled source (plain JPEG/PNG/TIFF) served; beyond, ingest it (0 = no limit).",
    ),
    Spec("render_threads", int, 0, "Concurrent image renders per worker (0 = one per core)."),
    Spec(
        "cache_bytes",
        int,
        96 * 1024 * 1024,
        "Bytes of the in-memory response cache per worker (0 = off).",
    ),
    Spec("cache_max_item", int, 4 * 1024 * 1024, "Largest response kept in the memory cache."),
    Spec("cache_control", str, "public, max-age=86400", "Cache-Control header of image responses."),
    Spec(
        "cache_url",
        str,
        "",
        "Shared cache of all replicas: redis://host:port/db (or rediss://, unix://) or "
        "memcached://host:port; empty = none. Holds info.json, image structures and rendered "
        "images; an outage is a miss.",
    ),
    Spec("cache_ttl", int, 86400, "Seconds an item lives in the shared cache."),
    Spec(
        "cache_shared_max_item",
        int,
        2 * 1024 * 1024,
        "Largest item in bytes stored in the shared cache (larger ones are not shared).",
    ),
    Spec(
        "cache_timeout_ms",
        int,
        250,
        "Longest wait in milliseconds for one shared-cache call; a slower one is a miss.",
    ),
    Spec(
        "cache_lease_ms",
        int,
        10000,
        "Milliseconds one replica holds the lease to render an item for all; the others wait "
        "at most this long for it, then render themselves.",
    ),
    Spec(
        "cache_backoff",
        int,
        5,
        "Seconds the shared cache is skipped after 3 failed calls in a row, before trying again.",
    ),
    Spec("jpeg_quality", int, 80, "JPEG quality of rendered (not passed-through) images."),
    Spec(
        "resize_kernel",
        str,
        "linear",
        "Resampling after the pyramid level (< 2x): linear (as IIPImage), cubic or lanczos3.",
    ),
    Spec(
        "decoded_cache_mb",
        int,
        48,
        "MiB of small pyramid levels (<= 3 MP) kept decoded per worker (0 = off).",
    ),
    Spec(
        "passthrough",
        bool,
        True,
        "Serve stored JPEG tiles as they are when a request maps exactly.",
    ),
    Spec(
        "fast_decode",
        bool,
        True,
        "Decode stored TIFF tiles directly (libdeflate, libjpeg-turbo) for plain JPEG output.",
    ),
    Spec("vips_cache_mb", int, 16, "libvips operation cache size in MiB."),
    Spec("log_level", str, "info", "Logging level: debug, info, warning, error."),
    Spec("debug", bool, False, "Add Server-Timing headers per stage."),
    Spec(
        "tokens",
        str,
        "",
        "Write tokens: comma-separated token=user, token=user:editor or token=name:agent"
        " (a software agent, e.g. OCR; its annotations are recorded as Software).",
    ),
    Spec(
        "annotation_canvases",
        str,
        "known",
        'Annotation targets: "known" = canvases of this server\'s manifests; "any" = any URI.',
    ),
    Spec(
        "database_url",
        str,
        "",
        "PostgreSQL URL for all state (catalogue, manifests, change log, annotations), shared by "
        "every replica; empty = SQLite and files in data.",
    ),
    Spec(
        "annotation_max_bytes",
        int,
        10 * 1024 * 1024,
        "Largest annotation request body in bytes (larger → 413).",
    ),
    Spec(
        "annotation_batch_max",
        int,
        5000,
        "Most annotations in one agent batch (POST …/batch; more → 413); one transaction.",
    ),
    Spec(
        "ocr_agent",
        str,
        "ocr",
        "Name of the built-in OCR agent (enrich ocr): its lines' creator is <base>/agents/<name>.",
    ),
    Spec(
        "annotation_page_size",
        int,
        100,
        "Annotations per page of the W3C containers and of Content Search results.",
    ),
    Spec(
        "annotation_list_cap",
        int,
        1000,
        "Most annotations in an unpaged list (Annotot, SAS, …/page); the rest: W3C container.",
    ),
    Spec(
        "manifest_max_bytes",
        int,
        16 * 1024 * 1024,
        "Largest manifest request body in bytes (larger → 413).",
    ),
    Spec(
        "manifest_max_canvases",
        int,
        10000,
        "Most canvases in an uploaded manifest (more → 400).",
    ),
    Spec(
        "forwarded_allow_ips",
        str,
        "",
        "Reverse proxies (comma-separated IPs or networks, * = any) whose X-Forwarded-Proto and "
        "X-Forwarded-For are believed; empty = trust nobody.",
    ),
    Spec(
        "header_timeout",
        int,
        10,
        "Seconds a connection may take to send its request headers before it is closed "
        "(0 = no limit).",
    ),
    Spec(
        "max_connections_per_client",
        int,
        256,
        "Open connections per client address (trusted proxies exempt); more are closed at once "
        "(0 = no limit).",
    ),
    Spec(
        "limit_concurrency",
        int,
        1000,
        "Connections plus running requests per worker before new requests get 503 (0 = no limit).",
    ),
    Spec("backlog", int, 2048, "Pending connections the listening socket queues."),
    Spec(
        "session_secret",
        str,
        "",
        "Key (32+ characters) signing the viewer sign-in cookie; empty = random at each start "
        "(sessions end on restart). Set the same value on every replica.",
    ),
    Spec(
        "session_max_age",
        int,
        3600,
        "Seconds a sign-in (session cookie) lasts, counted from signing in: short-lived, an "
        'hour by default (README "Access control": why, and when to change it).',
    ),
    Spec(
        "auth_failures",
        int,
        10,
        "Failed authentications per client address and minute before 429 (0 = no limit); "
        "counted per worker process.",
    ),
    Spec(
        "access_rules",
        str,
        "",
        "Access rules file (TOML [[rule]] tables: restricted, degraded, clickthrough, location; "
        'README "Access control"); empty = every image public.',
    ),
    Spec(
        "access_reload",
        int,
        10,
        "Seconds between checks of the access rules file for changes (0 = every request).",
    ),
    Spec(
        "session_revocation_check",
        int,
        1,
        "Seconds between reads of the shared sign-out list (the database, or sessions.sqlite3 "
        "in the data folder): a sign-out reaches every worker and replica within this time "
        "(0 = every request).",
    ),
    Spec(
        "access_token_max_age",
        int,
        600,
        "Seconds an IIIF Auth access token (for info.json and probes) lasts.",
    ),
    Spec(
        "oidc_issuer",
        str,
        "",
        "OpenID Connect provider (issuer URL, https; http only on loopback) for signing in with "
        "an external account; empty = local accounts only (needs the [oidc] extra).",
    ),
    Spec("oidc_client_id", str, "", "Client id of iiifsrv at the OpenID provider."),
    Spec(
        "oidc_client_secret",
        str,
        "",
        "Client secret at the OpenID provider (set it in the environment, "
        "IIIFSRV_OIDC_CLIENT_SECRET; never logged).",
    ),
    Spec(
        "oidc_roles_claim",
        str,
        "groups",
        "Claim whose values become the user's roles (a dotted path for nested claims, e.g. "
        "realm_access.roles for Keycloak, roles for Entra app roles).",
    ),
    Spec(
        "oidc_scopes",
        str,
        "openid profile email",
        "Scopes asked of the OpenID provider (openid is always asked).",
    ),
    Spec(
        "oidc_name",
        str,
        "",
        'Provider name on the sign-in page ("Sign in with <name>"); empty = the issuer\'s host.',
    ),
    Spec(
        "access_log",
        str,
        "",
        'Access log: "json" = one JSON line per request on standard output (tokens masked); '
        "empty = none (uvicorn's own at log_level debug).",
    ),
    Spec("metrics", bool, True, "Serve Prometheus metrics at /metrics."),
    Spec(
        "shutdown_drain",
        int,
        0,
        "Seconds between SIGTERM and closing the listening socket, while /health answers 503 "
        "so a load balancer takes the replica out (0 = close at once).",
    ),
    Spec(
        "shutdown_timeout",
        int,
        30,
        "Seconds in-flight requests may take to finish after the drain before they are "
        "cancelled and the process exits.",
    ),
    Spec(
        "semantic_search",
        bool,
        True,
        "Search annotations by meaning (/annotations/semantic/…) when the [semantic] extra is "
        "installed; embeddings are computed in the background after each write.",
    ),
    Spec(
        "similarity_threshold",
        int,
        40,
        "Largest perceptual-hash distance (pHash + dHash bits, 0-128) at which GET "
        "/objects/{id}/similar lists an image as a near-duplicate.",
    ),
)

_BY_NAME = {s.name: s for s in REGISTRY}
ENV_PREFIX = "IIIFSRV_"


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8182
    workers: int = 1
    reuse_port: bool = True
    images: str = "var/images"
    s3_endpoint: str = ""
    s3_region: str = "us-east-1"
    s3_timeout: int = 10
    s3_retries: int = 2
    s3_concurrency: int = 16
    s3_revalidate: int = 60
    s3_max_whole_object: int = 64 * 1024 * 1024
    data: str = "var/data"
    public_url: str = ""
    max_width: int = 10000
    max_height: int = 10000
    max_area: int = 25_000_000
    max_source_pixels: int = 250_000_000
    render_threads: int = 0
    cache_bytes: int = 96 * 1024 * 1024
    cache_max_item: int = 4 * 1024 * 1024
    cache_control: str = "public, max-age=86400"
    cache_url: str = ""
    cache_ttl: int = 86400
    cache_shared_max_item: int = 2 * 1024 * 1024
    cache_timeout_ms: int = 250
    cache_lease_ms: int = 10000
    cache_backoff: int = 5
    jpeg_quality: int = 80
    resize_kernel: str = "linear"
    decoded_cache_mb: int = 48
    passthrough: bool = True
    fast_decode: bool = True
    vips_cache_mb: int = 16
    log_level: str = "info"
    debug: bool = False
    tokens: str = ""
    annotation_canvases: str = "known"
    database_url: str = ""
    annotation_max_bytes: int = 10 * 1024 * 1024
    annotation_batch_max: int = 5000
    ocr_agent: str = "ocr"
    annotation_page_size: int = 100
    annotation_list_cap: int = 1000
    manifest_max_bytes: int = 16 * 1024 * 1024
    manifest_max_canvases: int = 10000
    forwarded_allow_ips: str = ""
    header_timeout: int = 10
    max_connections_per_client: int = 256
    limit_concurrency: int = 1000
    backlog: int = 2048
    session_secret: str = field(default="", repr=False)
    session_max_age: int = 3600
    auth_failures: int = 10
    access_rules: str = ""
    access_reload: int = 10
    session_revocation_check: int = 1
    access_token_max_age: int = 600
    oidc_issuer: str = ""
    oidc_client_id: str = ""
    oidc_client_secret: str = field(default="", repr=False)
    oidc_roles_claim: str = "groups"
    oidc_scopes: str = "openid profile email"
    oidc_name: str = ""
    access_log: str = ""
    metrics: bool = True
    shutdown_drain: int = 0
    shutdown_timeout: int = 30
    semantic_search: bool = True
    similarity_threshold: int = 40
    sources: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def image_root(self) -> ImageRoot:
        return parse_root(self.images)

    @property
    def images_path(self) -> Path:
        """The local image folder (for an S3 root: a path that is never a folder)."""
        root = self.image_root
        return root.path if root.path is not None else Path("/nonexistent/s3-image-root")

    @property
    def data_path(self) -> Path:
        return Path(self.data).resolve()

    @property
    def effective_render_threads(self) -> int:
        return self.render_threads or (os.cpu_count() or 1)

    @property
    def effective_workers(self) -> int:
        return self.workers or (os.cpu_count() or 1)

    def as_dict(self) -> dict[str, Any]:
        return {s.name: getattr(self, s.name) for s in REGISTRY}


class SettingsError(ValueError):
    """A setting that cannot be read: names the setting and where it came from."""


def _coerce(spec: Spec, value: Any, origin: str) -> Any:
    try:
        if spec.type is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(value)
        if spec.type is int:
            if isinstance(value, bool):
                raise ValueError(value)
            number = int(str(value).replace("_", ""))
            if number < 0:
                raise ValueError(value)
            return number
        return str(value)
    except ValueError:
        raise SettingsError(
            f"setting {spec.name!r} from {origin}: {value!r} is not a valid {spec.type.__name__}"
        ) from None


def load(
    *,
    config_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build Settings from defaults < TOML file < environment < overrides (CLI)."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {s.name: "default" for s in REGISTRY}
    if config_file:
        path = Path(config_file)
        try:
            with path.open("rb") as fh:
                data = tomllib.load(fh)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise SettingsError(f"cannot read config file {path}: {exc}") from None
        for key, value in data.items():
            spec = _BY_NAME.get(key)
            if spec is None:
                raise SettingsError(f"unknown setting {key!r} in {path}")
            values[key] = _coerce(spec, value, str(path))
            sources[key] = str(path)
    for key, value in (environ or {}).items():
        if not key.startswith(ENV_PREFIX):
            continue
        name = key[len(ENV_PREFIX) :].lower()
        spec = _BY_NAME.get(name)
        if spec is None:
            continue
        values[name] = _coerce(spec, value, key)
        sources[name] = "environment"
    for name, value in (overrides or {}).items():
        if value is None:
            continue
        spec = _BY_NAME.get(name)
        if spec is None:
            raise SettingsError(f"unknown setting {name!r}")
        values[name] = _coerce(spec, value, "command line")
        sources[name] = "command line"
    if values.get("public_url"):
        values["public_url"] = str(values["public_url"]).rstrip("/")
    if values.get("resize_kernel", "linear") not in ("linear", "cubic", "lanczos3", "mitchell"):
        raise SettingsError("setting 'resize_kernel' must be linear, cubic, mitchell or lanczos3")
    if values.get("annotation_canvases", "known") not in ("known", "any"):
        raise SettingsError('setting \'annotation_canvases\' must be "known" or "any"')
    if values.get("access_log", "") not in ("", "json"):
        raise SettingsError("setting 'access_log' must be \"json\" or empty")
    scheme = str(values.get("cache_url", "")).partition("://")[0].lower()
    if values.get("cache_url") and scheme not in ("redis", "rediss", "unix", "memcached"):
        raise SettingsError(
            f"setting 'cache_url' from {sources['cache_url']}: use redis://host:port/db "
            "(or rediss://, unix://) or memcached://host:port"
        )
    for name in ("cache_ttl", "cache_timeout_ms", "cache_lease_ms"):
        if name in values and values[name] < 1:
            raise SettingsError(f"setting {name!r} must be at least 1")
    for name in ("annotation_page_size", "annotation_list_cap", "manifest_max_canvases"):
        if name in values and values[name] < 1:
            raise SettingsError(f"setting {name!r} must be at least 1")
    if not 0 <= values.get("similarity_threshold", 40) <= 128:
        raise SettingsError("setting 'similarity_threshold' must be from 0 to 128")
    for entry in str(values.get("forwarded_allow_ips", "")).split(","):
        try:
            if entry.strip() not in ("", "*"):
                ipaddress.ip_network(entry.strip(), strict=False)
        except ValueError:
            raise SettingsError(
                f"setting 'forwarded_allow_ips': {entry.strip()!r} is not an IP address or network"
            ) from None
    try:
        parse_root(str(values.get("images", "var/images")))
    except ValueError as exc:
        raise SettingsError(f"setting 'images' from {sources['images']}: {exc}") from None
    try:
        check_strength(parse_tokens(str(values.get("tokens", ""))))
    except ValueError as exc:
        raise SettingsError(f"setting 'tokens' from {sources['tokens']}: {exc}") from None
    if 0 < len(str(values.get("session_secret", ""))) < 32:
        raise SettingsError(
            f"setting 'session_secret' from {sources['session_secret']}: use at least 32 random "
            "characters, or leave it empty"
        )
    if values.get("access_token_max_age", 1) == 0:
        raise SettingsError("setting 'access_token_max_age' must be at least 1 second")
    if values.get("session_max_age", 1) == 0:
        raise SettingsError("setting 'session_max_age' must be at least 1 second")
    if values.get("oidc_issuer"):
        _check_oidc(values, sources)
    return Settings(**values, sources=sources)


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


def _check_oidc(values: dict[str, Any], sources: dict[str, str]) -> None:
    """The OpenID Connect settings belong together: an https issuer (http on loopback only,
    for tests), a client id and a client secret."""
    issuer = str(values["oidc_issuer"]).rstrip("/")
    scheme, _, rest = issuer.partition("://")
    host = (
        rest.split("/", 1)[0].rsplit(":", 1)[0]
        if not rest.startswith("[")
        else rest.split("]")[0] + "]"
    )
    if scheme != "https" and not (scheme == "http" and host in LOOPBACK_HOSTS):
        raise SettingsError(
            f"setting 'oidc_issuer' from {sources['oidc_issuer']}: use an https:// URL "
            "(http:// only on 127.0.0.1 or localhost)"
        )
    for name in ("oidc_client_id", "oidc_client_secret"):
        if not values.get(name):
            raise SettingsError(f"setting 'oidc_issuer' needs {name!r} too")
    if not str(values.get("oidc_roles_claim", "groups")).strip():
        raise SettingsError("setting 'oidc_roles_claim' must name a claim")


def to_environ(settings: Settings) -> dict[str, str]:
    """The environment that reproduces ``settings`` (for worker processes)."""
    env = {}
    for spec in REGISTRY:
        value = getattr(settings, spec.name)
        if spec.name == "images":
            value = str(settings.image_root)
        elif spec.name == "data":
            value = str(Path(value).resolve())
        env[ENV_PREFIX + spec.name.upper()] = (
            str(value).lower() if spec.type is bool else str(value)
        )
    return env


def replace(settings: Settings, **changes: Any) -> Settings:
    return dataclasses.replace(settings, **changes)
