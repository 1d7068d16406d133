"""Canvas identity on the way out: a stored record shown under one request's base, its target's
canvas (and the manifest it is part of) named exactly as that request's manifest names them.

PURE: imports the annotation model and urls. The way in (normalising) is AnnotationService's.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from iiifsrv.annotations.model import Doc, Record
from iiifsrv.annotations.urls import Urls


def present(rec: Record, urls: Urls) -> Record:
    """The record with public canvas and manifest URIs, also inside the document's target.

    The stored document keeps what its client sent (whatever host it used); the columns hold
    the canvas's key, so the target is rewritten from them."""
    canvas = urls.public(rec.canvas)
    manifest = urls.public(rec.manifest) if rec.manifest else ""
    doc = retarget(rec.doc, canvas, manifest)
    return dataclasses.replace(rec, canvas=canvas, manifest=manifest, doc=doc)


def retarget(doc: Doc, canvas: str, manifest: str = "") -> Doc:
    """A copy of ``doc`` whose first target names ``canvas`` (fragment kept), and ``manifest``
    as the first ``partOf`` where the target has one."""
    target = doc.get("target")
    first = target[0] if isinstance(target, list) and target else target
    new = _one(first, canvas, manifest)
    if isinstance(target, list) and target:
        return {**doc, "target": [new, *target[1:]]}
    return {**doc, "target": new}


def _with_fragment(old: str, canvas: str) -> str:
    return canvas + ("#" + old.split("#", 1)[1] if "#" in old else "")


def _part_of(value: Any, manifest: str) -> Any:
    if not manifest:
        return value
    if isinstance(value, list) and value:
        return [_part_of(value[0], manifest), *value[1:]]
    if isinstance(value, str):
        return manifest
    if isinstance(value, dict):
        return {**value, ("@id" if "@id" in value and "id" not in value else "id"): manifest}
    return value


def _resource(value: Any, canvas: str, manifest: str) -> Any:
    """A canvas named by a string or an object with an id (and perhaps a partOf)."""
    if isinstance(value, str):
        return _with_fragment(value, canvas)
    if isinstance(value, list) and value:
        return [_resource(value[0], canvas, manifest), *value[1:]]
    if isinstance(value, dict):
        name = "@id" if "@id" in value and "id" not in value else "id"
        out = {**value, name: _with_fragment(str(value.get(name, "")), canvas)}
        if "partOf" in value:
            out["partOf"] = _part_of(value["partOf"], manifest)
        return out
    return value


def _one(target: Any, canvas: str, manifest: str) -> Any:
    if isinstance(target, dict) and "source" in target:
        out = {**target, "source": _resource(target["source"], canvas, manifest)}
        if "partOf" in target:
            out["partOf"] = _part_of(target["partOf"], manifest)
        return out
    return _resource(target, canvas, manifest)
