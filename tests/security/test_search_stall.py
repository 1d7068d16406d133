"""Security review #4: stored large SVG selectors stalled the event loop during Content Search.

The attack: a token holder stores annotations with huge SVG selectors containing a common word;
any anonymous search then re-parsed every SVG on the event loop (one GET froze the worker for
7.9 s). Now the selector is capped (256 KiB, 1000 elements), its region is computed once when
written, and response bodies are built in threads. Real uvicorn, SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx

from iiifsrv.annotations.model import SVG_MAX_BYTES, SVG_MAX_ELEMENTS
from iiifsrv.settings import Settings
from tests.annotations.conftest import backend_settings, pg_schema  # noqa: F401 (fixtures)
from tests.security.attack_support import (
    LIVE_ALICE,
    LIVE_BOB,
    HealthProbe,
    live,
    manifest,
    register,
)

SVG_OPEN = "<svg xmlns='http://www.w3.org/2000/svg'>"
HITS = 20


def annotot(canvas: str, text: str, svg: str) -> dict[str, Any]:
    """What Mirador's Annotot adapter POSTs: the annotation as a JSON string in ``data``."""
    ident = f"urn:uuid:{uuid.uuid4()}"
    data = {
        "id": ident,
        "type": "Annotation",
        "motivation": "commenting",
        "body": {"type": "TextualBody", "value": text},
        "target": {"source": canvas, "selector": {"type": "SvgSelector", "value": svg}},
    }
    return {"annotation": {"canvas": canvas, "uuid": ident, "data": json.dumps(data)}}


def big_path(size: int) -> str:
    """One <path> whose points span the box 10,20 to 610,420, about ``size`` bytes long."""
    points: list[str] = []
    length = 0
    while length < size - 100:
        points.append(f"{10 + len(points) % 601} {20 + (len(points) * 7) % 401}")
        length += len(points[-1]) + 3
    points += ["610 420", "10 20"]
    return f"{SVG_OPEN}<path d='M {' L '.join(points)}'/></svg>"


def test_big_svg_selectors_do_not_stall_search(backend_settings: Settings) -> None:  # noqa: F811
    with live(backend_settings) as server, httpx.Client(base_url=server.url, timeout=60) as http:
        links = register(http, manifest(server.url, "stall"), LIVE_ALICE)
        canvas = links.canvases[0]

        # The review's annotation: 330,000 tiny paths, 9.9 MB. A bounded 1 MB copy of it (past
        # the selector cap, well inside the 10 MiB body limit) is refused with a clear 413.
        review = SVG_OPEN + "<path d='M1 2 3 4 5 6 7 8'/>" * 35_000 + "</svg>"
        assert len(review) > 3 * SVG_MAX_BYTES
        r = http.post("/annotot", json=annotot(canvas, "needle haystack", review), headers=LIVE_BOB)
        assert r.status_code == 413, r.text
        assert r.text.startswith(f"an SvgSelector may have at most {SVG_MAX_BYTES} bytes")
        # Small in bytes but many elements: 400.
        swarm = SVG_OPEN + "<path d='M1 2 3 4'/>" * (SVG_MAX_ELEMENTS + 1) + "</svg>"
        assert len(swarm) < SVG_MAX_BYTES
        r = http.post("/annotot", json=annotot(canvas, "needle haystack", swarm), headers=LIVE_BOB)
        assert r.status_code == 400, r.text
        assert r.text.startswith(f"an SvgSelector may have at most {SVG_MAX_ELEMENTS} elements")

        # What is still allowed, at the cap, many times over: HITS selectors of ~250 KiB.
        svg = big_path(SVG_MAX_BYTES - 4096)
        assert SVG_MAX_BYTES - 8192 < len(svg) <= SVG_MAX_BYTES
        for n in range(HITS):
            body = annotot(canvas, f"needle haystack {n}", svg)
            assert http.post("/annotot", json=body, headers=LIVE_BOB).status_code == 200

        with HealthProbe(server.url) as probe:
            for _ in range(3):
                r = http.get(links.search2, params={"q": "needle"})
                assert r.status_code == 200
                items = r.json()["items"]
                assert len(items) == HITS
                assert {a["target"] for a in items} == {f"{canvas}#xywh=10,20,600,400"}
                r = http.get(links.search1, params={"q": "needle"})
                assert r.status_code == 200
                assert {a["on"] for a in r.json()["resources"]} == {f"{canvas}#xywh=10,20,600,400"}
                r = http.get(links.autocomplete2, params={"q": "need"})
                assert [t["value"] for t in r.json()["items"]] == ["needle"]
                # The canvas's page the manifest links, and what Mirador's Annotot adapter reads.
                assert len(http.get(links.pages[0]).json()["items"]) == HITS
                page = http.get("/annotot/pages", params={"uri": canvas}).json()
                assert len(page["items"]) == HITS
        assert probe.count >= 5
        assert probe.worst < 1.0, f"/health took {probe.worst:.2f} s during the searches"
