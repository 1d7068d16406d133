"""IIIF Authorization Flow 2.0 and Auth 1.0 on the wire (no browser): the access services'
forms (CSRF, one login for both), token pages (postMessage to the validated origin, messageId
echoed and escaped, error profiles), the probe's statuses and substitute, logout."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from iiifsrv.access.services import AUTH2_CONTEXT
from tests.access.conftest import PASSWORD, READING_ROOM

pytestmark = pytest.mark.anyio
Clients = Callable[..., httpx.AsyncClient]
ORIGIN = "http://test"


def posted(page: httpx.Response) -> tuple[dict[str, Any], str]:
    """The message and target origin of a token page's postMessage call."""
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    m = re.search(r"window\.parent\.postMessage\((\{.*\}), (\"[^\"]*\")\);", page.text)
    assert m, page.text
    return json.loads(m.group(1)), json.loads(m.group(2))


async def info(client: httpx.AsyncClient, ident: str) -> dict[str, Any]:
    r = await client.get(f"/iiif/3/{ident}/info.json")
    return dict(r.json())


def find(doc: dict[str, Any], kind: str) -> dict[str, Any]:
    stack = list(doc.get("service", []))
    while stack:
        s = stack.pop(0)
        if kind in (s.get("type"), s.get("@type"), s.get("profile")):
            return dict(s)
        stack += s.get("service", [])
    raise AssertionError(kind)


async def login(client: httpx.AsyncClient, url: str, user: str = "sam") -> httpx.Response:
    form = await client.get(url + "?origin=http%3A%2F%2Ftest")
    assert form.status_code == 200
    assert "frame-ancestors 'none'" in form.headers["content-security-policy"]
    csrf = form.text.split('name=csrf value="')[1].split('"')[0]
    return await client.post(
        url, data={"user": user, "password": PASSWORD, "csrf": csrf}, headers={"Origin": ORIGIN}
    )


async def test_auth2_flow_login_token_probe_logout(clients: Clients) -> None:
    c = clients()
    doc = await info(c, "palimpsest%2FIR940")
    probe = find(doc, "AuthProbeService2")
    access = probe["service"][0]
    token_service = access["service"][0]
    logout = access["service"][1]
    # before: the probe says 401, with heading and note
    r = await c.get(probe["id"])
    assert r.status_code == 200
    result = r.json()
    assert (result["@context"], result["type"], result["status"]) == (
        AUTH2_CONTEXT,
        "AuthProbeResult2",
        401,
    )
    assert result["heading"]["en"][0] and result["note"]["en"][0]
    # the token service without a session: missingAspect
    page = await c.get(f"{token_service['id']}?messageId=m1&origin={ORIGIN}")
    message, origin = posted(page)
    assert origin == ORIGIN
    assert (message["type"], message["profile"], message["messageId"]) == (
        "AuthAccessTokenError2",
        "missingAspect",
        "m1",
    )
    # the access service (active): a form that needs a click
    done = await login(c, access["id"])
    assert done.status_code == 200 and "/auth/close.js" in done.text
    page = await c.get(f"{token_service['id']}?messageId=m2&origin={ORIGIN}")
    message, origin = posted(page)
    assert message["type"] == "AuthAccessToken2" and message["messageId"] == "m2"
    assert 0 < message["expiresIn"] <= 600
    token = message["accessToken"]
    assert token not in c.cookies.get("iiifsrv_session", "")
    csp = page.headers["content-security-policy"]
    assert f"frame-ancestors {ORIGIN}" in csp and "x-frame-options" not in page.headers
    # the probe with the token (a fresh client: no cookie, the token alone)
    bare = clients()
    auth = {"Authorization": f"Bearer {token}"}
    assert (await bare.get(probe["id"], headers=auth)).json()["status"] == 200
    assert (await bare.get(probe["id"])).json()["status"] == 401
    # the token is for info.json and probes, never for images
    image = "/iiif/3/palimpsest%2FIR940/full/64,/0/default.jpg"
    assert (await bare.get(image, headers=auth)).status_code == 401
    assert (await bare.get("/iiif/3/palimpsest%2FIR940/info.json", headers=auth)).status_code == 200
    # logout: the cookie is cleared and the token stops working
    out = await c.get(logout["id"])
    assert out.status_code == 200 and "Max-Age=0" in out.headers["set-cookie"]
    assert (await bare.get(probe["id"], headers=auth)).json()["status"] == 401
    assert (await c.get(image)).status_code == 401


