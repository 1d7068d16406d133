"""Access control on the Image API: restricted (401 info.json with a complete body), degraded
(302 to the degraded tier, small sizes open, larger refused), clickthrough and location; the
decision taken before the per-URL replay; protected responses private to their requester."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from iiifsrv.access.services import AUTH1, AUTH2_CONTEXT
from tests.access.conftest import READING_ROOM, sign_in

pytestmark = pytest.mark.anyio
Clients = Callable[..., httpx.AsyncClient]
BAND = "/iiif/3/palimpsest%2FIR940"


def services(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Every service entry, nested ones too."""
    out = []
    stack = list(doc.get("service", []))
    while stack:
        s = stack.pop()
        out.append(s)
        stack += s.get("service", [])
    return out


async def test_public_images_stay_public_and_shared(clients: Clients) -> None:
    c = clients()
    r = await c.get("/iiif/3/sixteen-bit/info.json")
    assert r.status_code == 200
    assert r.headers["cache-control"] == "public, max-age=86400"
    assert "service" not in r.json() and "Cookie" not in r.headers.get("vary", "")


async def test_restricted_info_json_is_401_with_a_complete_body(clients: Clients) -> None:
    r = await clients().get(f"{BAND}/info.json")
    assert r.status_code == 401
    assert r.headers["cache-control"] == "no-store"
    doc = r.json()
    assert doc["@context"] == [AUTH2_CONTEXT, "http://iiif.io/api/image/3/context.json"]
    assert doc["id"] == f"http://test{BAND}" and doc["width"] > 0 and doc["tiles"]
    every = services(doc)
    assert all("profile" in s for s in every)  # Mirador 4 needs a profile on every entry
    assert all("?" not in (s.get("id") or s.get("@id") or "") for s in every)
    profiles = {s["profile"] for s in every}
    assert {AUTH1 + "login", AUTH1 + "token", AUTH1 + "logout"} <= profiles
    probe = next(s for s in every if s.get("type") == "AuthProbeService2")
    assert probe["id"] == "http://test/auth/v2/probe/palimpsest%2FIR940"
    active = probe["service"][0]
    assert (active["type"], active["profile"]) == ("AuthAccessService2", "active")
    assert [s["type"] for s in active["service"]] == [
        "AuthAccessTokenService2",
        "AuthLogoutService2",
    ]
    r2 = await clients().get("/iiif/2/palimpsest%2FIR940/info.json")
    assert r2.status_code == 401 and r2.json()["@id"].endswith("/iiif/2/palimpsest%2FIR940")


async def test_restricted_images_need_the_role(clients: Clients) -> None:
    anon, staff, reader = clients(), clients(), clients()
    await sign_in(staff)
    await sign_in(reader, "rita")
    url = f"{BAND}/full/max/0/default.jpg"
    r = await staff.get(url)
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert r.headers["cache-control"] == "private, no-cache"
    assert "Cookie" in r.headers["vary"]
    assert (await anon.get(url)).status_code == 401  # after the authorised one warmed the cache
    assert (await reader.get(url)).status_code == 403  # signed in, without the role
    i = await staff.get(f"{BAND}/info.json")
    assert i.status_code == 200 and i.headers["cache-control"] == "private, no-cache"
    assert {"Cookie", "Authorization"} <= {v.strip() for v in i.headers["vary"].split(",")}
    assert (await anon.get(f"{BAND}/info.json")).status_code == 401
    # a composite of the object's bands, and the base URI redirect
    comp = "/iiif/3/palimpsest%2Fcomposite:IR940,R650,G550/full/64,/0/default.png"
    assert (await staff.get(comp)).status_code == 200
    assert (await anon.get(comp)).status_code == 401
    assert (await anon.get(BAND)).status_code == 401


