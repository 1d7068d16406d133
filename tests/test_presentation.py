"""Presentation API over HTTP (in-process): serving, registration, collections, change stream."""

from __future__ import annotations

import copy
import gzip
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import pyvips

from iiifsrv.catalogue import Catalogue, CatalogueObject
from iiifsrv.presentation import validate
from iiifsrv.settings import Settings
from iiifsrv.web.app import create_app
from tests.presentation_support import TOKENS, auth, grey_png, sample_objects, write_wav

pytestmark = pytest.mark.anyio

PRESENTATION_TYPE = 'application/ld+json;profile="http://iiif.io/api/presentation/3/context.json"'
EXAMPLES = Path(__file__).parent.parent / "manifests"


@pytest.fixture
def images(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    (root / "palimpsest").mkdir(parents=True)
    (root / "av").mkdir()
    rgb = pyvips.Image.black(300, 200).bandjoin([pyvips.Image.black(300, 200) + 90] * 2) + 40
    rgb.cast("uchar").copy(interpretation="srgb").jpegsave(str(root / "plain.jpg"))
    for i, name in enumerate(("IR940", "R650", "UV365", "truecolor", "falsecolor")):
        grey_png(root / "palimpsest" / f"{name}.png", 120, 160, 40 * i)
    write_wav(root / "av" / "tone.wav", seconds=1.0)
    return root


@pytest.fixture
def settings(tmp_path: Path, images: Path) -> Settings:
    return Settings(images=str(images), data=str(tmp_path / "data"), tokens=TOKENS)


@pytest.fixture
def catalogue(settings: Settings) -> Catalogue:
    cat = Catalogue(settings.data_path / "catalogue.sqlite3")
    for obj in sample_objects():
        cat.upsert(obj)
    return cat


@pytest.fixture
async def client(settings: Settings, catalogue: Catalogue) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _path(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


async def _get(client: httpx.AsyncClient, url: str) -> dict[str, Any]:
    response = await client.get(_path(url))
    assert response.status_code == 200, (url, response.text)
    doc: dict[str, Any] = response.json()
    return doc


def _example() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((EXAMPLES / "example-map.json").read_text("utf-8"))
    return doc


async def test_every_manifest_and_collection_validates(client: httpx.AsyncClient) -> None:
    """Crawl from the top collection: every collection, page and manifest is valid."""
    await client.post("/iiif/manifests", json=_example(), headers=auth())
    seen: set[str] = set()
    queue = ["http://testserver/iiif/collection"]
    kinds: dict[str, int] = {}
    while queue:
        url = queue.pop()
        if url in seen:
            continue
        seen.add(url)
        doc = await _get(client, url)
        assert validate.errors(doc) == [], url
        assert validate.is_valid(doc), url  # the whole schema, as the IIIF validator runs it
        kinds[doc["type"]] = kinds.get(doc["type"], 0) + 1
        if doc["type"] == "Collection":
            queue += [item["id"] for item in doc["items"]]
    assert kinds["Manifest"] == 4  # plain, palimpsest, tone, the registered example
    assert kinds["Collection"] >= 3  # top, institution, project


async def test_manifest_headers_cors_etag_gzip(client: httpx.AsyncClient) -> None:
    response = await client.get("/iiif/manifests/palimpsest", headers={"Accept-Encoding": "br"})
    assert response.status_code == 200
    assert response.headers["content-type"] == PRESENTATION_TYPE
    assert response.headers["access-control-allow-origin"] == "*"
    assert "content-encoding" not in response.headers
    doc = response.json()
    assert doc["id"] == "http://testserver/iiif/manifests/palimpsest"
    etag = response.headers["etag"]
    again = await client.get(
        "/iiif/manifests/palimpsest", headers={"If-None-Match": etag, "Accept-Encoding": "br"}
    )
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == etag
    zipped = await client.get("/iiif/manifests/palimpsest", headers={"Accept-Encoding": "gzip"})
    assert zipped.headers["content-encoding"] == "gzip"
    assert "Accept-Encoding" in zipped.headers["vary"]
    assert zipped.json() == doc  # httpx decodes it
    head = await client.head("/iiif/manifests/palimpsest", headers={"Accept-Encoding": "br"})
    assert head.status_code == 200 and head.content == b""
    preflight = await client.options(
        "/iiif/manifests/palimpsest",
        headers={"Origin": "https://viewer.example", "Access-Control-Request-Method": "PUT"},
    )
    assert preflight.status_code == 204
    assert "PUT" in preflight.headers["access-control-allow-methods"]
    assert "Authorization" in preflight.headers["access-control-allow-headers"]


async def test_gzip_body_is_really_gzip(settings: Settings, catalogue: Catalogue) -> None:
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with (
        httpx.AsyncClient(transport=transport, base_url="http://t") as c,
        c.stream(
            "GET", "/iiif/manifests/palimpsest", headers={"Accept-Encoding": "gzip"}
        ) as response,
    ):
        raw = b"".join([chunk async for chunk in response.aiter_raw()])
    assert json.loads(gzip.decompress(raw))["type"] == "Manifest"


async def test_ids_use_public_url(settings: Settings, catalogue: Catalogue) -> None:
    public = Settings(**{**settings.as_dict(), "public_url": "https://iiif.example.org/base"})
    transport = httpx.ASGITransport(app=create_app(public))
    async with httpx.AsyncClient(transport=transport, base_url="http://internal") as c:
        doc = (await c.get("/iiif/manifests/plain")).json()
        top = (await c.get("/iiif/collection")).json()
    assert doc["id"] == "https://iiif.example.org/base/iiif/manifests/plain"
    assert "internal" not in json.dumps(doc) and "iiifsrv.invalid" not in json.dumps(doc)
    assert top["id"] == "https://iiif.example.org/base/iiif/collection"


async def test_thumbnail_is_a_real_image_of_our_image_api(client: httpx.AsyncClient) -> None:
    for manifest in ("plain", "palimpsest"):
        doc = (await client.get(f"/iiif/manifests/{manifest}")).json()
        thumb = doc["thumbnail"][0]
        response = await client.get(_path(thumb["id"]))
        assert response.status_code == 200, thumb["id"]
        assert response.headers["content-type"] == "image/jpeg"
    body = doc["items"][0]["items"][0]["items"][0]["body"]
    for item in body["items"][2:]:  # the bands exist in the image root
        info = await client.get(_path(item["service"][0]["id"] + "/info.json"))
        assert info.status_code == 200


async def test_audio_manifest_reads_duration_from_file(client: httpx.AsyncClient) -> None:
    doc = (await client.get("/iiif/manifests/tone")).json()
    assert validate.errors(doc) == []
    canvas = doc["items"][0]
    assert canvas["duration"] == pytest.approx(1.0)
    body = canvas["items"][0]["items"][0]["body"]
    assert body["type"] == "Sound" and body["format"] == "audio/wav"
    assert (await client.get(_path(body["id"]))).status_code == 200


async def test_unknown_manifest_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/iiif/manifests/nothing-here")
    assert response.status_code == 404
    assert (await client.get("/iiif/manifests/..%2F..%2Fetc")).status_code in (400, 404)
    assert (await client.get("/iiif/collection/institution/nobody")).status_code == 404
    assert (await client.get("/iiif/activity/page/99")).status_code == 404


# -- registration ----------------------------------------------------------------------------


async def test_register_valid_manifest_201_and_retrievable(client: httpx.AsyncClient) -> None:
    response = await client.post("/iiif/manifests", json=_example(), headers=auth())
    assert response.status_code == 201, response.text
    location = response.headers["location"]
    assert location == "http://testserver/iiif/manifests/example-map"
    served = await client.get(_path(location))
    assert served.status_code == 200
    doc = served.json()
    assert doc["id"] == location
    # Foreign ids are kept as given; each canvas gains the reference to its annotation page
    # (an AnnotationPage with no `items`, so Mirador fetches it).
    for served_canvas, given in zip(doc["items"], _example()["items"], strict=True):
        refs = served_canvas.pop("annotations")
        assert [set(r) for r in refs] == [{"id", "type"}] and refs[0]["type"] == "AnnotationPage"
        assert served_canvas == given
    assert validate.errors(doc) == []
    again = await client.post("/iiif/manifests", json=_example(), headers=auth())
    assert again.status_code == 409


async def test_register_with_slug_and_percent_encoded_id(client: httpx.AsyncClient) -> None:
    headers = {**auth("tok-eve"), "Slug": "maps/1"}  # only editors may use "/" in an id
    response = await client.post("/iiif/manifests", json=_example(), headers=headers)
    assert response.status_code == 201
    assert response.headers["location"].endswith("/iiif/manifests/maps%2F1")
    assert (await client.get("/iiif/manifests/maps%2F1")).status_code == 200


async def test_register_invalid_manifest_lists_errors(client: httpx.AsyncClient) -> None:
    bad = _example()
    bad["label"] = "not a language map"
    del bad["items"][0]["width"]
    bad["items"][0]["height"] = -5
    response = await client.post("/iiif/manifests", json=bad, headers=auth())
    assert response.status_code == 400
    errors = response.json()
    assert isinstance(errors, list) and errors
    assert all(set(e) == {"path", "message"} for e in errors)
    paths = {e["path"] for e in errors}
    assert "/label" in paths
    assert "/items/0/height" in paths
    assert (await client.get("/iiif/manifests/example-map")).status_code == 404
    not_json = await client.post("/iiif/manifests", content=b"{oops", headers=auth())
    assert not_json.status_code == 400
    collection = {**_example(), "type": "Collection"}
    assert (
        await client.post("/iiif/manifests", json=collection, headers=auth())
    ).status_code == 400


async def test_writes_need_a_known_bearer_token(client: httpx.AsyncClient) -> None:
    response = await client.post("/iiif/manifests", json=_example())
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    wrong = await client.post("/iiif/manifests", json=_example(), headers=auth("nope"))
    assert wrong.status_code == 401
    assert (await client.put("/iiif/manifests/x", json=_example())).status_code == 401
    assert (await client.delete("/iiif/manifests/plain")).status_code == 401


async def test_only_owner_or_editor_may_change(client: httpx.AsyncClient) -> None:
    assert (
        await client.post("/iiif/manifests", json=_example(), headers=auth())
    ).status_code == 201
    changed = _example()
    changed["label"] = {"en": ["Changed"]}
    url = "/iiif/manifests/example-map"
    assert (await client.put(url, json=changed, headers=auth("tok-bob"))).status_code == 403
    assert (await client.delete(url, headers=auth("tok-bob"))).status_code == 403
    assert (await client.put(url, json=changed, headers=auth("tok-eve"))).status_code == 200
    assert (await client.get(url)).json()["label"] == {"en": ["Changed"]}
    assert (await client.delete(url, headers=auth("tok-alice"))).status_code == 204
    assert (await client.get(url)).status_code == 404
    # catalogue-built manifests are removed with their catalogue object, not by DELETE
    catalogue_built = await client.delete("/iiif/manifests/plain", headers=auth("tok-eve"))
    assert catalogue_built.status_code == 409


async def test_build_request_makes_manifest_from_catalogue_objects(
    client: httpx.AsyncClient,
) -> None:
    request = {"build": {"objects": ["plain", "palimpsest"], "id": "pair", "label": "Pair"}}
    response = await client.post("/iiif/manifests", json=request, headers=auth())
    assert response.status_code == 201, response.text
    doc = response.json()
    assert doc["id"] == "http://testserver/iiif/manifests/pair"
    assert doc["label"] == {"en": ["Pair"]}
    assert len(doc["items"]) == 2
    assert validate.errors(doc) == []
    unknown = {"build": {"objects": ["missing"]}}
    assert (await client.post("/iiif/manifests", json=unknown, headers=auth())).status_code == 400


async def test_failed_write_leaves_previous_version_served(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (
        await client.post("/iiif/manifests", json=_example(), headers=auth())
    ).status_code == 201
    before = (await client.get("/iiif/manifests/example-map")).content
    changed = _example()
    changed["label"] = {"en": ["Half written"]}

    from iiifsrv.presentation import files as store_module

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store_module.os, "fsync", broken_fsync)
    response = await client.put("/iiif/manifests/example-map", json=changed, headers=auth())
    assert response.status_code == 503
    monkeypatch.undo()
    after = await client.get("/iiif/manifests/example-map")
    assert after.status_code == 200 and after.content == before
    stream = (await client.get("/iiif/activity/page/0")).json()["orderedItems"]
    assert [a["type"] for a in stream if a["object"]["id"].endswith("/example-map")] == ["Create"]
    folder = Path(client._transport.app.state.settings.data) / "manifests"  # type: ignore[attr-defined]
    assert not [p for p in os.listdir(folder) if p.endswith(".part")]


async def test_put_replace_then_retrievable(client: httpx.AsyncClient) -> None:
    first = await client.put("/iiif/manifests/new-one", json=_example(), headers=auth())
    assert first.status_code == 201
    changed = _example()
    changed["summary"] = {"en": ["Now with a summary"]}
    second = await client.put("/iiif/manifests/new-one", json=changed, headers=auth())
    assert second.status_code == 200
    assert (await client.get("/iiif/manifests/new-one")).json()["summary"] == changed["summary"]


# -- change discovery ------------------------------------------------------------------------


async def _all_activities(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    stream = (await client.get("/iiif/activity")).json()
    assert stream["type"] == "OrderedCollection"
    items: list[dict[str, Any]] = []
    url: str | None = stream["first"]["id"]
    while url:
        page = (await client.get(_path(url))).json()
        assert page["type"] == "OrderedCollectionPage"
        items += page["orderedItems"]
        url = page.get("next", {}).get("id")
    assert len(items) == stream["totalItems"]
    return items


async def test_change_stream_lists_create_update_delete_in_order(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/iiif/activity")
    assert response.headers["content-type"].startswith("application/ld+json")
    assert response.headers["access-control-allow-origin"] == "*"
    stream = response.json()
    assert stream["@context"] == "http://iiif.io/api/discovery/1/context.json"
    assert "last" in stream
    url = "/iiif/manifests/example-map"
    assert (
        await client.post("/iiif/manifests", json=_example(), headers=auth())
    ).status_code == 201
    changed = _example()
    changed["label"] = {"en": ["v2"]}
    assert (await client.put(url, json=changed, headers=auth())).status_code == 200
    assert (await client.delete(url, headers=auth())).status_code == 204
    items = await _all_activities(client)
    mine = [a for a in items if a["object"]["id"] == f"http://testserver{url}"]
    assert [a["type"] for a in mine] == ["Create", "Update", "Delete"]
    assert all(a["object"]["type"] == "Manifest" and a["endTime"].endswith("Z") for a in mine)
    times = [a["endTime"] for a in items]
    assert times == sorted(times)  # oldest first
    created = {a["object"]["id"].rsplit("/", 1)[1] for a in items if a["type"] == "Create"}
    assert {"plain", "palimpsest", "tone"} <= created


async def test_catalogue_change_rebuilds_manifest_and_logs_update(
    client: httpx.AsyncClient, catalogue: Catalogue
) -> None:
    before = (await client.get("/iiif/manifests/plain")).json()
    old = catalogue.get("plain")
    assert old is not None
    catalogue.upsert(
        CatalogueObject.from_json(
            {**old.to_json(), "label": "Renamed", "updated": "2026-02-02T00:00:00Z"}
        )
    )
    after = (await client.get("/iiif/manifests/plain")).json()
    assert before["label"] != after["label"] == {"en": ["Renamed"]}
    catalogue.remove("tone")
    assert (await client.get("/iiif/manifests/tone")).status_code == 404
    items = await _all_activities(client)
    plain = [a["type"] for a in items if a["object"]["id"].endswith("/manifests/plain")]
    tone = [a["type"] for a in items if a["object"]["id"].endswith("/manifests/tone")]
    assert plain == ["Create", "Update"] and tone == ["Create", "Delete"]


async def test_activity_pages_link_and_change_stream_survives_restart(
    settings: Settings, catalogue: Catalogue
) -> None:
    from iiifsrv.presentation.service import Presentation

    presentation = Presentation(settings, activity_page_size=2)
    presentation.sync()
    stream = presentation.activity_stream("http://h")
    assert stream["totalItems"] == 3
    assert stream["last"]["id"] == "http://h/iiif/activity/page/1"
    first = presentation.activity_page("http://h", 0)
    assert first["next"]["id"] == stream["last"]["id"] and "prev" not in first
    reopened = Presentation(settings, activity_page_size=2)
    last = reopened.activity_page("http://h", 1)
    assert last["prev"]["id"] == "http://h/iiif/activity/page/0" and "next" not in last
    assert last["startIndex"] == 2 and len(last["orderedItems"]) == 1


# -- collections -----------------------------------------------------------------------------


async def test_collections_group_by_institution_and_project(client: httpx.AsyncClient) -> None:
    top = (await client.get("/iiif/collection")).json()
    assert top["type"] == "Collection"
    ids = [item["id"] for item in top["items"]]
    assert "http://testserver/iiif/collection/institution/example-library" in ids
    assert "http://testserver/iiif/collection/project/sound-archive" in ids
    library = (await client.get("/iiif/collection/institution/example-library")).json()
    assert sorted(i["id"].rsplit("/", 1)[1] for i in library["items"]) == ["palimpsest", "plain"]
    assert all(i["type"] == "Manifest" for i in library["items"])


async def test_large_collection_is_paged(settings: Settings, catalogue: Catalogue) -> None:
    from iiifsrv.presentation.service import Presentation

    presentation = Presentation(settings, collection_page_size=2)
    top = presentation.collection("http://h", "", "", 0)
    pages = [i for i in top["items"] if "?page=" in i["id"]]
    assert [p["id"] for p in pages] == [
        "http://h/iiif/collection?page=1",
        "http://h/iiif/collection?page=2",
    ]
    second = presentation.collection("http://h", "", "", 2)
    assert validate.errors(second) == []
    assert second["partOf"][0]["id"] == "http://h/iiif/collection"
    assert [i["id"].rsplit("/", 1)[1] for i in second["items"]] == ["tone"]


async def test_example_manifests_in_repository_are_valid() -> None:
    files = sorted(EXAMPLES.glob("*.json"))
    assert files
    for path in files:
        doc = json.loads(path.read_text("utf-8"))
        assert validate.errors(doc, "Manifest") == [], path.name
        assert copy.deepcopy(doc) == doc


async def test_hooks_reach_built_and_registered_manifests(
    settings: Settings, catalogue: Catalogue
) -> None:
    from iiifsrv.presentation.auth import User
    from iiifsrv.presentation.builder import Hooks
    from iiifsrv.presentation.service import Presentation
    from iiifsrv.presentation.store import publish_json

    def page(base: str, canvas_id: str) -> dict[str, Any]:
        return {"id": f"{base}/annotations/pages?canvas={canvas_id}", "type": "AnnotationPage"}

    def search(base: str, manifest_id: str) -> list[dict[str, Any]]:
        return [{"id": f"{base}/search?manifest={manifest_id}", "type": "SearchService2"}]

    plain = Presentation(settings)
    plain.sync()
    assert "annotations" not in json.loads(plain.manifest("plain"))["items"][0]
    hooked = Presentation(settings, Hooks(annotation_page_ref=page, search_services=search))
    hooked.register("http://h", User("alice"), _example(), None, replace=False)
    for name in ("plain", "example-map"):
        doc = json.loads(publish_json(hooked.manifest(name), "http://h"))
        assert validate.errors(doc) == []
        ref = doc["items"][0]["annotations"][0]
        assert ref["id"].startswith("http://h/annotations/pages?canvas=") and "items" not in ref
        assert doc["service"][-1]["type"] == "SearchService2"


def test_creating_the_app_touches_no_data(tmp_path: Path, images: Path) -> None:
    data = tmp_path / "untouched"
    create_app(Settings(images=str(images), data=str(data)))
    assert not data.exists()


async def test_hostile_manifest_requests_are_4xx(client: httpx.AsyncClient) -> None:
    long_id = "%25" * 90
    assert (await client.get(f"/iiif/manifests/{long_id}")).status_code in (400, 404)
    for body in (b"[" * 5000 + b"]" * 5000, b'{"a":' + b"1" * 5000 + b"}", b'{"x":Infinity}'):
        r = await client.post(
            "/iiif/manifests", content=body, headers={**auth(), "Content-Type": "application/json"}
        )
        assert r.status_code == 400, r.text
    r = await client.put(f"/iiif/manifests/{long_id}", json=_example(), headers=auth())
    assert r.status_code == 400


async def test_host_header_cannot_inject_json(client: httpx.AsyncClient) -> None:
    await client.post("/iiif/manifests", json=_example(), headers=auth())
    r = await client.get(
        "/iiif/manifests/example-map", headers={"Host": 'a","injected":"yes","x":"'}
    )
    assert r.status_code == 200 and "injected" not in r.json()


async def _container_of(client: httpx.AsyncClient, manifest: dict[str, Any]) -> str:
    """The W3C container of a manifest's first canvas, as a client finds it: page → partOf."""
    page = await _get(client, manifest["items"][0]["annotations"][0]["id"])
    container: str = page["partOf"][0]["id"]
    return container


async def test_annotations_must_target_a_canvas_of_our_manifests(client: httpx.AsyncClient) -> None:
    """By default (annotation_canvases = "known") only canvases this server serves are annotated."""
    manifest = await _get(client, "/iiif/manifests/palimpsest")
    canvas = manifest["items"][0]["id"]
    container = await _container_of(client, manifest)
    doc = {
        "type": "Annotation",
        "motivation": "commenting",
        "body": {"type": "TextualBody", "value": "erased word"},
        "target": f"{canvas}#xywh=10,10,50,20",
    }
    r = await client.post(_path(container), json=doc, headers=auth())
    assert r.status_code == 201, r.text
    stranger = "http://testserver/iiif/manifests/palimpsest/canvas/99"
    doc["target"] = f"{stranger}#xywh=10,10,50,20"
    r = await client.post(_path(container), json=doc, headers=auth())
    assert r.status_code == 400 and "not known" in r.text
    mirador = {"annotation": {"canvas": stranger, "uuid": "u1", "data": json.dumps(doc)}}
    assert (await client.post("/annotot/key/tok-alice", json=mirador)).status_code == 400


async def test_manifests_stored_by_the_previous_version_lead_to_their_annotations(
    settings: Settings, catalogue: Catalogue
) -> None:
    """An upload stored with the previous hooks (containers named by the whole canvas URI under
    the internal base) is served with host-independent references that lead to a container."""
    from iiifsrv.annotations.urls import encode_uri
    from iiifsrv.presentation.auth import User
    from iiifsrv.presentation.builder import Hooks
    from iiifsrv.presentation.service import Presentation

    def old_page(base: str, canvas_id: str) -> dict[str, Any]:
        return {
            "id": f"{base}/annotations/canvas/{encode_uri(canvas_id)}/page",
            "type": "AnnotationPage",
        }

    def old_search(base: str, manifest_id: str) -> list[dict[str, Any]]:
        return [
            {
                "id": f"{base}/annotations/search/2/{encode_uri(manifest_id)}",
                "type": "SearchService2",
            }
        ]

    text = json.dumps(_example()).replace(
        "https://iiif.example.org/example-map", "http://h/iiif/manifests/mine"
    )
    old = Presentation(settings, Hooks(annotation_page_ref=old_page, search_services=old_search))
    old.register("http://h", User("alice"), json.loads(text), None, replace=False)
    assert b"aHR0cHM6Ly9paWlmc3J2LmludmFsaWQv" in old.manifest("mine")

    app = create_app(settings)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        r = await client.get("/iiif/manifests/mine")
        assert r.status_code == 200 and "iiifsrv.invalid" not in r.text
        assert "aHR0cHM6Ly9paWlmc3J2" not in r.text
        manifest = r.json()
        canvas = manifest["items"][0]["id"]
        assert canvas == "http://testserver/iiif/manifests/mine/canvas/1"
        container = await _container_of(client, manifest)
        doc = {"type": "Annotation", "body": {"type": "TextualBody", "value": "on the map"},
               "target": canvas}  # fmt: skip
        assert (await client.post(_path(container), json=doc, headers=auth())).status_code == 201
        page = await _get(client, manifest["items"][0]["annotations"][0]["id"])
        assert [a["target"] for a in page["items"]] == [canvas]
        search = [
            s for s in manifest["service"] if s.get("type") == "SearchService2" and "label" not in s
        ]  # the word search (not the semantic variant)
        assert len(search) == 1
        hits = await _get(client, search[0]["id"] + "?q=map")
        assert [a["target"] for a in hits["items"]] == [canvas]
    await app.state.annotation_store.close()
