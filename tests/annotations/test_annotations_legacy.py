"""Annotations stored by earlier versions (canvas = the absolute URI the client used, under its
host, or under the internal stored base) are found under the canvas as the manifest names it
today, on both backends; foreign canvases keep their URI."""

from __future__ import annotations

import dataclasses

import httpx

from iiifsrv.annotations.model import Checked, check
from iiifsrv.annotations.store import open_store
from iiifsrv.migrate import migrate
from iiifsrv.presentation.store import STORED_BASE
from iiifsrv.settings import Settings
from iiifsrv.web.app import create_app
from tests.annotations.conftest import ALICE
from tests.test_client_journey import Way, discover, make_tree, w3c_doc

OLD_HOST = "http://127.0.0.1:8000"
FOREIGN = "https://other.example/iiif/c1"


def as_main_stored(doc: dict[str, object]) -> Checked:
    """What the previous code handed the store: model.check's canvas and manifest, unchanged."""
    return check(doc)


async def test_annotations_stored_by_the_previous_version_are_found(
    backend_settings: Settings,
) -> None:
    images, data = make_tree(backend_settings.images_path.parent / "tree")
    if backend_settings.database_url:  # the catalogue lives in PostgreSQL: move it there
        assert all(o.problems == [] for o in migrate(data, backend_settings.database_url))
    settings = dataclasses.replace(
        backend_settings,
        images=str(images),
        data=str(data),
        public_url="",
        annotation_canvases="known",
    )
    canvas_path = "/iiif/manifests/flat/canvas/1"
    old = open_store(settings)
    rows = {
        "by-host": w3c_doc("byhost", OLD_HOST + canvas_path, OLD_HOST + "/iiif/manifests/flat"),
        "by-base": w3c_doc("bybase", STORED_BASE + canvas_path, ""),
        "foreign": w3c_doc("foreign", FOREIGN, ""),
    }
    for key, doc in rows.items():
        checked = as_main_stored(doc)
        assert checked.canvas.startswith(("http://", "https://"))
        await old.create(key, checked, "", "alice")
    await old.close()

    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        way = Way(c, "http://testserver")
        found = await discover(way)
        assert found.canvas == "http://testserver" + canvas_path
        page = await way.get(found.page)
        bodies = {a["body"]["value"]: a for a in page["items"]}
        assert set(bodies) == {"written by byhost", "written by bybase"}
        for anno in bodies.values():
            assert anno["target"]["source"]["id"] == found.canvas
            assert anno["id"].startswith(found.container)
        assert (
            bodies["written by byhost"]["target"]["source"]["partOf"][0]["id"]
            == (found.manifest["id"])
        )
        # Search finds them; an old annotation can be changed through the id it now shows.
        search = next(s["id"] for s in found.manifest["service"] if s["type"] == "SearchService2")
        hits = await way.get(search, params={"q": "written"})
        assert {a["body"]["value"] for a in hits["items"]} == set(bodies)
        anno = bodies["written by byhost"]
        r = await way.request("GET", anno["id"])
        changed = {**r.json(), "body": {"type": "TextualBody", "value": "written by changed"}}
        r = await way.request(
            "PUT", anno["id"], json=changed, headers={**ALICE, "If-Match": r.headers["etag"]}
        )
        assert r.status_code == 200, r.text
        assert r.json()["target"]["source"]["id"] == found.canvas
        # A foreign canvas keeps its absolute URI (and its own container).
        sas = await way.get("http://testserver/sas/search", params={"uri": FOREIGN})
        assert [a["on"][0]["full"] for a in sas] == [FOREIGN]
    store = app.state.annotation_store
    assert await store.absolute_uris() == {FOREIGN}
    await store.close()