async def test_degraded_tier(clients: Clients) -> None:
    anon, staff = clients(), clients()
    await sign_in(staff)
    r = await anon.get("/iiif/3/large/info.json")
    assert r.status_code == 302
    tier = r.headers["location"]
    assert tier == "http://test/iiif/3/.degraded/large/info.json"
    t = await anon.get(tier)
    assert t.status_code == 200
    doc = t.json()
    assert doc["id"] == "http://test/iiif/3/.degraded/large"
    assert doc["maxWidth"] == 256 and doc["maxHeight"] == 256
    assert any(s.get("profile") == AUTH1 + "login" for s in doc["service"])
    small = await anon.get("/iiif/3/.degraded/large/full/max/0/default.jpg")
    assert small.status_code == 200
    big = await anon.get("/iiif/3/large/full/max/0/default.jpg")
    assert big.status_code == 401
    thumb = await anon.get("/iiif/3/large/full/!200,200/0/default.jpg")
    assert thumb.status_code == 200 and thumb.headers["cache-control"] == "private, no-cache"
    tile = await anon.get("/iiif/3/large/0,0,512,512/512,/0/default.jpg")
    assert tile.status_code == 401
    full = await staff.get("/iiif/3/large/info.json")
    assert full.status_code == 200 and full.json()["maxWidth"] == 10000  # the server's own
    assert (await staff.get("/iiif/3/large/0,0,512,512/512,/0/default.jpg")).status_code == 200
    assert (await anon.get("/iiif/3/.degraded/sixteen-bit/info.json")).status_code == 404


async def test_degraded_tier_never_gives_full_resolution_in_pieces(clients: Clients) -> None:
    """A 256-pixel crop of a 256-pixel region is full resolution: every crop sharper than the
    small version is refused, by the tier (even to staff) and by the full service; the tier's
    info.json offers only its sizes (level 0, no tiles), which viewers then use."""
    anon, staff = clients(), clients()
    await sign_in(staff)
    for version, level0 in ((3, "level0"), (2, "http://iiif.io/api/image/2/level0.json")):
        doc = (await anon.get(f"/iiif/{version}/.degraded/large/info.json")).json()
        assert "tiles" not in doc and "extraFeatures" not in doc
        profile = doc["profile"][0] if version == 2 else doc["profile"]
        assert profile == level0
        if version == 2:
            assert "supports" not in doc["profile"][1]
        for size in doc["sizes"]:
            url = f"/iiif/{version}/.degraded/large/full/{size['width']},/0/default.jpg"
            assert (await anon.get(url)).status_code == 200
    for path in (".degraded/large", "large"):
        for region in ("0,0,256,256/256,256", "0,0,512,512/128,128", "0,0,100,100/max"):
            r = await anon.get(f"/iiif/3/{path}/{region}/0/default.jpg")
            assert r.status_code == 401, (path, region)
    crop = await staff.get("/iiif/3/.degraded/large/0,0,256,256/256,256/0/default.jpg")
    assert crop.status_code == 403, "the tier stays the small version when signed in"
    assert (await staff.get("/iiif/3/large/0,0,256,256/256,256/0/default.jpg")).status_code == 200
    # at the small version's scale or below, any part is open
    quarter = await anon.get("/iiif/3/large/0,0,1000,750/128,/0/default.jpg")
    assert quarter.status_code == 200


async def test_clickthrough_and_location(clients: Clients) -> None:
    anon, room = clients(), clients(READING_ROOM)
    url = "/iiif/3/flat/full/64,/0/default.jpg"
    assert (await anon.get(url)).status_code == 401
    form = await anon.get("/auth/clickthrough")
    assert form.status_code == 200
    csrf = form.text.split('name=csrf value="')[1].split('"')[0]
    agreed = await anon.post("/auth/clickthrough", data={"csrf": csrf})
    assert agreed.status_code == 200 and "/auth/close.js" in agreed.text
    assert (await anon.get(url)).status_code == 200
    j = "/iiif/3/jpeg2000/full/64,/0/default.jpg"
    assert (await room.get(j)).status_code == 200
    assert (await anon.get(j)).status_code == 403  # a location rule: signing in cannot help
    i = (await anon.get("/iiif/3/jpeg2000/info.json")).json()
    assert [s["profile"] for s in i["service"][:1]] == [AUTH1 + "external"]


async def test_rules_change_without_restart(clients: Clients, protected: Any) -> None:
    from pathlib import Path

    c = clients()
    assert (await c.get("/iiif/3/sixteen-bit/info.json")).status_code == 200
    Path(protected.access_rules).write_text(
        '[[rule]]\nmatch = "sixteen-bit"\naccess = "restricted"\nroles = ["staff"]\n'
    )
    assert (await c.get("/iiif/3/sixteen-bit/info.json")).status_code == 401
    assert (await c.get("/iiif/3/palimpsest%2FIR940/info.json")).status_code == 200