async def test_probe_statuses_and_substitute(clients: Clients) -> None:
    anon, reader, room = clients(), clients(), clients(READING_ROOM)
    await login(reader, "/auth/login", "rita")
    assert (await anon.get("/auth/v2/probe/sixteen-bit")).json()["status"] == 200
    assert (await reader.get("/auth/v2/probe/palimpsest%2FIR940")).json()["status"] == 403
    assert (await anon.get("/auth/v2/probe/jpeg2000")).json()["status"] == 403
    assert (await room.get("/auth/v2/probe/jpeg2000")).json()["status"] == 200
    degraded = (await anon.get("/auth/v2/probe/large")).json()
    assert degraded["status"] == 401
    assert degraded["substitute"] == [
        {"id": "http://test/iiif/3/.degraded/large", "type": "ImageService3", "profile": "level2"}
    ]
    r = await anon.get("/auth/v2/probe/large")
    assert r.headers["cache-control"] == "no-store" and r.headers["access-control-allow-origin"]
    pre = await anon.options(
        "/auth/v2/probe/large",
        headers={"Origin": "http://elsewhere", "Access-Control-Request-Headers": "authorization"},
    )
    assert pre.status_code == 204
    assert "Authorization" in pre.headers["access-control-allow-headers"]


async def test_token_page_escapes_and_validates_origin(clients: Clients) -> None:
    c = clients()
    evil = "</script><script>alert(1)</script>&"
    page = await c.get("/auth/v2/token", params={"messageId": evil, "origin": ORIGIN})
    message, _ = posted(page)
    assert message["messageId"] == evil
    assert "</script><script>" not in page.text and "\\u003c/script\\u003e" in page.text
    for bad in ("javascript:alert(1)", "http://a b", "http://x/path", "*", ""):
        r = await c.get("/auth/v2/token", params={"messageId": "1", "origin": bad})
        assert r.status_code == 200 and "postMessage" not in r.text
        assert "invalidOrigin" in r.text
    r = await c.get("/auth/v2/token", params={"origin": ORIGIN})
    message, _ = posted(r)
    assert message["profile"] == "invalidRequest"
    # an expired or forged cookie: invalidAspect / expiredAspect
    c.cookies.set("iiifsrv_session", "forged.value")
    message, _ = posted(await c.get("/auth/v2/token", params={"messageId": "2", "origin": ORIGIN}))
    assert message["profile"] == "invalidAspect"


async def test_external_token_from_the_reading_room(clients: Clients) -> None:
    room = clients(READING_ROOM)
    message, _ = posted(
        await room.get("/auth/v2/token", params={"messageId": "x", "origin": ORIGIN})
    )
    assert message["type"] == "AuthAccessToken2"
    outside = clients()
    message, _ = posted(
        await outside.get("/auth/v2/token", params={"messageId": "x", "origin": ORIGIN})
    )
    assert message["profile"] == "missingAspect"


