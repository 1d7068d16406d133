"""The pure annotation model: URL mapping, validation, regions, Open Annotation conversion."""

from __future__ import annotations

import pytest

from iiifsrv.annotations import annotation_page_ref, search_services
from iiifsrv.annotations.model import Record, body_text, check, from_oa, to_oa, w3c, xywh
from iiifsrv.annotations.service import key_from_iri, parse_tokens, slug_key
from iiifsrv.annotations.urls import canvas_container_path, decode_uri, encode_uri
from iiifsrv.errors import BadRequest
from tests.annotations.annotation_samples import CANVAS, MANIFEST, anno


@pytest.mark.parametrize("uri", [CANVAS, "https://x.org/c?id=1&p=2#frag", "http://é.example/ü/%2F"])
def test_canvas_uri_round_trips_through_one_segment(uri: str) -> None:
    segment = encode_uri(uri)
    assert "/" not in segment and "=" not in segment and "%" not in segment
    assert decode_uri(segment) == uri
    assert canvas_container_path(uri) == f"/annotations/canvas/{segment}/"


def test_decode_rejects_non_segments() -> None:
    assert decode_uri("not base64!") is None and decode_uri("") is None


def test_page_ref_has_no_items_and_services_are_declared() -> None:
    ref = annotation_page_ref("http://h/", CANVAS)
    assert ref == {
        "id": f"http://h/annotations/canvas/{encode_uri(CANVAS)}/page",
        "type": "AnnotationPage",
    }
    types = [s.get("type", s.get("@type")) for s in search_services("http://h", MANIFEST)]
    assert types == ["SearchService2", "SearchService1"]


@pytest.mark.parametrize(
    "value", ["xywh=1,2,3,4", "xywh=pixel:0,0,10,10", "xywh=percent:0,0,100,100", "t=1.5,3"]
)
def test_fragment_selectors_accepted(value: str) -> None:
    check(
        {
            "type": "Annotation",
            "target": {"source": CANVAS, "selector": {"type": "FragmentSelector", "value": value}},
        }
    )


@pytest.mark.parametrize(
    "selector",
    [
        {"type": "FragmentSelector", "value": "xywh=1,2,3"},
        {"type": "SvgSelector", "value": "<svg><path d='M0'></svg"},
        {"type": "SvgSelector", "value": "<html/>"},
        {"type": "SvgSelector", "value": '<!DOCTYPE x [<!ENTITY a "b">]><svg>&a;</svg>'},
        "xywh=1,2,3,4",
    ],
)
def test_bad_selectors_refused(selector: object) -> None:
    with pytest.raises(BadRequest):
        check({"type": "Annotation", "target": {"source": CANVAS, "selector": selector}})


def test_check_finds_canvas_manifest_and_text() -> None:
    checked = check(anno("<b>Erased</b> &amp; rewritten"))
    assert (checked.canvas, checked.manifest) == (CANVAS, MANIFEST)
    assert checked.text == "Erased & rewritten"
    assert check({"type": "Annotation", "target": f"{CANVAS}#xywh=1,2,3,4"}).canvas == CANVAS


def test_region_from_fragment_then_svg() -> None:
    assert xywh(anno(region="1,2,3,4")) == "1,2,3,4"
    only_svg = anno()
    only_svg["target"]["selector"] = only_svg["target"]["selector"][1:]
    assert xywh(only_svg) == "10,20,100,50"


def test_body_text_skips_data_urls() -> None:
    doc = {"body": [{"value": "ink"}, {"type": "Image", "value": "data:image/png;base64,AAAA"}]}
    assert body_text(doc) == "ink"


def test_open_annotation_round_trip() -> None:
    rec = Record("k", CANVAS, MANIFEST, "", "alice", anno("UV"), "t0", "t0", 1)
    v2 = to_oa(rec, "http://h")
    back = from_oa(v2)
    assert back["target"]["source"]["id"] == CANVAS
    assert [s["type"] for s in back["target"]["selector"]] == ["FragmentSelector", "SvgSelector"]
    assert back["body"]["value"] == "<p>UV</p>"
    assert w3c(rec, "http://h")["id"] == v2["@id"] and key_from_iri(v2["@id"]) == "k"


def test_tokens_and_slugs() -> None:
    users = parse_tokens(" t1=alice , t2=ed:editor")
    assert users["t1"].name == "alice" and not users["t1"].editor and users["t2"].editor
    with pytest.raises(ValueError):
        parse_tokens("justatoken")
    assert slug_key("My Note/../x") == "My-Note-..-x"
    assert slug_key("page") != "page" and len(slug_key(None)) == 32
