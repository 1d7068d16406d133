"""The Image API endpoints (/iiif/3 and /iiif/2): info.json, images, base URI redirect.

HTTP layer: a raw ASGI handler (it must see the undecoded path to honour %2F in identifiers).
Imports Starlette's Response helpers, conditional, iiif (pure), service and errors.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from starlette.types import Receive, Scope, Send

from iiifsrv.access import services as auth_services
from iiifsrv.access import tiers
from iiifsrv.access.rules import DEGRADE, DENY, PUBLIC, Decision, Rule
from iiifsrv.caches.memory import ByteLRU
from iiifsrv.conditional import (
    CORS_HEADERS,
    PREFLIGHT_HEADERS,
    http_date,
    not_modified,
    strong_etag,
)
from iiifsrv.errors import BadRequest, IIIFError, MethodNotAllowed, NotFound
from iiifsrv.iiif import info as infojson
from iiifsrv.iiif.model import Limits
from iiifsrv.iiif.parse import parse_image_request
from iiifsrv.service import ImageService, Located
from iiifsrv.sources.describe import Source
from iiifsrv.web.auth import (
    DECISION_KEY,
    Access,
    denied,
    image_resource,
    protect,
    split_tier,
    tier_limits,
)
from iiifsrv.web.respond import BASE_KEY, error_response, header, request_base, send_response
from iiifsrv.web.spectra import spectra_service

log = logging.getLogger("iiifsrv.web")

PROFILE = {3: infojson.PROFILE_3, 2: infojson.PROFILE_2}
CONTEXT = {3: infojson.CONTEXT_3, 2: infojson.CONTEXT_2}


def _decode(segment: str, what: str) -> str:
    try:
        return unquote(segment, errors="strict")
    except UnicodeDecodeError:
        raise BadRequest(f"{what} is not valid UTF-8 once percent-decoded") from None


@dataclass(slots=True)
class Hot:
    """A complete 200 response for one URL, replayed while its source file is unchanged."""

    located: Located  # how to check the identifier still names the same file
    mtime_ns: int
    size: int
    etag: str
    last_modified: str
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def fresh(self) -> bool:
        st = self.located.check()
        return st is not None and st.st_mtime_ns == self.mtime_ns and st.st_size == self.size


def _request_headers(scope: Scope) -> dict[bytes, bytes]:
    wanted = (b"accept", b"if-none-match", b"if-modified-since")
    return {k: v for k, v in scope.get("headers", ()) if k in wanted}


HotKey = tuple[bytes | None, str, bytes | None, str]
REPLAY_TRIED = "iiifsrv.replay"  # set once the per-URL cache was consulted for this request


def _hot_key(scope: Scope, base: str, req: dict[bytes, bytes]) -> HotKey:
    """A cached body holds ids built from ``base``: the key is exactly that string; and the
    access decision class, decided before any replay (web/auth.py)."""
    decision: Decision = scope.get(DECISION_KEY, PUBLIC)
    return (scope.get("raw_path"), base, req.get(b"accept"), decision.key)


class ImageAPI:
    """ASGI app serving one Image API version under ``prefix`` (e.g. "/iiif/3")."""

    def __init__(
        self,
        service: ImageService,
        version: int,
        prefix: str,
        hot: ByteLRU[Hot] | None = None,
        access: Access | None = None,
    ) -> None:
        self.service = service
        self.access = access
        self.version = version
        self.prefix = prefix
        self.settings = service.settings
        # Keyed by (raw path, base URL, Accept): a hit costs one lstat, no parsing or planning.
        # One cache serves /iiif/2 and /iiif/3 (the raw path tells them apart).
        self.hot: ByteLRU[Hot] = (
            hot
            if hot is not None
            else ByteLRU(self.settings.cache_bytes, self.settings.cache_max_item)
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        base = scope.get(BASE_KEY)
        if base is None:  # not through Front (e.g. mounted directly)
            try:
                base = scope[BASE_KEY] = request_base(scope, self.settings.public_url)
            except IIIFError as exc:
                await error_response(send, exc, head=method == "HEAD")
                return
        if (method == "GET" or method == "HEAD") and REPLAY_TRIED not in scope:
            hit = self.replay(scope, base)
            if hit is not None:
                status, headers, body = hit
                await send({"type": "http.response.start", "status": status, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        try:
            if method == "OPTIONS":
                await send_response(send, 204, dict(PREFLIGHT_HEADERS), b"")
                return
            if method not in ("GET", "HEAD"):
                raise MethodNotAllowed(
                    "only GET, HEAD and OPTIONS", headers={"Allow": "GET, HEAD, OPTIONS"}
                )
            await self._dispatch(scope, send, base, head=method == "HEAD")
        except IIIFError as exc:
            await error_response(send, exc, head=method == "HEAD")
        except Exception:
            log.exception("unexpected error for %s", scope.get("path"))
            await error_response(send, IIIFError("internal error"), head=method == "HEAD")

    def replay(
        self, scope: Scope, base: str
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes] | None:
        """A GET or HEAD answered from the per-URL cache: (status, headers, body), or None.

        Access is decided first, the replay included (the decision is kept in the scope for
        the rest of the request); a hit costs one lstat, no parsing or planning. Front calls
        this itself for requests without credentials, and sends the result without wrapping
        ``send``."""
        scope[REPLAY_TRIED] = True
        if self.access is not None:
            scope[DECISION_KEY] = self._decide(scope)
        if not self.hot.enabled:
            return None
        req = _request_headers(scope)
        hot = self.hot.get(_hot_key(scope, base, req))
        if hot is None or not hot.fresh():
            return None
        if (b"if-none-match" in req or b"if-modified-since" in req) and not_modified(
            hot.etag,
            hot.mtime_ns / 1e9,
            _str(req.get(b"if-none-match")),
            _str(req.get(b"if-modified-since")),
        ):
            return 304, [h for h in hot.headers if h[0] != b"content-length"], b""
        return 200, hot.headers, b"" if scope["method"] == "HEAD" else hot.body

    def _decide(self, scope: Scope) -> Decision:
        """The decision for the identifier in the path: info.json by access token (Bearer) or
        cookie, images by cookie and address only. Unparseable paths: public (they fail later)."""
        assert self.access is not None
        if not self.access.active:
            return PUBLIC
        raw = scope.get("raw_path") or scope["path"].encode()
        rest = raw.decode("latin-1")[len(self.prefix) :].lstrip("/")
        segments = rest.split("/") if rest else []
        try:
            if segments and segments[-1] == "info.json":
                identifier, bearer = _decode("/".join(segments[:-1]), "identifier"), True
            elif len(segments) >= 5:
                identifier, bearer = _decode("/".join(segments[:-4]), "identifier"), False
            else:
                identifier, bearer = _decode("/".join(segments), "identifier").rstrip("/"), False
        except IIIFError:
            return PUBLIC
        identifier, _ = split_tier(identifier)
        return self.access.decision(scope, image_resource(identifier), bearer=bearer)

    async def _dispatch(self, scope: Scope, send: Send, base: str, head: bool) -> None:
        raw = scope.get("raw_path") or scope["path"].encode()
        path = raw.decode("latin-1")
        if not path.startswith(self.prefix):
            raise NotFound("not found")
        rest = path[len(self.prefix) :].lstrip("/")
        segments = rest.split("/") if rest else []
        if not segments or not segments[0]:
            raise NotFound("no identifier given: use /iiif/{version}/{identifier}/info.json")
        if segments[-1] == "info.json":
            identifier = _decode("/".join(segments[:-1]), "identifier")
            await self._info(scope, send, base, identifier, head)
        elif len(segments) >= 5:
            identifier = _decode("/".join(segments[:-4]), "identifier")
            region, size, rotation, qf = (_decode(s, "parameter") for s in segments[-4:])
            await self._image(scope, send, base, identifier, (region, size, rotation, qf), head)
        else:
            identifier = _decode("/".join(segments), "identifier")
            if segments[-1] == "":
                identifier = identifier.rstrip("/")
            decision: Decision = scope.get(DECISION_KEY, PUBLIC)
            if decision.kind == DENY:
                raise denied(decision)
            await self.service.source(split_tier(identifier)[0])  # 404 for unknown identifiers
            location = f"{self._image_id(base, '/'.join(s for s in segments if s))}/info.json"
            await send_response(send, 303, {"Location": location, **CORS_HEADERS}, b"")

    def _image_id(self, base: str, encoded_identifier: str) -> str:
        return f"{base}{self.prefix}/{encoded_identifier}"

    async def _info(self, scope: Scope, send: Send, base: str, identifier: str, head: bool) -> None:
        decision: Decision = scope.get(DECISION_KEY, PUBLIC)
        identifier, tier = split_tier(identifier)
        rule = decision.rule
        if tier and (rule is None or rule.mode != "degraded"):
            raise NotFound(f"image {identifier!r} has no degraded version")
        source = await self.service.source(identifier)
        raw = scope.get("raw_path") or scope["path"].encode()
        encoded = raw.decode("latin-1")[len(self.prefix) :].strip("/")
        encoded = encoded[: -len("/info.json")]
        image_id = self._image_id(base, encoded)
        if decision.kind == DEGRADE and not tier:
            # Auth 1.0 tiers: the degraded version is another image service (viewers upgrade
            # to the full one once a token makes this info.json answer 200).
            tier_id = self._image_id(base, auth_services.tier_identifier(encoded))
            headers = {"Location": f"{tier_id}/info.json", **CORS_HEADERS}
            protect(decision, headers, bearer=True)
            headers["Cache-Control"] = "no-store"
            await send_response(send, 302, headers, b"")
            return
        limits = self.service.limits
        if tier and rule is not None:
            limits = tier_limits(limits, rule.max_size)
        accept = header(scope, b"accept") or ""
        if "application/ld+json" in accept or (self.version >= 3 and not _wants_json(accept)):
            ctype = f'application/ld+json;profile="{CONTEXT[self.version]}"'
        else:
            ctype = "application/json"
        spectral = await self.service.spectral_object(identifier)
        etag = strong_etag(source.identity, self.version, image_id, ctype, spectral)
        if decision.protected:
            etag = strong_etag(etag, decision.key)
        headers = {
            "Content-Type": ctype,
            "ETag": etag,
            "Last-Modified": http_date(source.mtime),
            "Cache-Control": self.settings.cache_control,
            "Vary": "Accept",
            "Link": f'<{PROFILE[self.version]}>;rel="profile"',
            **CORS_HEADERS,
        }
        protect(decision, headers, bearer=True)
        denial = decision.kind == DENY
        if not denial and not_modified(
            etag, source.mtime, header(scope, b"if-none-match"), header(scope, b"if-modified-since")
        ):
            await send_response(send, 304, headers, b"", omit_length=True)
            return
        shared, shared_key = self.service.shared, ""
        body: bytes | None = None
        if shared is not None and not denial:
            # keyed by all the body depends on: source, ids (base), type, the access class
            version = self.service.shared_version(source.path, source.identity)
            shared_key = shared.key(
                "info", version, str(self.version), image_id, ctype, spectral, decision.key
            )
            body = await shared.get(shared_key)
        if body is None:
            body = self._info_body(
                base, image_id, identifier, source, spectral, limits, rule, tier=tier
            )
            if shared is not None and not denial:
                await shared.put(shared_key, body)
        if denial:
            # Auth 1.0: 401 with the complete info.json, so viewers can offer the login.
            headers["Cache-Control"] = "no-store"
            headers.pop("ETag")
            await send_response(send, 401, headers, b"" if head else body, length=len(body))
            return
        self._remember(scope, base, identifier, source, etag, headers, body)
        await send_response(send, 200, headers, b"" if head else body, length=len(body))

    def _info_body(
        self,
        base: str,
        image_id: str,
        identifier: str,
        source: Source,
        spectral: str,
        limits: Limits,
        rule: Rule | None,
        *,
        tier: bool = False,
    ) -> bytes:
        build = infojson.info_v3 if self.version >= 3 else infojson.info_v2
        services: list[dict[str, Any]] = []
        if spectral:  # bands and composites of a multispectral object link the spectral service
            services.append(spectra_service(base, spectral, self.version))
        if rule is not None:  # the same services whether this client may see it or not
            services += auth_services.info_services(base, identifier, rule, self.version)
        doc: dict[str, Any] = build(image_id, source.info, limits, services=services or None)
        if tier:
            doc = tiers.small_info(doc)
        if rule is not None:
            doc["@context"] = [auth_services.AUTH2_CONTEXT, doc["@context"]]
        return json.dumps(doc, separators=(",", ":")).encode()

    def _remember(
        self,
        scope: Scope,
        base: str,
        identifier: str,
        source: Source,
        etag: str,
        headers: dict[str, str],
        body: bytes,
    ) -> None:
        if not self.hot.enabled or len(body) > self.hot.max_item:
            return
        if source.loader == "composite":  # made of several files: only the service cache
            return
        located = self.service.located(identifier)
        if located is None or located.real != source.path:
            return
        key = _hot_key(scope, base, _request_headers(scope))
        raw = [_shared_header(k, v) for k, v in headers.items()]
        raw.append((b"content-length", str(len(body)).encode()))
        entry = Hot(
            located,
            source.mtime_ns,
            source.size,
            etag,
            headers["Last-Modified"],
            raw,
            body,
        )
        # What the entry really costs in Python: the body, the per-entry header values (the
        # constant ones are shared), the key, and the objects around them.
        own = sum(len(v) + 90 for k, v in raw if k in _PER_ENTRY)
        self.hot.put(key, entry, len(body) + own + len(key[0] or b"") + len(base) + 700)

    async def _image(
        self,
        scope: Scope,
        send: Send,
        base: str,
        identifier: str,
        params: tuple[str, str, str, str],
        head: bool,
    ) -> None:
        request = parse_image_request(self.version, *params)
        decision: Decision = scope.get(DECISION_KEY, PUBLIC)
        if decision.kind == DENY:
            raise denied(decision)
        identifier, tier = split_tier(identifier)
        rule = decision.rule
        limits = None
        if tier:
            if rule is None or rule.mode != "degraded":
                raise NotFound(f"image {identifier!r} has no degraded version")
            limits = tier_limits(self.service.limits, rule.max_size)
        access = decision.key if decision.protected else ""
        planned = await self.service.plan(identifier, request, limits=limits, access=access)
        if rule is not None and (tier or decision.kind == DEGRADE):
            # The small version, whole or in part, at its own scale or less: a crop of the full
            # resolution is refused however small it is (the tier's limit even when signed in).
            p, info = planned.plan, planned.source.info
            full, region = (info.width, info.height), (p.region.w, p.region.h)
            if tiers.too_sharp(rule.max_size, full, region, (p.width, p.height)):
                raise denied(decision, f"a view sharper than the {rule.max_size}-pixel version")
        raw = scope.get("raw_path") or scope["path"].encode()
        encoded = "/".join(raw.decode("latin-1")[len(self.prefix) :].strip("/").split("/")[:-4])
        canonical = f"{self._image_id(base, encoded)}/{planned.plan.canonical}"
        headers = {
            "ETag": planned.etag,
            "Last-Modified": http_date(planned.last_modified),
            "Cache-Control": self.settings.cache_control,
            "Link": f'<{canonical}>;rel="canonical",<{PROFILE[self.version]}>;rel="profile"',
            **CORS_HEADERS,
        }
        protect(decision, headers)
        if not_modified(
            planned.etag,
            planned.last_modified,
            header(scope, b"if-none-match"),
            header(scope, b"if-modified-since"),
        ):
            await send_response(send, 304, headers, b"", omit_length=True)
            return
        result = await self.service.render(planned)
        headers["Content-Type"] = result.media_type
        if self.settings.debug:
            stages = [f"{k};dur={v * 1000:.2f}" for k, v in result.timings.items()]
            stages.append("cache;desc=" + ("hit" if result.cached else "miss"))
            if result.passthrough:
                stages.append("passthrough")
            stages.append(f"renders;desc={self.service.renders}")  # this process's total
            headers["Server-Timing"] = ", ".join(stages)
        body = result.body
        if not self.settings.debug:
            self._remember(scope, base, identifier, planned.source, planned.etag, headers, body)
        await send_response(send, 200, headers, b"" if head else body, length=len(body))


_PER_ENTRY = {b"etag", b"last-modified", b"link", b"content-length"}
_SHARED: dict[tuple[str, str], tuple[bytes, bytes]] = {}


def _shared_header(name: str, value: str) -> tuple[bytes, bytes]:
    """Header pairs that are the same for many responses are stored once per process."""
    pair = (name.lower().encode("latin-1"), value.encode("latin-1"))
    if pair[0] in _PER_ENTRY or len(_SHARED) > 1000:
        return pair
    return _SHARED.setdefault((name, value), pair)


def _str(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")


def _wants_json(accept: str) -> bool:
    return "application/json" in accept
