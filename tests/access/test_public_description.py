"""Manifests, collections and the change stream are public descriptions, protected content:
their labels stay visible to everyone, but nothing in them shows protected pixels. Collections
and the activity stream carry no thumbnails at all; every image a manifest links to (its
thumbnails and image services, canvases' thumbnails included) answers an anonymous reader 401
or 403 for a restricted object, and no more than the degraded size for a degraded one. URLs are
taken from what the server publishes."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.access.conftest import RULES

pytestmark = pytest.mark.anyio
Clients = Callable[..., httpx.AsyncClient]
DEGRADED_MAX = int(RULES.split("max_size = ")[1].split()[0])


def walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def image_links(manifest: dict[str, Any]) -> set[str]:
    """Every image URL a manifest publishes: thumbnails and painted images' ids."""
    out = set()
    for node in walk(manifest):
        for thumb in node.get("thumbnail", []):
            out.add(str(thumb["id"]))
        if node.get("type") == "Image" and "/iiif/" in str(node.get("id", "")):
            out.add(str(node["id"]))
    return out


async def test_descriptions_are_public_and_show_no_protected_pixels(clients: Clients) -> None:
    anon = clients()
    collection = (await anon.get("/iiif/collection")).json()
    by_name = {m["id"].rsplit("/", 1)[1]: m for m in collection["items"]}
    # collections list every manifest, restricted ones too, by id, type and label only
    assert {"palimpsest", "large"} <= set(by_name)
    assert all(set(m) == {"id", "type", "label"} for m in collection["items"])
    for url in ("/iiif/activity", "/iiif/activity/page/0"):
        stream = (await anon.get(url)).json()
        assert not any("thumbnail" in n for n in walk(stream)), url
    for name, denied in (("palimpsest", True), ("large", False)):
        manifest = (await anon.get(by_name[name]["id"])).json()
        assert manifest["label"]  # the description stays public
        links = image_links(manifest)
        assert links, name
        shown = 0
        for url in links:
            r = await anon.get(url)
            if denied:
                assert r.status_code in (401, 403), url
                continue
            # degraded: thumbnails open, never larger than the degraded size; sharper refused
            if r.status_code == 200:
                image = Image.open(io.BytesIO(r.content))
                assert max(image.size) <= DEGRADED_MAX, url
                shown += 1
            else:
                assert r.status_code in (401, 403), url
        assert denied or shown, f"{name}: its thumbnail should show (the public tier)"