async def test_auth1_flow(clients: Clients) -> None:
    c = clients()
    url = "/iiif/3/palimpsest%2FIR940/info.json"
    doc = (await c.get(url)).json()
    cookie_service = find(doc, "http://iiif.io/api/auth/1/login")
    token_service = find(cookie_service, "http://iiif.io/api/auth/1/token")
    # plain JSON without messageId (non-browser clients)
    r = await c.get(token_service["@id"])
    assert r.status_code == 401 and r.json()["error"] == "missingCredentials"
    assert (await login(c, cookie_service["@id"])).status_code == 200
    page = await c.get(f"{token_service['@id']}?messageId=7&origin={ORIGIN}")
    message, origin = posted(page)
    assert set(message) == {"accessToken", "expiresIn", "messageId"} and message["messageId"] == "7"
    bare = clients()
    ok = await bare.get(url, headers={"Authorization": f"Bearer {message['accessToken']}"})
    assert ok.status_code == 200 and ok.json()["id"].endswith("palimpsest%2FIR940")
    # degraded: 302 to the tier without a token, 200 on the full service with one
    assert (await bare.get("/iiif/3/large/info.json")).status_code == 302
    full = await bare.get(
        "/iiif/3/large/info.json", headers={"Authorization": f"Bearer {message['accessToken']}"}
    )
    assert full.status_code == 200


async def test_forms_refuse_cross_site_posts_and_missing_csrf(clients: Clients) -> None:
    c = clients()
    await c.get("/auth/login")
    r = await c.post("/auth/login", data={"user": "sam", "password": PASSWORD, "csrf": "x"})
    assert r.status_code == 403
    r = await c.post(
        "/auth/clickthrough", data={"csrf": "x"}, headers={"Origin": "http://evil.example"}
    )
    assert r.status_code == 403
    wrong = await c.get("/auth/login")
    csrf = wrong.text.split('name=csrf value="')[1].split('"')[0]
    bad = await c.post(
        "/auth/login", data={"user": "sam", "password": "nope-nope-nope", "csrf": csrf}
    )
    assert bad.status_code == 401 and "Wrong user name or password" in bad.text


async def test_manifest_declares_the_probe_of_protected_images(clients: Clients) -> None:
    from iiifsrv.presentation.validate import errors

    c = clients()
    collection = (await c.get("/iiif/collection")).json()
    by_name = {m["id"].rsplit("/", 1)[1]: m["id"] for m in collection["items"]}
    manifest = (await c.get(by_name["palimpsest"])).json()
    assert manifest["@context"][0] == AUTH2_CONTEXT
    body = manifest["items"][0]["items"][0]["items"][0]["body"]["items"][0]
    probe = next(s for s in body["service"] if s.get("type") == "AuthProbeService2")
    # the probe the manifest declares is the one the image's info.json declares
    info_doc = await info(c, body["service"][0]["id"].rsplit("/iiif/3/", 1)[1])
    assert probe == find(info_doc, "AuthProbeService2")
    assert (await c.get(probe["id"])).json()["status"] == 401
    assert errors(manifest) == []
    public = (await c.get(by_name["sixteen-bit"])).json()
    assert "AuthProbeService2" not in json.dumps(public)


async def test_kiosk_rule_advertises_kiosk_services_that_work_without_interaction(
    clients: Clients, protected: Any
) -> None:
    """A location rule with ``kiosk = true``: the info.json offers the Auth 1.0 kiosk cookie
    service and the Auth 2.0 ``kiosk`` access service (not ``external``); a kiosk machine opens
    it (no form, the page closes itself), gets a token, and sees the image; elsewhere the same
    steps give a token that the probe still answers 403 for (the address decides)."""
    Path(protected.access_rules).write_text(
        '[[rule]]\nmatch = "jpeg2000"\naccess = "restricted"\n'
        + 'locations = ["10.9.0.0/16"]\nkiosk = true\n'
    )
    room, outside = clients(READING_ROOM), clients(("192.0.2.7", 4000))
    doc = await info(outside, "jpeg2000")
    kiosk1 = find(doc, "http://iiif.io/api/auth/1/kiosk")
    probe = find(doc, "AuthProbeService2")
    kiosk2 = probe["service"][0]
    assert kiosk2["profile"] == "kiosk" and kiosk2["id"] == kiosk1["@id"]
    assert "?" not in kiosk2["id"]
    with pytest.raises(AssertionError):
        find(doc, "http://iiif.io/api/auth/1/external")
    token_url = find(kiosk1, "http://iiif.io/api/auth/1/token")["@id"]
    for where, client, status in ((READING_ROOM, room, 200), (("192.0.2.7", 4000), outside, 403)):
        page = await client.get(kiosk2["id"] + f"?origin={ORIGIN}")
        assert page.status_code == 200 and "<form" not in page.text
        assert "/auth/close.js" in page.text
        message, _ = posted(await client.get(f"{token_url}?messageId=k&origin={ORIGIN}"))
        bearer = {"Authorization": f"Bearer {message['accessToken']}"}
        result = await clients(where).get(probe["id"], headers=bearer)  # no cookie: the token
        assert result.json()["status"] == status


