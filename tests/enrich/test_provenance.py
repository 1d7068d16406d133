"""Provenance and software agents, on SQLite and PostgreSQL: a person's token and an agent's
token each write; W3C, Annotot, SAS and Content Search 2.0 and 1.0 all name the right creator
(a stable URI, Person or Software, a name; machines also a generator); neither can pose as the
other; agent batches are all-or-nothing, size-limited and replace only that agent's output.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import httpx
import pytest

from iiifsrv.annotations import model
from iiifsrv.annotations.store import KeyTaken, open_store
from iiifsrv.annotations.urls import search_services
from iiifsrv.settings import Settings
from iiifsrv.tokens import parse_tokens
from iiifsrv.web.app import create_app
from tests.annotations.annotation_samples import CANVAS, MANIFEST, anno, container, path
from tests.annotations.conftest import ALICE, EDITOR
from tests.enrich.conftest import AGENT, AGENT_TOKEN, OTHER_AGENT

ALICE_URI = "http://test/users/alice"
BOT_URI = "http://test/agents/ocr-bot"
GENERATOR = {"name": "tesseract", "version": "5.3.0"}


def line(text: str, y: int, confidence: float = 0.93) -> dict[str, Any]:
    doc = anno(text, region=f"10,{y},300,40", motivation="supplementing")
    doc["body"] = {"type": "TextualBody", "value": text, "format": "text/plain"}
    doc["target"]["selector"] = {"type": "FragmentSelector", "value": f"xywh=10,{y},300,40"}
    doc["textGranularity"] = "line"
    doc["confidence"] = confidence
    return doc


def batch(*texts: str, **extra: Any) -> dict[str, Any]:
    items = [line(t, 50 * n) for n, t in enumerate(texts)]
    return {"generator": GENERATOR, "items": items, **extra}


def searches() -> tuple[str, str]:
    s2, s1 = search_services("http://test", MANIFEST)
    return path(str(s2["id"])), path(str(s1["@id"]))


async def write_both(c: httpx.AsyncClient) -> None:
    r = await c.post(container(), json=anno("a scholar reads the palimpsest"), headers=ALICE)
    assert r.status_code == 201, r.text
    r = await c.post(container() + "batch", json=batch("machine reads the palimpsest"),
                     headers=AGENT)  # fmt: skip
    assert r.status_code == 201, r.text


def test_agent_role_in_tokens() -> None:
    users = parse_tokens("t1=alice,t2=ed:editor,t3=ocr-bot:agent")
    assert [(u.name, u.kind, u.editor) for u in users.values()] == [
        ("alice", "Person", False),
        ("ed", "Person", True),
        ("ocr-bot", "Software", False),
    ]


async def test_w3c_creator_person_and_software(agent_client: httpx.AsyncClient) -> None:
    c = agent_client
    await write_both(c)
    page = (await c.get(container() + "page")).json()
    by_kind = {a["creator"]["type"]: a for a in page["items"]}
    person, machine = by_kind["Person"], by_kind["Software"]
    assert person["creator"] == {"id": ALICE_URI, "type": "Person", "name": "alice",
                                 "nickname": "alice"}  # fmt: skip
    assert "generator" not in person and "generated" not in person
    assert machine["creator"]["id"] == BOT_URI and machine["creator"]["name"] == "ocr-bot"
    assert machine["generator"]["type"] == "Software"
    assert machine["generator"]["name"] == "tesseract 5.3.0"
    assert machine["generator"]["softwareVersion"] == "5.3.0"
    assert machine["generated"] == machine["created"]
    assert machine["confidence"] == 0.93 and machine["textGranularity"] == "line"
    # The page names the contexts of the terms it uses, the project's first-party one served.
    assert page["@context"][-1] == "http://iiif.io/api/presentation/3/context.json"
    assert "http://test/ns/iiifsrv.jsonld" in page["@context"]
    one = (await c.get(machine["id"])).json()
    assert one["@context"][0] == "http://www.w3.org/ns/anno.jsonld"
    assert "http://test/ns/iiifsrv.jsonld" in one["@context"]
    ctx = await c.get("/ns/iiifsrv.jsonld")
    assert ctx.status_code == 200 and ctx.headers["content-type"] == "application/ld+json"
    assert ctx.json()["@context"]["confidence"]["@id"] == "iiifsrv:confidence"
    # The creator URIs dereference to the agent.
    assert (await c.get("/agents/ocr-bot")).json()["type"] == "Software"
    assert (await c.get("/users/alice")).json()["type"] == "Person"
    assert (await c.get("/agents/alice")).status_code == 404


async def test_a_writer_whose_token_is_gone_still_answers(agent_settings: Settings) -> None:
    """The creator URI stays in the annotations when a token is removed: it still answers."""
    for tokens in (agent_settings.tokens, f"{AGENT_TOKEN}=ocr-bot:agent"):
        app = create_app(dataclasses.replace(agent_settings, tokens=tokens))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            if tokens == agent_settings.tokens:
                await write_both(c)
            alice = await c.get(ALICE_URI)
            assert alice.status_code == 200 and alice.json()["type"] == "Person"
            assert (await c.get("/agents/alice")).status_code == 404
            # bob has a token but wrote nothing: without his token, nobody of that name.
            bob = 200 if tokens == agent_settings.tokens else 404
            assert (await c.get("/users/bob")).status_code == bob
        await app.state.annotation_store.close()


async def test_annotot_and_sas_report_the_creator(agent_client: httpx.AsyncClient) -> None:
    c = agent_client
    await write_both(c)
    annotot = (await c.get("/annotot/pages", params={"uri": CANVAS})).json()["items"]
    assert [a["creator"] for a in annotot] == ["alice", "ocr-bot"]
    assert [a["provenance"]["creator"]["type"] for a in annotot] == ["Person", "Software"]
    assert annotot[1]["provenance"]["generator"]["name"] == "tesseract 5.3.0"
    sas = (await c.get("/sas/search", params={"uri": CANVAS})).json()
    assert [(a["annotatedBy"]["@id"], a["annotatedBy"]["@type"]) for a in sas] == [
        (ALICE_URI, "foaf:Person"),
        (BOT_URI, "prov:SoftwareAgent"),
    ]
    assert "serializedBy" not in sas[0] and sas[1]["serializedBy"]["name"] == "tesseract 5.3.0"


async def test_search_filters_by_user_uri(agent_client: httpx.AsyncClient) -> None:
    c = agent_client
    await write_both(c)
    s2, s1 = searches()
    everyone = (await c.get(s2, params={"q": "palimpsest"})).json()
    assert [a["creator"]["id"] for a in everyone["items"]] == [ALICE_URI, BOT_URI]
    machines = (await c.get(s2, params={"q": "palimpsest", "user": BOT_URI})).json()
    assert [a["creator"]["id"] for a in machines["items"]] == [BOT_URI]
    assert machines["@context"] == [
        "http://test/ns/iiifsrv.jsonld",
        "http://iiif.io/api/extension/text-granularity/context.json",
        "http://iiif.io/api/search/2/context.json",
    ]
    container_page = (await c.get(container(), params={"page": "0"})).json()
    assert "http://test/ns/iiifsrv.jsonld" in container_page["@context"]
    people = (await c.get(s2, params={"q": "palimpsest", "user": ALICE_URI, "date": "x"})).json()
    assert [a["creator"]["id"] for a in people["items"]] == [ALICE_URI]
    assert people["ignored"] == ["date"]
    both = (await c.get(s2, params={"q": "palimpsest", "user": f"{ALICE_URI} {BOT_URI}"})).json()
    assert len(both["items"]) == 2
    stranger = (await c.get(s2, params={"q": "palimpsest", "user": "http://x/users/a"})).json()
    assert stranger["items"] == []
    v1 = (await c.get(s1, params={"q": "palimpsest", "user": BOT_URI, "box": "1"})).json()
    assert len(v1["resources"]) == 1 and v1["resources"][0]["resource"]["chars"].startswith(
        "machine"
    )
    assert v1["within"]["ignored"] == ["box"]
    # Search 1.0 names the writer too, in Open Annotation terms (as SAS does).
    v1 = (await c.get(s1, params={"q": "palimpsest"})).json()
    assert [(r["annotatedBy"]["@id"], r["annotatedBy"]["@type"]) for r in v1["resources"]] == [
        (ALICE_URI, "foaf:Person"),
        (BOT_URI, "prov:SoftwareAgent"),
    ]
    assert "serializedBy" not in v1["resources"][0]
    assert v1["resources"][1]["serializedBy"]["name"] == "tesseract 5.3.0"


async def test_nobody_poses_as_the_other(agent_client: httpx.AsyncClient) -> None:
    c = agent_client
    claim = anno("I am a robot", creator={"type": "Software", "name": "x"})
    r = await c.post(container(), json=claim, headers=ALICE)
    assert r.status_code == 403 and "software" in r.text
    claim = anno("I am human", creator={"type": "Person", "name": "x"})
    r = await c.post(container(), json=claim, headers=AGENT)
    assert r.status_code == 403 and "person" in r.text
    r = await c.post(container() + "batch", json=batch("a person's batch"), headers=ALICE)
    assert r.status_code == 403 and "agent" in r.text
    # An agent's plain write is recorded as Software.
    r = await c.post(container(), json=anno("one machine note"), headers=AGENT)
    assert r.status_code == 201 and r.json()["creator"]["type"] == "Software"
    # Nor by replacing an annotation, nor through SAS (annotatedBy).
    mine = await c.post(container(), json=anno("alice's own"), headers=ALICE)
    robot = anno("alice's, now a robot's", creator={"type": "Software", "name": "x"})
    r = await c.put(path(mine.json()["id"]), json=robot, headers=ALICE)
    assert r.status_code == 403 and "software" in r.text
    oa = {"@type": "oa:Annotation", "resource": {"@type": "dctypes:Text", "chars": "a note"},
          "on": {"full": CANVAS}}  # fmt: skip
    for token, kind in ((ALICE, "prov:SoftwareAgent"), (AGENT, "foaf:Person")):
        claim = {**oa, "annotatedBy": {"@type": kind, "name": "x"}}
        assert (await c.post("/sas/create", json=claim, headers=token)).status_code == 403
    sas = [(ALICE, "foaf:Person"), (AGENT, "prov:SoftwareAgent")]
    for token, kind in sas:  # claiming what the token is, is fine (the server names it)
        claim = {**oa, "annotatedBy": {"@type": kind, "name": "someone else"}}
        r = await c.post("/sas/create", json=claim, headers=token)
        assert r.status_code == 201 and r.json()["annotatedBy"]["@type"] == kind
        assert r.json()["annotatedBy"]["name"] in ("alice", "ocr-bot")


async def test_batch_is_all_or_nothing_and_limited(agent_client: httpx.AsyncClient) -> None:
    c = agent_client
    bad = batch("one", "two")
    bad["items"].append({"type": "Annotation", "target": "not a canvas"})
    r = await c.post(container() + "batch", json=bad, headers=AGENT)
    assert r.status_code == 400 and r.text.startswith("item 2:")
    elsewhere = batch("one")
    elsewhere["items"].append(line("two", 9) | {"target": "http://test/iiif/manifests/x/canvas/9"})
    assert (await c.post(container() + "batch", json=elsewhere, headers=AGENT)).status_code == 400
    r = await c.post(container() + "batch", json=batch(*[f"l{n}" for n in range(51)]),
                     headers=AGENT)  # fmt: skip
    assert r.status_code == 413
    r = await c.post(container() + "batch", json={"items": [line("x", 1)]}, headers=AGENT)
    assert r.status_code == 400 and "generator" in r.text
    assert (await c.get(container())).json()["total"] == 0


async def test_a_batch_the_store_refuses_leaves_everything_as_it_was(
    backend_settings: Settings,
) -> None:
    """One transaction: a key taken half-way through undoes the replacement and the inserts."""
    store = open_store(backend_settings)
    try:
        gen = {"name": "tesseract", "version": "5.3.0"}
        first = [(f"a{n}", model.check(line(f"old {n}", 50 * n))) for n in range(2)]
        await store.create_many(CANVAS, first, "ocr-bot", "Software", gen, True)
        await store.create("n1", model.check(anno("alice's")), "", "alice")
        second = [("b0", model.check(line("new", 0))), ("n1", model.check(line("clash", 50)))]
        with pytest.raises(KeyTaken):
            await store.create_many(CANVAS, second, "ocr-bot", "Software", gen, True)
        kept = [await store.get(k) for k in ("a0", "a1", "n1", "b0")]
        assert [(r.creator, r.deleted) if r else None for r in kept] == [
            ("ocr-bot", False),
            ("ocr-bot", False),
            ("alice", False),
            None,
        ]
    finally:
        await store.close()


async def test_rerun_replaces_only_that_agents_output(agent_client: httpx.AsyncClient) -> None:
    c = agent_client
    r = await c.post(container(), json=anno("alice's reading"), headers=ALICE)
    assert r.status_code == 201
    r = await c.post(container() + "batch", json=batch("tag one"), headers=OTHER_AGENT)
    assert r.status_code == 201
    first = await c.post(container() + "batch", json=batch("old line a", "old line b"),
                         headers=AGENT)  # fmt: skip
    assert first.status_code == 201 and first.json()["created"] == 2
    second = await c.post(container() + "batch", json=batch("new line"), headers=AGENT)
    assert second.json()["replaced"] == 2 and second.json()["created"] == 1
    texts = [a["body"]["value"] for a in (await c.get(container() + "page")).json()["items"]]
    assert texts == ["<p>alice's reading</p>", "tag one", "new line"]
    # The previous output is kept as a version: its URL says Gone, not Not Found.
    for old in first.json()["items"]:
        assert (await c.get(path(old))).status_code == 410
    # replace: false adds beside the previous output.
    added = await c.post(container() + "batch", json=batch("extra", replace=False), headers=AGENT)
    assert added.json()["replaced"] == 0
    assert (await c.get(container())).json()["total"] == 4
    # An editor may still correct a machine line; the agent may not touch alice's.
    alice_note = (await c.get(container() + "page")).json()["items"][0]["id"]
    r = await c.delete(path(alice_note), headers=AGENT)
    assert r.status_code == 403
    machine = (await c.get(container() + "page")).json()["items"][2]
    # The editor's client sends the line back as it was served (its Software creator too).
    corrected = {**machine, "body": {**machine["body"], "value": "new line, corrected"}}
    r = await c.put(path(machine["id"]), json=corrected, headers=EDITOR)
    assert r.status_code == 200 and r.json()["creator"]["id"] == BOT_URI
    assert (await c.delete(path(machine["id"]), headers=EDITOR)).status_code == 204
