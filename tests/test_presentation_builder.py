"""The manifest builder (pure): shapes that Mirador and Universal Viewer rely on."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from iiifsrv.catalogue import CatalogueObject
from iiifsrv.presentation import validate
from iiifsrv.presentation.builder import (
    Hooks,
    band_label,
    build_manifest,
    slug,
    thumbnail_size,
)
from tests.presentation_support import sample_objects

BASE = "https://example.org"
GOLDEN = Path(__file__).parent / "golden" / "multispectral-manifest.json"


def _objects() -> dict[str, CatalogueObject]:
    return {o.id: o for o in sample_objects()}


def _painting(doc: dict[str, Any], canvas: int = 0) -> dict[str, Any]:
    annotation: dict[str, Any] = doc["items"][canvas]["items"][0]["items"][0]
    return annotation


@pytest.mark.parametrize(
    ("width", "height", "expected"),
    [
        (4000, 3000, (200, 150, "200,")),
        (3000, 4000, (150, 200, ",200")),
        (120, 160, (120, 160, ",160")),  # never larger than the image
        (150, 100, (150, 100, "150,")),
        (200, 200, (200, 200, "200,")),
        (10000, 10, (200, 1, "200,")),
    ],
)
def test_thumbnail_size_fits_200_box_without_upscaling(
    width: int, height: int, expected: tuple[int, int, str]
) -> None:
    assert thumbnail_size(width, height) == expected


@pytest.mark.parametrize(
    ("name", "nm", "label", "expected"),
    [
        ("IR940", 940.0, "940 nm infrared", "940 nm infrared"),
        ("UV365", 365.0, "ultraviolet", "365 nm ultraviolet"),
        ("R650", 650.0, "", "650 nm R650"),
        ("X", None, "", "X"),
        ("B450", 450.5, "blue", "450.5 nm blue"),
    ],
)
def test_band_label_names_band_and_wavelength(
    name: str, nm: float | None, label: str, expected: str
) -> None:
    assert band_label(name, nm, label) == expected


def test_slug() -> None:
    assert slug("British Library") == "british-library"
    assert slug("  Bibliothèque nationale ") == "biblioth-que-nationale"
    assert slug("***") == "unnamed"


def test_multispectral_manifest_matches_golden_json() -> None:
    doc = build_manifest(BASE, "palimpsest", [_objects()["palimpsest"]])
    assert doc == json.loads(GOLDEN.read_text("utf-8"))


def test_multispectral_shape_single_choice_string_target_service_first() -> None:
    doc = build_manifest(BASE, "palimpsest", [_objects()["palimpsest"]])
    assert validate.errors(doc) == []
    assert len(doc["items"]) == 1
    annotation = _painting(doc)
    assert annotation["target"] == doc["items"][0]["id"]
    body = annotation["body"]
    assert isinstance(body, dict) and body["type"] == "Choice"
    labels = [item["label"]["en"][0] for item in body["items"]]
    assert labels == [
        "True colour (R650, G550, B450)",
        "False colour (IR940, R650, UV365)",
        "Principal components 1-3 (PCA)",
        "Ratio IR940 / UV365",
        "940 nm infrared",
        "650 nm red",
        "365 nm ultraviolet",
    ]
    for item in body["items"]:
        assert item["type"] == "Image" and item["format"] == "image/jpeg"
        assert (item["width"], item["height"]) == (120, 160)
        assert item["service"][0]["type"] == "ImageService3"
        assert item["service"][0]["profile"] == "level2"
        assert item["service"][1] == {
            "@id": item["service"][0]["id"].replace("/iiif/3/", "/iiif/2/"),
            "@type": "ImageService2",
            "profile": "http://iiif.io/api/image/2/level2.json",
        }
        assert item["thumbnail"][0]["id"].startswith(item["service"][0]["id"] + "/full/")
    assert body["items"][4]["service"][0]["id"] == f"{BASE}/iiif/3/palimpsest%2FIR940"


def test_image_manifest_fields() -> None:
    doc = build_manifest(BASE, "plain", [_objects()["plain"]])
    assert validate.errors(doc) == []
    assert doc["id"] == f"{BASE}/iiif/manifests/plain"
    assert doc["label"] == {"en": ["A plain image"]}
    assert doc["summary"] == {"en": ["A test image."]}
    assert doc["rights"] == "http://creativecommons.org/licenses/by/4.0/"
    assert {"label": {"en": ["Creator"]}, "value": {"none": ["Someone"]}} in doc["metadata"]
    assert "Example Library" in doc["requiredStatement"]["value"]["en"][0]
    assert doc["provider"][0]["label"] == {"en": ["Example Library"]}
    assert doc["thumbnail"][0]["id"] == f"{BASE}/iiif/3/plain/full/200,/0/default.jpg"
    assert (doc["thumbnail"][0]["width"], doc["thumbnail"][0]["height"]) == (200, 133)
    canvas = doc["items"][0]
    assert (canvas["width"], canvas["height"]) == (300, 200)
    body = _painting(doc)["body"]
    assert body["type"] == "Image" and body["format"] == "image/jpeg"
    assert [s.get("type", s.get("@type")) for s in body["service"]] == [
        "ImageService3",
        "ImageService2",
    ]


def test_audio_and_video_canvases_have_duration() -> None:
    tone = dataclasses.replace(_objects()["tone"], duration=1.5)
    doc = build_manifest(BASE, "tone", [tone])
    assert validate.errors(doc) == []
    assert doc["items"][0]["duration"] == 1.5
    assert "width" not in doc["items"][0]
    body = _painting(doc)["body"]
    assert body == {
        "id": f"{BASE}/media/av/tone.wav",
        "type": "Sound",
        "duration": 1.5,
        "format": "audio/wav",
    }
    film = CatalogueObject(
        id="film",
        label="Film",
        kind="video",
        media="av/film.mp4",
        duration=2.0,
        width=64,
        height=48,
    )
    doc = build_manifest(BASE, "film", [film])
    assert validate.errors(doc) == []
    canvas = doc["items"][0]
    assert (canvas["width"], canvas["height"], canvas["duration"]) == (64, 48, 2.0)
    body = _painting(doc)["body"]
    assert (body["type"], body["format"], body["duration"]) == ("Video", "video/mp4", 2.0)
    poster = f"{BASE}/media/av/film.mp4/poster.jpg"
    assert canvas["thumbnail"][0]["id"] == poster
    assert canvas["placeholderCanvas"]["items"][0]["items"][0]["body"]["id"] == poster


def test_hooks_add_annotation_pages_and_search_services() -> None:
    def page(base: str, canvas_id: str) -> dict[str, Any]:
        return {"id": f"{base}/annotations/page?canvas={canvas_id}", "type": "AnnotationPage"}

    def search(base: str, manifest_id: str) -> list[dict[str, Any]]:
        return [{"id": f"{base}/search", "type": "SearchService2"}]

    hooks = Hooks(annotation_page_ref=page, search_services=search)
    doc = build_manifest(BASE, "plain", [_objects()["plain"]], hooks=hooks)
    assert validate.errors(doc) == []
    assert doc["items"][0]["annotations"] == [page(BASE, doc["items"][0]["id"])]
    assert "items" not in doc["items"][0]["annotations"][0]
    assert doc["service"] == search(BASE, doc["id"])


def test_several_objects_make_one_canvas_each() -> None:
    objects = _objects()
    doc = build_manifest(BASE, "set", [objects["plain"], objects["palimpsest"]], label="Set")
    assert validate.errors(doc) == []
    assert doc["label"] == {"en": ["Set"]}
    assert [c["id"] for c in doc["items"]] == [
        f"{BASE}/iiif/manifests/set/canvas/1",
        f"{BASE}/iiif/manifests/set/canvas/2",
    ]


def test_object_without_size_is_refused() -> None:
    broken = dataclasses.replace(_objects()["plain"], width=0)
    with pytest.raises(ValueError, match="width"):
        build_manifest(BASE, "plain", [broken])


def test_presentation_package_never_imports_starlette() -> None:
    import ast

    package = Path(__file__).parent.parent / "iiifsrv" / "presentation"
    for module in package.glob("*.py"):
        tree = ast.parse(module.read_text("utf-8"))
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        assert not [n for n in names if n.startswith(("starlette", "pyvips"))], module.name


def test_https_licence_uris_become_the_http_form_presentation_3_wants() -> None:
    obj = dataclasses.replace(
        _objects()["plain"], rights="https://creativecommons.org/licenses/by-sa/4.0/"
    )
    doc = build_manifest(BASE, "plain", [obj])
    assert doc["rights"] == "http://creativecommons.org/licenses/by-sa/4.0/"
    other = dataclasses.replace(obj, rights="https://example.org/our-terms")
    doc = build_manifest(BASE, "plain", [other])
    assert "rights" not in doc
    assert "https://example.org/our-terms" in doc["requiredStatement"]["value"]["en"][0]
    assert validate.errors(doc) == []
