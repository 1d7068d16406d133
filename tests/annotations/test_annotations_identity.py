"""Canvas identity, the pure parts: keys ↔ public URIs under a base, and records presented."""

from __future__ import annotations

import pytest

from iiifsrv.annotations.identity import present, retarget
from iiifsrv.annotations.model import Record
from iiifsrv.annotations.urls import Urls, decode_uri

PATH = "/iiif/manifests/flat/canvas/1"


@pytest.mark.parametrize(
    ("base", "uri", "key"),
    [
        ("http://127.0.0.1:8182", f"http://127.0.0.1:8182{PATH}", PATH),
        ("http://localhost:8182/", f"http://localhost:8182{PATH}", PATH),
        ("https://x.org/root", f"https://x.org/root{PATH}", PATH),
        ("https://x.org/root", f"https://x.org{PATH}", f"https://x.org{PATH}"),  # not under root
        ("http://a", f"http://b{PATH}", f"http://b{PATH}"),  # another host: not syntactic
        ("http://a", PATH, PATH),  # a key stays a key
    ],
)
def test_keys_and_public_uris(base: str, uri: str, key: str) -> None:
    urls = Urls(base)
    assert urls.key(uri) == key
    assert urls.key(urls.public(key)) == key
    segment = urls.container("canvas", uri).removeprefix(urls.base + "/annotations/canvas/")
    assert decode_uri(segment.rstrip("/")) == key


def test_the_same_canvas_under_two_bases_has_one_container_segment() -> None:
    a, b = Urls("http://127.0.0.1:8182"), Urls("https://iiif.example.org/pub")
    tail_a = a.page(a.public(PATH)).removeprefix(a.base)
    tail_b = b.page(b.public(PATH)).removeprefix(b.base)
    assert tail_a == tail_b
    assert b.search("/iiif/manifests/flat", 2).startswith(
        "https://iiif.example.org/pub/annotations/"
    )


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("http://old/c#xywh=1,2,3,4", "NEW#xywh=1,2,3,4"),
        ({"source": "http://old/c"}, {"source": "NEW"}),
        (
            {"type": "SpecificResource", "source": {"id": "http://old/c", "partOf": [{"id": "m"}]}},
            {"type": "SpecificResource", "source": {"id": "NEW", "partOf": [{"id": "MAN"}]}},
        ),
        ([{"id": "http://old/c#t=1"}, "other"], [{"id": "NEW#t=1"}, "other"]),
    ],
)
def test_retarget_names_the_canvas_and_keeps_the_rest(target: object, expected: object) -> None:
    doc = {"type": "Annotation", "target": target}
    assert retarget(doc, "NEW", "MAN")["target"] == expected
    assert doc["target"] == target  # the stored document is not changed


def test_present_shows_keys_under_the_request_base() -> None:
    doc = {"type": "Annotation", "target": f"http://old:1{PATH}#xywh=0,0,5,5"}
    rec = Record("k", PATH, "/iiif/manifests/flat", "", "alice", doc, "t", "t", 1)
    shown = present(rec, Urls("http://new:2"))
    assert shown.canvas == f"http://new:2{PATH}"
    assert shown.manifest == "http://new:2/iiif/manifests/flat"
    assert shown.doc["target"] == f"http://new:2{PATH}#xywh=0,0,5,5"
    foreign = present(
        Record("k", "https://o.org/c", "", "", "a", doc, "t", "t", 1), Urls("http://n")
    )
    assert foreign.canvas == "https://o.org/c"
