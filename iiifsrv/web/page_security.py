"""The security headers of every HTML page iiifsrv serves (landing page, viewer pages, any
text/html static file): a strict Content-Security-Policy, nosniff and the Referrer-Policy.

HTTP layer: imports Starlette's HTMLResponse only. Scripts run only from this origin (no inline
script, no inline event handler, no eval), so HTML injected into a viewer cannot run script.
"""

from __future__ import annotations

from starlette.responses import HTMLResponse

# What the viewers need: images, manifests, info.json and A/V from any IIIF server; MUI/emotion
# and Universal Viewer set inline styles. Frames: only this server's pages, i.e. the IIIF Auth
# token service, which both viewers load in a hidden iframe (another server's token service
# would need third-party cookies, which today's browsers block anyway: see the README).
CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' http: https: data: blob:",
        "media-src 'self' http: https: data: blob:",
        "connect-src 'self' http: https: data: blob:",
        "font-src 'self' data:",
        "worker-src 'self' blob:",
        "frame-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    ]
)

HTML_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "strict-origin-when-cross-origin",
    "X-Frame-Options": "DENY",
}


def html_response(body: str, headers: dict[str, str] | None = None) -> HTMLResponse:
    """An HTML page with the security headers (``headers`` may add, not remove them)."""
    return HTMLResponse(body, headers={**(headers or {}), **HTML_HEADERS})
