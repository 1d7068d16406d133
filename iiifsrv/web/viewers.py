"""The human pages: the landing page (manifests with thumbnails and viewer links, then the images
without a manifest), the Mirador and Universal Viewer pages, and the static viewer assets.

HTTP layer: imports Starlette, conditional, errors, web.respond, web.page_security (every HTML
page carries its CSP), presentation (blocking, called in threads) and service. The viewers
themselves are built by npm into iiifsrv/static/build/; no page has inline script.
"""

from __future__ import annotations

import html
import json
import mimetypes
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import anyio
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Route

from iiifsrv.access.rules import DENY, Resource
from iiifsrv.access.services import LOGOUT
from iiifsrv.conditional import CORS_HEADERS, not_modified
from iiifsrv.errors import BadRequest, NotFound, Unavailable
from iiifsrv.presentation.builder import manifest_url
from iiifsrv.presentation.service import Presentation
from iiifsrv.presentation.store import publish
from iiifsrv.service import ImageService
from iiifsrv.web.auth import Access, protect
from iiifsrv.web.page_security import HTML_HEADERS, html_response
from iiifsrv.web.respond import base_url

STATIC = Path(__file__).resolve().parent.parent / "static"
BUILD = STATIC / "build"
VITE_MANIFEST = BUILD / ".vite" / "manifest.json"
MIRADOR_ENTRY = "src/mirador.js"
UV_ENTRY = "src/uv.js"
IMMUTABLE = "public, max-age=31536000, immutable"
SHORT = "public, max-age=300"
LANDING_LIMIT = 500
NOT_BUILT = "the viewers are not built: run scripts/setup (npm ci and the Vite build in viewers/)"

TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".gif": "image/gif",
    ".jpg": "image/jpeg",
    ".ico": "image/x-icon",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".ttf": "font/ttf",
    ".wasm": "application/wasm",
    ".html": "text/html; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
}


