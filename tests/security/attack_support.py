"""Shared by the security tests: a real uvicorn server per annotation backend, a manifest to
annotate, the links a client follows, and a /health prober that measures the event loop."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from iiifsrv.settings import Settings
from tests.conftest import LiveServer, start_server, stop_server

ALICE = {"Authorization": "Bearer alice-token"}
BOB = {"Authorization": "Bearer bob-token"}
EDITOR = {"Authorization": "Bearer ed-token"}
# A real server (settings from the environment) refuses weak tokens: these are strong.
LIVE_TOKENS = "alice-Hq3vN8kLx2Rw7TyPm4Zc=alice,bob-Wd6sQ9fJb2Ge5UoKp7Ya=bob"
LIVE_ALICE = {"Authorization": "Bearer alice-Hq3vN8kLx2Rw7TyPm4Zc"}
LIVE_BOB = {"Authorization": "Bearer bob-Wd6sQ9fJb2Ge5UoKp7Ya"}


@contextmanager
def live(settings: Settings, **env: str) -> Iterator[LiveServer]:
    """A real uvicorn server on the settings' annotation backend (SQLite file or PostgreSQL),
    annotating only canvases of its own manifests."""
    extra = {
        "IIIFSRV_TOKENS": LIVE_TOKENS,
        "IIIFSRV_DATABASE_URL": settings.database_url,
        "IIIFSRV_ANNOTATION_CANVASES": "known",
        **env,
    }
    server = start_server(settings.images_path, settings.data_path, env=extra)
    try:
        yield server
    finally:
        stop_server(server)


def manifest(base: str, manifest_id: str, canvases: int = 1, width: Any = 1000) -> dict[str, Any]:
    """A small valid Presentation 3 manifest with ``canvases`` canvases at this server."""
    me = f"{base}/iiif/manifests/{manifest_id}"
    items = []
    for n in range(1, canvases + 1):
        canvas = f"{me}/canvas/{n}"
        items.append(
            {
                "id": canvas,
                "type": "Canvas",
                "width": width,
                "height": 700,
                "items": [
                    {
                        "id": f"{canvas}/page",
                        "type": "AnnotationPage",
                        "items": [
                            {
                                "id": f"{canvas}/page/image",
                                "type": "Annotation",
                                "motivation": "painting",
                                "body": {
                                    "id": f"{base}/iiif/3/flat/full/max/0/default.jpg",
                                    "type": "Image",
                                    "format": "image/jpeg",
                                },
                                "target": canvas,
                            }
                        ],
                    }
                ],
            }
        )
    return {
        "@context": "http://iiif.io/api/presentation/3/context.json",
        "id": me,
        "type": "Manifest",
        "label": {"en": [f"Manifest {manifest_id}"]},
        "items": items,
    }


class Links:
    """What a client learns from a manifest: its canvases, their annotation pages, and the
    Content Search 2.0 / 1.0 services."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.manifest = doc["id"]
        self.canvases = [c["id"] for c in doc["items"]]
        self.pages = [c["annotations"][0]["id"] for c in doc["items"]]
        services = doc["service"]
        self.search2 = next(s["id"] for s in services if s.get("type") == "SearchService2")
        self.search1 = next(s["@id"] for s in services if s.get("@type") == "SearchService1")
        self.autocomplete2 = next(
            s["service"][0]["id"] for s in services if s.get("type") == "SearchService2"
        )


def register(http: httpx.Client, doc: dict[str, Any], token: dict[str, str] = ALICE) -> Links:
    """PUT the manifest, then read it back from the Location the server gave."""
    manifest_id = doc["id"].rsplit("/", 1)[1]
    r = http.put(f"/iiif/manifests/{manifest_id}", json=doc, headers=token)
    assert r.status_code == 201, r.text
    return Links(http.get(r.headers["location"]).json())


# The prober runs in a process of its own, so that what it measures is the server, not the
# test process's own threads competing for its GIL.
PROBE = """
import json, sys, threading, time, httpx
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
worst, count = 0.0, 0
with httpx.Client(timeout=30) as http:
    assert http.get(sys.argv[1] + "/health").status_code == 200
    print("ready", flush=True)
    while not stop.is_set():
        start = time.monotonic()
        ok = http.get(sys.argv[1] + "/health").status_code == 200
        worst, count = max(worst, time.monotonic() - start), count + (1 if ok else 0)
        stop.wait(0.02)
print(json.dumps({"worst": worst, "count": count}))
"""


class HealthProbe:
    """GETs /health every 20 ms (from another process) and keeps the slowest latency."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.worst = 0.0
        self.count = 0
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> HealthProbe:
        self._proc = subprocess.Popen(
            [sys.executable, "-c", PROBE, self.url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        # Its first answer: the probe covers everything that follows.
        assert self._proc.stdout is not None
        assert self._proc.stdout.readline() == "ready\n"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._proc is not None
        out, _ = self._proc.communicate("", timeout=60)
        assert self._proc.returncode == 0
        result = json.loads(out)
        self.worst, self.count = float(result["worst"]), int(result["count"])
