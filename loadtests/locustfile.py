"""Locust users that behave like deep-zoom viewers (Mirador, Universal Viewer, OpenSeadragon).

Each user opens an image: info.json, a thumbnail from `sizes`, then tiles level by level while
zooming into a point, then pans at the finest levels; a portal user only embeds thumbnails.
Run against a server on this machine only, bounded in time, for example:

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/locust -f loadtests/locustfile.py --headless -H http://127.0.0.1:8182 \
        -u 50 -r 10 -t 60s --only-summary

IMAGES (comma-separated identifiers, default `large`) chooses the images; `/iiif/3` is used.
"""

from __future__ import annotations

import math
import os
import random
from typing import Any

from locust import HttpUser, between, task

IMAGES = [i for i in os.environ.get("IMAGES", "large").split(",") if i]
VIEW_W, VIEW_H = 1600, 900


def tiles_for_view(info: dict[str, Any], cx: float, cy: float, sf: int) -> list[str]:
    """The tile requests covering a VIEW_W x VIEW_H viewport centred on (cx, cy) at scale sf."""
    w, h = info["width"], info["height"]
    tile = info["tiles"][0]["width"]
    step = tile * sf
    x0 = max(0, cx - VIEW_W * sf / 2)
    y0 = max(0, cy - VIEW_H * sf / 2)
    out = []
    for ty in range(int(y0 // step), int(min(h - 1, y0 + VIEW_H * sf) // step) + 1):
        for tx in range(int(x0 // step), int(min(w - 1, x0 + VIEW_W * sf) // step) + 1):
            x, y = tx * step, ty * step
            rw, rh = min(step, w - x), min(step, h - y)
            out.append(f"{x},{y},{rw},{rh}/{math.ceil(rw / sf)},/0/default.jpg")
    return out


class Viewer(HttpUser):
    """Opens an image and explores it like a scholar in Mirador."""

    wait_time = between(0.05, 0.5)
    weight = 4

    def _get(self, path: str, name: str) -> Any:
        with self.client.get(path, name=name, catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"{response.status_code} for {path}")
            return response

    @task
    def explore(self) -> None:
        ident = random.choice(IMAGES)
        base = f"/iiif/3/{ident}"
        info = self._get(f"{base}/info.json", "info.json").json()
        smallest = info["sizes"][0]
        self._get(
            f"{base}/full/{smallest['width']},{smallest['height']}/0/default.jpg", "thumbnail"
        )
        factors = sorted(info["tiles"][0]["scaleFactors"], reverse=True)
        cx = random.uniform(0.2, 0.8) * info["width"]
        cy = random.uniform(0.2, 0.8) * info["height"]
        for sf in factors:  # zoom in
            for tile in tiles_for_view(info, cx, cy, sf):
                self._get(f"{base}/{tile}", f"tile sf{sf}")
        for _ in range(3):  # pan at the two finest levels
            cx += random.uniform(-1, 1) * VIEW_W
            cy += random.uniform(-1, 1) * VIEW_H
            for sf in factors[-2:]:
                for tile in tiles_for_view(info, cx, cy, sf):
                    self._get(f"{base}/{tile}", f"tile sf{sf}")


class Portal(HttpUser):
    """A web portal embedding thumbnails and a medium view by plain IIIF URLs."""

    wait_time = between(0.1, 1.0)
    weight = 1

    @task
    def embed(self) -> None:
        ident = random.choice(IMAGES)
        width = random.choice([150, 200, 300, 400, 800])
        self.client.get(f"/iiif/3/{ident}/full/{width},/0/default.jpg", name="portal view")
