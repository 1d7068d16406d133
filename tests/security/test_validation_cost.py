"""Security review #13: expensive manifest validation.

The attack: bob PUT a 9.2 MB manifest with 30,000 canvases, each with ``"width": "x"``; the
server collected and sorted every schema error (14 s of CPU) and /health slowed. Now the canvas
count is capped (``manifest_max_canvases``), validation stops at MAX_ERRORS, and parsing and
validation run in threads, two at a time. Real uvicorn; manifests do not use the annotation
backend, so this runs once.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from iiifsrv.presentation.validate import MAX_ERRORS
from iiifsrv.settings import Settings
from tests.conftest import start_server, stop_server
from tests.security.attack_support import LIVE_BOB, LIVE_TOKENS, HealthProbe


def bad_manifest(base: str, manifest_id: str, canvases: int) -> bytes:
    """The review's manifest: every canvas has ``"width": "x"`` (bare canvases, so that the
    bounded copy stays a few MB)."""
    me = f"{base}/iiif/manifests/{manifest_id}"
    items = [
        {"id": f"{me}/canvas/{n}", "type": "Canvas", "width": "x", "height": 700, "items": []}
        for n in range(canvases)
    ]
    doc = {
        "@context": "http://iiif.io/api/presentation/3/context.json",
        "id": me,
        "type": "Manifest",
        "label": {"en": ["Bad"]},
        "items": items,
    }
    return json.dumps(doc).encode()


def test_huge_bad_manifests_are_refused_cheaply(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    settings = Settings()
    server = start_server(
        tmp_path / "images", tmp_path / "data", env={"IIIFSRV_TOKENS": LIVE_TOKENS}
    )
    try:
        review = bad_manifest(server.url, "huge", 30_000)
        assert len(review) < settings.manifest_max_bytes
        under_cap = bad_manifest(server.url, "big", 9_000)
        headers = {**LIVE_BOB, "Content-Type": "application/json"}
        with (
            httpx.Client(base_url=server.url, timeout=120) as http,
            HealthProbe(server.url) as probe,
        ):
            # The review's manifest: refused for its size, with one clear problem.
            r = http.put("/iiif/manifests/huge", content=review, headers=headers)
            assert r.status_code == 400
            assert r.json() == [{"path": "/items", "message": "30000 items; at most 10000 allowed"}]
            # Under the canvas cap every canvas is wrong: the report stops at MAX_ERRORS.
            r = http.put("/iiif/manifests/big", content=under_cap, headers=headers)
            assert r.status_code == 400
            problems = r.json()
            assert len(problems) == MAX_ERRORS
            assert all(
                p["path"].startswith("/items/") and p["path"].endswith("/width") for p in problems
            )

            # Several at once queue for the validation threads; the server keeps answering.
            def put(n: int) -> int:
                with httpx.Client(base_url=server.url, timeout=120) as own:
                    return own.put(
                        f"/iiif/manifests/big{n}", content=under_cap, headers=headers
                    ).status_code

            with ThreadPoolExecutor(4) as pool:
                assert list(pool.map(put, range(4))) == [400] * 4
            # Larger than manifest_max_bytes: 413 before anything is parsed.
            too_big = b" " * (settings.manifest_max_bytes + 1)
            r = http.put("/iiif/manifests/big", content=too_big, headers=headers)
            assert r.status_code == 413
            assert r.text == f"a manifest may have at most {settings.manifest_max_bytes} bytes\n"
        assert probe.count >= 5
        assert probe.worst < 1.0, f"/health took {probe.worst:.2f} s during the uploads"
    finally:
        stop_server(server)