async def test_token_service_says_unavailable_when_sign_outs_cannot_be_read(
    clients: Clients, protected: Any
) -> None:
    """The shared sign-out list cannot be read (here: its SQLite file is a folder): no token on
    a guess, the ``unavailable`` profile (2.0), ``unavailable`` with 503 (1.0 JSON)."""
    (Path(protected.data) / "sessions.sqlite3").mkdir()
    c = clients()
    doc = await info(c, "palimpsest%2FIR940")
    access = find(doc, "AuthProbeService2")["service"][0]
    assert (await login(c, access["id"])).status_code == 200
    token2 = find(access, "AuthAccessTokenService2")["id"]
    message, _ = posted(await c.get(token2, params={"messageId": "u", "origin": ORIGIN}))
    assert message["type"] == "AuthAccessTokenError2" and message["profile"] == "unavailable"
    token1 = find(find(doc, "http://iiif.io/api/auth/1/login"), "AuthTokenService1")["@id"]
    r = await c.get(token1)
    assert r.status_code == 503 and r.json()["error"] == "unavailable"


async def test_token_services_say_the_session_expired(clients: Clients) -> None:
    """A cookie that was this server's but has expired: ``expiredAspect`` (2.0), and
    ``invalidCredentials`` with 401 (1.0 JSON); the probe is then 401 again."""
    import time

    from iiifsrv.access import sessions
    from tests.access.conftest import SECRET

    c = clients()
    _, value = sessions.issue(SECRET.encode(), "", time.time() - 7200, 3600, terms=True)
    c.cookies.set("iiifsrv_session", value)
    message, _ = posted(await c.get("/auth/v2/token", params={"messageId": "e", "origin": ORIGIN}))
    assert (message["type"], message["profile"]) == ("AuthAccessTokenError2", "expiredAspect")
    assert message["heading"]["en"][0]
    r = await c.get("/auth/token")
    assert r.status_code == 401 and r.json()["error"] == "invalidCredentials"
    assert (await c.get("/auth/v2/probe/flat")).json()["status"] == 401


async def test_only_the_token_pages_may_be_framed(clients: Clients) -> None:
    """Every HTML page (landing, viewers, sign-in, terms, sign-out, kiosk, external, and a
    token page whose origin is refused) forbids framing; a token page may be framed by the
    origin it posts to, and by nothing else."""
    c = clients()
    for url in ("/", "/viewer/mirador", "/viewer/uv", "/auth/login", "/auth/clickthrough",
                "/auth/logout", "/auth/kiosk", "/auth/external",
                "/auth/v2/token?messageId=1&origin=javascript:x"):  # fmt: skip
        r = await c.get(url)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html"), url
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"], url
        assert r.headers["x-frame-options"] == "DENY", url
    for url in ("/auth/v2/token?messageId=1&origin=", "/auth/token?messageId=1&origin="):
        r = await c.get(url + "https%3A%2F%2Fviewer.example")
        csp = r.headers["content-security-policy"]
        assert "frame-ancestors https://viewer.example" in csp.split(";")[-1], url
        assert "x-frame-options" not in r.headers, url