def content_type(path: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    return TYPES.get(ext) or mimetypes.guess_type(path)[0] or "application/octet-stream"


def is_hashed(rel: str) -> bool:
    """Files whose name changes with their content: Vite's assets/ and Universal Viewer's
    webpack chunks (``1000.bef5c329c0fd159c772a.js``)."""
    if rel.startswith("build/assets/"):
        return True
    parts = os.path.basename(rel).split(".")
    return (
        len(parts) >= 3 and len(parts[-2]) >= 8 and all(c in "0123456789abcdef" for c in parts[-2])
    )


def check_manifest_param(value: str | None) -> str:
    """The ``manifest`` query parameter: an absolute http(s) URL, or nothing."""
    if not value:
        return ""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or len(value) > 2000:
        raise BadRequest("manifest must be an absolute http(s) URL")
    return value


@dataclass(frozen=True)
class Entry:
    """One manifest on the landing page."""

    id: str
    label: str
    kind: str
    thumbnail: str
    bands: int
    objects: tuple[str, ...] = ()


class Assets:
    """The hashed file names of the Vite build, re-read when the build changes."""

    def __init__(self, manifest: Path = VITE_MANIFEST) -> None:
        self.path = manifest
        self._seen: tuple[int, int] | None = None
        self._doc: dict[str, Any] = {}

    def entry(self, name: str) -> tuple[str, list[str]]:
        """(script URL, stylesheet URLs) of a Vite entry, or Unavailable when not built."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            raise Unavailable(NOT_BUILT) from None
        if self._seen != (st.st_mtime_ns, st.st_size):
            self._doc = json.loads(self.path.read_text(encoding="utf-8"))
            self._seen = (st.st_mtime_ns, st.st_size)
        chunk = self._doc.get(name)
        if not isinstance(chunk, dict):
            raise Unavailable(NOT_BUILT)
        return "/static/build/" + chunk["file"], [
            "/static/build/" + c for c in chunk.get("css", [])
        ]


def _first_thumbnail(doc: dict[str, Any]) -> str:
    thumbs = doc.get("thumbnail") or []
    if thumbs and isinstance(thumbs[0], dict):
        return str(thumbs[0].get("id") or thumbs[0].get("@id") or "")
    return ""


def landing_entries(presentation: Presentation) -> list[Entry]:
    """Every manifest (catalogue objects and registered ones), blocking."""
    presentation.sync()
    catalogue = {o.id: o for o in presentation.catalogue.list()}
    out: list[Entry] = []
    for record in presentation.store.list()[:LANDING_LIMIT]:
        body = presentation.store.read(record.id)
        try:
            doc = json.loads(body) if body else {}
        except json.JSONDecodeError:
            doc = {}
        objects = [catalogue[o] for o in record.objects if o in catalogue]
        kind = objects[0].kind if len(objects) == 1 else ("manifest" if not objects else "set")
        bands = sum(len(o.bands) for o in objects)
        out.append(
            Entry(record.id, record.label, kind, _first_thumbnail(doc), bands, record.objects)
        )
    return out


def _page(title: str, body: str, head: str = "") -> str:
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        '<link rel=icon href="data:,">'
        f"<title>{html.escape(title)}</title>{head}</head><body>{body}</body></html>"
    )


LANDING_CSS = (
    "<style>body{font:16px system-ui,sans-serif;margin:2em auto;max-width:64em;padding:0 1em}"
    "ul.objects{list-style:none;padding:0;display:grid;gap:1em;"
    "grid-template-columns:repeat(auto-fill,minmax(15em,1fr))}"
    "ul.objects li{border:1px solid #ccd;border-radius:6px;padding:.8em}"
    ".thumb{display:block;height:160px;background:#eef;text-align:center;margin-bottom:.5em}"
    ".thumb img{max-height:160px;max-width:100%}.kind{color:#557;font-size:.85em}"
    ".links a{margin-right:.6em}li.image{margin:.3em 0}</style>"
)

VIEWER_CSS = (
    "<style>html,body{height:100%;margin:0}body{display:flex;flex-direction:column;"
    "font:14px system-ui,sans-serif}header{display:flex;gap:1em;align-items:center;"
    "padding:.3em .8em;background:#223;color:#eee;flex-wrap:wrap}header a{color:#cdf}"
    "header form{margin-left:auto;display:flex;gap:.4em;align-items:center}"
    "#mirador{position:relative;flex:1;min-height:0}"
    "#uv{flex:1;min-height:0;width:100%}</style>"
)


def viewer_links(base: str, manifest: str, *, panel: str = "") -> str:
    m = quote(manifest, safe="")
    extra = f"&amp;panel={panel}" if panel else ""
    return (
        f'<a class=mirador href="{base}/viewer/mirador?manifest={m}{extra}">Mirador</a>'
        f'<a class=uv href="{base}/viewer/uv?manifest={m}">Universal Viewer</a>'
        f'<a class=manifest href="{html.escape(manifest)}">manifest</a>'
    )


def render_landing(base: str, entries: list[Entry], images: list[str]) -> str:
    items = []
    for e in entries:
        manifest = manifest_url(base, e.id)
        thumb = publish(e.thumbnail, base)
        img = f'<img loading=lazy alt="" src="{html.escape(thumb)}">' if thumb else ""
        kind = e.kind + (f", {e.bands} bands" if e.bands else "")
        items.append(
            f'<li class=object data-id="{html.escape(e.id)}">'
            f'<a class=thumb href="{base}/viewer/mirador?manifest={quote(manifest, safe="")}">'
            f"{img}</a><strong>{html.escape(e.label)}</strong> "
            f"<span class=kind>({html.escape(kind)})</span><div class=links>"
            f"{viewer_links(base, manifest, panel='layers' if e.bands else '')}"
            + (
                f'<a class=similar href="{base}/objects/{quote(e.id, safe="")}/similar">'
                "similar images</a>"
                if e.kind in ("image", "multispectral")
                else ""
            )
            + "</div></li>"
        )
    rows = []
    for name in images:
        ident = quote(name, safe="")
        rows.append(
            f"<li class=image><strong>{html.escape(name)}</strong> — "
            f'<a href="{base}/iiif/3/{ident}/info.json">info.json (3.0)</a> · '
            f'<a href="{base}/iiif/2/{ident}/info.json">info.json (2.1)</a> · '
            f'<a href="{base}/iiif/3/{ident}/full/!400,400/0/default.jpg">view</a></li>'
        )
    body = (
        "<h1>iiifsrv</h1>"
        f"<h2>Objects ({len(entries)})</h2>"
        + (
            f"<ul class=objects>{''.join(items)}</ul>"
            if items
            else "<p>No manifests yet: ingest images (<code>iiifsrv ingest</code>) or register "
            "a manifest.</p>"
        )
        + f'<p><a href="{base}/iiif/collection">IIIF collection</a> · '
        f'<a href="{base}/viewer/mirador">Mirador workspace</a></p>'
        f"<h2>Images under the image root ({len(images)})</h2><ul>{''.join(rows)}</ul>"
        "<p><small>iiifsrv</small></p>"
    )
    return _page("iiifsrv", body, LANDING_CSS)


# Sign-in for annotating: the token goes once to POST /session, which sets an HttpOnly cookie;
# page script never keeps it (see viewers/src/session.js).
SIGN_IN_FORM = (
    "<form id=sign-in><span id=session-state></span>"
    '<input name=token type=password placeholder="annotation token" autocomplete=off size=14>'
    "<button type=submit>Sign in</button>"
    "<button type=button id=sign-out hidden>Sign out</button></form>"
)


def _header(base: str, manifest: str, other: str, extra: str = "", more: str = "") -> str:
    parts = [f'<a href="{base}/">iiifsrv</a>']
    if manifest:
        m = quote(manifest, safe="")
        name = "Universal Viewer" if other == "uv" else "Mirador"
        parts.append(f'<a class=other href="{base}/viewer/{other}?manifest={m}">open in {name}</a>')
        parts.append(f'<a class=manifest href="{html.escape(manifest)}">manifest</a>')
    if more:
        parts.append(more)
    return f"<header>{' '.join(parts)}{extra}</header>"


EDITOR_MODES = {"", "on", "off"}


def check_editor_param(value: str | None) -> bool:
    """The ``editor`` query parameter of the Mirador page: ``off`` is the read-only reader."""
    if value not in EDITOR_MODES and value is not None:
        raise BadRequest("editor must be on or off")
    return value != "off"


def _mode_link(base: str, manifest: str, panel: str, editor: bool) -> str:
    """The link from one Mirador mode to the other, for the same manifest and panel."""
    query = f"manifest={quote(manifest, safe='')}" + (f"&amp;panel={panel}" if panel else "")
    if editor:
        return (
            f'<a class=reader href="{base}/viewer/mirador?{query}&amp;editor=off" title="Mirador '
            'alone, reading the annotation pages the manifest references">read-only Mirador</a>'
        )
    return f'<a class=editor href="{base}/viewer/mirador?{query}">Mirador with the editor</a>'


def render_mirador(
    base: str, manifest: str, panel: str, script: str, styles: list[str], editor: bool = True
) -> str:
    """Mirador with the annotation editor and the sign-in form, or (``editor`` false) a plain
    read-only Mirador that reads the annotation pages the manifest references."""
    head = "".join(f'<link rel=stylesheet href="{html.escape(s)}">' for s in styles) + VIEWER_CSS
    more = _mode_link(base, manifest, html.escape(panel), editor) if manifest else ""
    body = (
        _header(base, manifest, "uv", SIGN_IN_FORM if editor else "", more)
        + f'<div id=mirador data-manifest="{html.escape(manifest)}" data-base="{html.escape(base)}"'
        f' data-panel="{html.escape(panel)}" data-editor="{"on" if editor else "off"}"></div>'
        f'<script type=module src="{html.escape(script)}"></script>'
    )
    return _page("Mirador · iiifsrv", body, head)


def render_uv(base: str, manifest: str, script: str, logout: str = "") -> str:
    """Universal Viewer, started by a static module (src/uv.js) from data-manifest; no token
    form: this page shows other servers' manifests and never writes. With ``logout`` (access
    rules in force), a Sign out button: Universal Viewer 4.4 offers none once an image shows."""
    head = '<link rel=stylesheet href="/static/build/uv/uv.css">' + VIEWER_CSS
    if not manifest:  # Universal Viewer has no workspace to open manifests in
        body = _header(base, "", "mirador") + (
            "<p class=empty>Universal Viewer shows one manifest: open "
            "<code>/viewer/uv?manifest=</code><i>manifest URL</i>, or choose one on the "
            f'<a href="{base}/">start page</a>.</p>'
        )
        return _page("Universal Viewer · iiifsrv", body, head)
    sign_out = (
        f'<form><button type=button id=sign-out data-logout="{html.escape(logout)}">'
        "Sign out</button></form>"
        if logout
        else ""
    )
    body = (
        _header(base, manifest, "mirador", sign_out)
        + f'<div id=uv class=uv data-manifest="{html.escape(manifest)}"></div>'
        + '<script src="/static/build/uv/umd/UV.js"></script>'
        + f'<script type=module src="{html.escape(script)}"></script>'
    )
    return _page("Universal Viewer · iiifsrv", body, head)


COMPARE_ENTRY = "src/compare.js"
COMPARE_MIN, COMPARE_MAX = 2, 4


def check_compare_params(values: list[str]) -> list[str]:
    """The ``manifest`` parameters of the compare page: 2 to 4 absolute http(s) URLs."""
    if not COMPARE_MIN <= len(values) <= COMPARE_MAX:
        raise BadRequest(
            f"compare takes {COMPARE_MIN} to {COMPARE_MAX} manifest parameters, not {len(values)}"
        )
    checked = [check_manifest_param(v) for v in values]
    if not all(checked):
        raise BadRequest("manifest must be an absolute http(s) URL")
    return checked


def render_compare(base: str, manifests: list[str], script: str, styles: list[str]) -> str:
    """Mirador with one window per manifest; compare.js keeps their views in step."""
    head = "".join(f'<link rel=stylesheet href="{html.escape(s)}">' for s in styles) + VIEWER_CSS
    links = " ".join(
        f'<a href="{base}/viewer/mirador?manifest={quote(m, safe="")}">{i}: open alone</a>'
        for i, m in enumerate(manifests, 1)
    )
    sync = (
        '<form id=sync-form><label title="Keep zoom and pan in step between the windows">'
        "<input type=checkbox id=sync checked> Sync</label></form>"
    )
    body = (
        f'<header><a href="{base}/">iiifsrv</a> <strong>Compare</strong> {links}{sync}</header>'
        f'<div id=mirador data-manifests="{html.escape(json.dumps(manifests))}"'
        f' data-base="{html.escape(base)}"></div>'
        f'<script type=module src="{html.escape(script)}"></script>'
    )
    return _page("Compare · iiifsrv", body, head)


PANELS = {"", "info", "attribution", "canvas", "annotations", "search", "layers"}


def routes(
    presentation: Presentation, service: ImageService, access: Access | None = None
) -> list[BaseRoute]:
    """``/``, ``/viewer/mirador``, ``/viewer/uv``, ``/viewer/compare`` and ``/static/{path}``."""
    settings = presentation.settings
    assets = Assets()

    def base(request: Request) -> str:
        return base_url(request.scope, settings.public_url)

    async def landing(request: Request) -> Response:
        entries = await anyio.to_thread.run_sync(landing_entries, presentation)
        images = await anyio.to_thread.run_sync(lambda: service.list_images(limit=500))
        headers = dict(CORS_HEADERS)
        if access is not None and access.active:
            # Restricted objects and images are listed only to those who may see them.
            scope = request.scope
            ids = sorted({o for e in entries for o in e.objects})
            shown = dict(
                zip(ids, access.visible(scope, [Resource(o, o) for o in ids]), strict=True)
            )
            entries = [e for e in entries if all(shown[o].kind != DENY for o in e.objects)]
            decisions = access.visible(scope, [Resource(i) for i in images])
            images = [i for i, d in zip(images, decisions, strict=True) if d.kind != DENY]
            for d in [*shown.values(), *decisions]:
                protect(d, headers)
        return html_response(render_landing(base(request), entries, images), headers)

    async def mirador(request: Request) -> Response:
        manifest = check_manifest_param(request.query_params.get("manifest"))
        panel = request.query_params.get("panel", "")
        if panel not in PANELS:
            raise BadRequest(f"panel must be one of {', '.join(sorted(PANELS - {''}))}")
        editor = check_editor_param(request.query_params.get("editor"))
        script, styles = assets.entry(MIRADOR_ENTRY)
        page = render_mirador(base(request), manifest, panel, script, styles, editor)
        return html_response(page, {"Cache-Control": "no-cache"})

    async def uv(request: Request) -> Response:
        manifest = check_manifest_param(request.query_params.get("manifest"))
        if not (BUILD / "uv" / "umd" / "UV.js").is_file():
            raise Unavailable(NOT_BUILT)
        script, _styles = assets.entry(UV_ENTRY)
        logout = f"{base(request)}{LOGOUT}" if access is not None and access.active else ""
        return html_response(
            render_uv(base(request), manifest, script, logout), {"Cache-Control": "no-cache"}
        )

    async def compare(request: Request) -> Response:
        manifests = check_compare_params(request.query_params.getlist("manifest"))
        script, styles = assets.entry(COMPARE_ENTRY)
        page = render_compare(base(request), manifests, script, styles)
        return html_response(page, {"Cache-Control": "no-cache"})

    root = STATIC.resolve()

    async def static(request: Request) -> Response:
        rel = request.path_params["path"]
        target = (root / rel).resolve()
        if (
            root not in target.parents
            or any(p.startswith(".") for p in Path(rel).parts)
            or not target.is_file()
        ):
            raise NotFound("no such static file")
        st = target.stat()
        etag = f'"{st.st_mtime_ns:x}-{st.st_size:x}"'
        headers = {
            "Cache-Control": IMMUTABLE if is_hashed(rel) else SHORT,
            "ETag": etag,
            "Content-Type": content_type(rel),
            "X-Content-Type-Options": "nosniff",
            **CORS_HEADERS,
        }
        if headers["Content-Type"].startswith("text/html"):
            headers.update(HTML_HEADERS)
        if not_modified(etag, 0, request.headers.get("if-none-match"), None):
            return Response(status_code=304, headers=headers)
        return FileResponse(
            target, headers=headers, media_type=headers["Content-Type"], stat_result=st
        )

    return [
        Route("/", landing, methods=["GET", "HEAD"]),
        Route("/viewer/mirador", mirador, methods=["GET", "HEAD"]),
        Route("/viewer/uv", uv, methods=["GET", "HEAD"]),
        Route("/viewer/compare", compare, methods=["GET", "HEAD"]),
        Route("/static/{path:path}", static, methods=["GET", "HEAD"]),
    ]
