"""The annotation model: validation, what an annotation targets, its text, and its representations.

PURE: standard library, defusedxml (to parse SVG safely) and iiifsrv.errors. No I/O.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass
from typing import Any
from xml.etree.ElementTree import ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from iiifsrv.annotations.urls import TEXT_GRANULARITY_CONTEXT, Urls, annotation_url
from iiifsrv.errors import BadRequest, PayloadTooLarge

ANNO_CONTEXT = "http://www.w3.org/ns/anno.jsonld"
PRESENTATION3_CONTEXT = "http://iiif.io/api/presentation/3/context.json"
PRESENTATION2_CONTEXT = "http://iiif.io/api/presentation/2/context.json"

Doc = dict[str, Any]


@dataclass(frozen=True)
class Record:
    """One stored annotation. ``doc`` is the JSON as the client last sent it."""

    key: str
    canvas: str
    manifest: str
    via: str
    creator: str
    doc: Doc
    created: str
    modified: str
    version: int
    deleted: bool = False
    region: str = ""  # "x,y,w,h" the annotation targets, computed once when written ("" = none)
    kind: str = "Person"  # the writer's class: "Person" or "Software" (from its token's role)
    generator: Doc | None = None  # software: {"name": engine, "version": …}, server-recorded


@dataclass(frozen=True)
class Checked:
    """A validated annotation: the document and what the store indexes about it."""

    doc: Doc
    canvas: str
    manifest: str
    text: str
    region: str = ""


# Limits of one SvgSelector, apart from the request body limit: the selector is parsed when the
# annotation is written, so its size bounds the work one annotation can cost.
SVG_MAX_BYTES = 256 * 1024
SVG_MAX_ELEMENTS = 1000
# Representations the server owns: never taken from the client's document.
SERVER_OWNED = ("creator", "generator")


_XYWH = re.compile(r"^xywh=(?:(?:pixel|percent):)?\d+(?:\.\d+)?(?:,\d+(?:\.\d+)?){3}$")
_TIME = re.compile(r"^t=(?:npt:)?\d*(?:\.\d+)?(?:,\d*(?:\.\d+)?)?$")
_TAG = re.compile(r"<[^>]*>")
_WORD = re.compile(r"\w+", re.UNICODE)


def _first(value: Any) -> Any:
    if isinstance(value, list):
        return value[0] if value else None
    return value


def _id_of(value: Any) -> str:
    value = _first(value)
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        ident = value.get("id", value.get("@id"))
        if isinstance(ident, str):
            return ident
    return ""


def target_canvas(target: Any) -> tuple[str, str]:
    """(canvas URI without fragment, manifest URI or "") of an annotation's first target."""
    first = _first(target)
    manifest = ""
    if isinstance(first, str):
        canvas = first
    elif isinstance(first, dict):
        source = first.get("source")
        if source is not None:
            canvas = _id_of(source)
            if isinstance(source, dict):
                manifest = _id_of(source.get("partOf"))
        else:
            canvas = _id_of(first)
        manifest = manifest or _id_of(first.get("partOf"))
    else:
        canvas = ""
    return canvas.split("#", 1)[0], manifest


def _selectors(target: Any) -> list[Any]:
    found: list[Any] = []
    targets = target if isinstance(target, list) else [target]
    for t in targets:
        if isinstance(t, dict) and "selector" in t:
            sel = t["selector"]
            found.extend(sel if isinstance(sel, list) else [sel])
    return found


def check_selector(selector: Any) -> None:
    if not isinstance(selector, dict):
        raise BadRequest("a selector must be a JSON object")
    kind = selector.get("type")
    value = selector.get("value")
    if kind == "FragmentSelector":
        if not isinstance(value, str) or not (_XYWH.match(value) or _TIME.match(value)):
            raise BadRequest(f"FragmentSelector value {value!r} is not xywh=x,y,w,h or t=")
    elif kind == "SvgSelector":
        if not isinstance(value, str):
            raise BadRequest("SvgSelector needs an SVG document in value")
        if len(value.encode("utf-8")) > SVG_MAX_BYTES:
            raise PayloadTooLarge(f"an SvgSelector may have at most {SVG_MAX_BYTES} bytes")
        try:
            root = fromstring(value)
        except (ParseError, DefusedXmlException) as exc:
            raise BadRequest(f"SvgSelector value is not well-formed SVG: {exc}") from None
        if root.tag.rsplit("}", 1)[-1] != "svg":
            raise BadRequest("SvgSelector value must have an <svg> root element")
        if sum(1 for _ in root.iter()) > SVG_MAX_ELEMENTS:
            raise BadRequest(f"an SvgSelector may have at most {SVG_MAX_ELEMENTS} elements")
    elif not isinstance(kind, str):
        raise BadRequest("a selector needs a type")
    refined = selector.get("refinedBy")
    if refined is not None:
        check_selector(refined)


def check(doc: Any) -> Checked:
    """Validate a W3C/IIIF annotation; raise BadRequest with a one-line reason."""
    if not isinstance(doc, dict):
        raise BadRequest("an annotation must be a JSON object")
    try:
        serialised = json.dumps(doc, allow_nan=False)
    except (ValueError, RecursionError):
        raise BadRequest("an annotation may not hold NaN or Infinity, or nest so deep") from None
    if "\\u0000" in serialised:
        # PostgreSQL text cannot hold NUL, and no annotation needs one: refuse it everywhere.
        raise BadRequest("an annotation may not contain NUL characters")
    kind = doc.get("type", doc.get("@type"))
    kinds = kind if isinstance(kind, list) else [kind]
    if "Annotation" not in kinds:
        raise BadRequest('an annotation needs "type": "Annotation"')
    target = doc.get("target")
    if target is None or target == []:
        raise BadRequest("an annotation needs a target")
    canvas, manifest = target_canvas(target)
    if not canvas.startswith(("http://", "https://")):
        raise BadRequest("the target must be an http(s) canvas URI")
    for sel in _selectors(target):
        check_selector(sel)
    return Checked(doc=doc, canvas=canvas, manifest=manifest, text=body_text(doc), region=xywh(doc))


def load_doc(text: str) -> Doc:
    """A stored document. NaN/Infinity, which older versions stored from lenient input, read as
    null, so that every response stays valid JSON."""
    doc: Doc = json.loads(text, parse_constant=lambda _name: None)
    return doc


def _bodies(doc: Doc) -> list[Any]:
    body = doc.get("body", [])
    return body if isinstance(body, list) else [body]


def _plain(value: str) -> str:
    return " ".join(html.unescape(_TAG.sub(" ", value)).split())


def body_text(doc: Doc) -> str:
    """Plain text of the textual bodies (HTML stripped; data: URLs and images skipped)."""
    parts = []
    for body in _bodies(doc):
        if isinstance(body, dict):
            value = body.get("value", body.get("chars"))
            if isinstance(value, str) and not value.startswith("data:"):
                parts.append(_plain(value))
        elif isinstance(body, str) and not body.startswith(("http://", "https://", "data:")):
            parts.append(_plain(body))
    return "\n".join(p for p in parts if p)


def words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def motivations(doc: Doc) -> list[str]:
    value = doc.get("motivation", [])
    values = value if isinstance(value, list) else [value]
    return [str(v).removeprefix("oa:").removeprefix("sc:") for v in values if v]


_SVG_NUM = re.compile(r"-?\d+(?:\.\d+)?")


def xywh(doc: Doc) -> str:
    """The region an annotation targets as "x,y,w,h" (from a FragmentSelector or SVG), or ""."""
    sels = _selectors(doc.get("target"))
    for sel in sels:
        if isinstance(sel, dict) and sel.get("type") == "FragmentSelector":
            value = str(sel.get("value", ""))
            if value.startswith("xywh="):
                return value[5:].removeprefix("pixel:")
    for sel in sels:
        if isinstance(sel, dict) and sel.get("type") == "SvgSelector":
            box = _svg_box(str(sel.get("value", "")))
            if box:
                return box
    target = _first(doc.get("target"))
    if isinstance(target, str) and "#xywh=" in target:
        return target.split("#xywh=", 1)[1]
    return ""


def _svg_box(svg: str) -> str:
    """The bounding box of the SVG's shapes, or "" (never raises: stored data is read here)."""
    try:
        return _svg_box_of(svg)
    except (ValueError, OverflowError, TypeError):
        return ""


def _svg_box_of(svg: str) -> str:
    try:
        root = fromstring(svg)
    except (ParseError, DefusedXmlException):
        return ""
    xs: list[float] = []
    ys: list[float] = []
    for el in root.iter():
        tag = el.tag.rsplit("}", 1)[-1]
        coords: list[float] = []
        if tag == "path":
            coords = [float(n) for n in _SVG_NUM.findall(el.get("d", ""))]
        elif tag in ("polygon", "polyline"):
            coords = [float(n) for n in _SVG_NUM.findall(el.get("points", ""))]
        elif tag == "rect":
            x, y = float(el.get("x", 0)), float(el.get("y", 0))
            coords = [x, y, x + float(el.get("width", 0)), y + float(el.get("height", 0))]
        elif tag in ("circle", "ellipse"):
            cx, cy = float(el.get("cx", 0)), float(el.get("cy", 0))
            rx = float(el.get("rx", el.get("r", 0)))
            ry = float(el.get("ry", el.get("r", 0)))
            coords = [cx - rx, cy - ry, cx + rx, cy + ry]
        xs.extend(coords[0::2])
        ys.extend(coords[1::2])
    if not xs or not ys:
        return ""
    x0, y0 = max(0, int(min(xs))), max(0, int(min(ys)))
    return f"{x0},{y0},{max(1, round(max(xs)) - x0)},{max(1, round(max(ys)) - y0)}"


# ---- provenance ----------------------------------------------------------------------------

KINDS = ("Person", "Software")
GENERATOR_FIELDS = ("name", "version", "homepage")


def check_generator(value: Any) -> Doc:
    """The engine a software agent names for a batch: {"name", "version"[, "homepage"]}."""
    if not isinstance(value, dict) or not isinstance(value.get("name"), str) or not value["name"]:
        raise BadRequest('generator must be {"name": engine, "version": its version}')
    out: Doc = {}
    for name in GENERATOR_FIELDS:
        item = value.get(name)
        if item is not None:
            if not isinstance(item, str) or len(item) > 200:
                raise BadRequest(f"generator.{name} must be a string of at most 200 characters")
            out[name] = item
    return out


def creator(rec: Record, base_url: str) -> Doc:
    """The W3C ``creator`` of a record: a stable id per writer, its class and name."""
    return {
        "id": Urls(base_url).agent(rec.kind, rec.creator),
        "type": rec.kind,
        "name": rec.creator,
        "nickname": rec.creator,
    }


def generator(rec: Record, base_url: str) -> Doc | None:
    """The W3C ``generator`` of a machine-made record: the engine (and version) that made it."""
    if rec.kind != "Software":
        return None
    gen = rec.generator or {}
    name = " ".join(v for v in (gen.get("name"), gen.get("version")) if isinstance(v, str) and v)
    out: Doc = {
        "id": Urls(base_url).agent(rec.kind, rec.creator) + "#generator",
        "type": "Software",
        "name": name or rec.creator,
    }
    if isinstance(gen.get("version"), str):
        out["softwareVersion"] = gen["version"]
    if isinstance(gen.get("homepage"), str):
        out["homepage"] = gen["homepage"]
    return out


def contexts(rec: Record, base_url: str) -> list[str]:
    """The extension contexts a record's representation uses (textGranularity, ours)."""
    out = []
    if "textGranularity" in rec.doc:
        out.append(TEXT_GRANULARITY_CONTEXT)
    if rec.kind == "Software" or "confidence" in rec.doc:
        out.append(Urls(base_url).context())
    return out


# ---- representations ---------------------------------------------------------------------


def w3c(rec: Record, base_url: str, *, context: bool = True) -> Doc:
    """The annotation as the W3C protocol and viewers see it: server id, via, creator, dates."""
    out: Doc = {}
    if context:
        extra = contexts(rec, base_url)
        out["@context"] = [ANNO_CONTEXT, *extra] if extra else ANNO_CONTEXT
    out["id"] = annotation_url(base_url, rec.canvas, rec.key)
    out["type"] = "Annotation"
    for name, value in rec.doc.items():
        if name not in ("@context", "id", "type", "via", "created", "modified", *SERVER_OWNED):
            out[name] = value
    if rec.via:
        out["via"] = rec.via
    out["creator"] = creator(rec, base_url)
    out["created"] = rec.created
    out["modified"] = rec.modified
    made_by = generator(rec, base_url)
    if made_by is not None:
        out["generator"] = made_by
        out["generated"] = rec.created
    return out


def annotot_view(rec: Record, base_url: str) -> Doc:
    """What Annotot returns: the data as the client stored it, under the id it knows; the
    creator is the writer the server authenticated (a client-written one is dropped)."""
    out = {k: v for k, v in rec.doc.items() if k not in SERVER_OWNED}
    if not (rec.via and rec.doc.get("id") == rec.via):
        out["id"] = annotation_url(base_url, rec.canvas, rec.key)
    # The name as a string, the form the Mirador annotation editor itself writes; the full
    # provenance (id, Person or Software) beside it, under a name Annotot clients ignore.
    out["creator"] = rec.creator
    out["provenance"] = {"creator": creator(rec, base_url)}
    made_by = generator(rec, base_url)
    if made_by is not None:
        out["provenance"].update(generator=made_by, generated=rec.created)
    return out


# ---- Open Annotation (IIIF Presentation 2, SimpleAnnotationServer) ------------------------


def _v2_selector(sel: Any) -> Doc | None:
    if not isinstance(sel, dict):
        return None
    kind = sel.get("type")
    if kind in ("SvgSelector", "FragmentSelector"):
        return {"@type": f"oa:{kind}", "value": sel.get("value")}
    return None


def to_oa(rec: Record, base_url: str) -> Doc:
    """The annotation in Open Annotation form, as SimpleAnnotationServer's /search returns it."""
    doc = rec.doc
    resources = []
    for body in _bodies(doc):
        if isinstance(body, dict) and body.get("type", "TextualBody") == "TextualBody":
            tagging = body.get("purpose") == "tagging"
            v2body: Doc = {"@type": "oa:Tag" if tagging else "dctypes:Text"}
            v2body["chars"] = body.get("value", "")
            for name in ("format", "language"):
                if name in body:
                    v2body[name] = body[name]
            resources.append(v2body)
        elif isinstance(body, dict):
            resources.append({"@id": _id_of(body), "@type": "dctypes:" + str(body.get("type"))})
    on: Doc = {"@type": "oa:SpecificResource", "full": rec.canvas}
    target = _first(doc.get("target"))
    sels = [s for s in (_v2_selector(x) for x in _selectors(target)) if s]
    if isinstance(target, str) and "#" in target:
        sels = [{"@type": "oa:FragmentSelector", "value": target.split("#", 1)[1]}]
    if len(sels) == 1:
        on["selector"] = sels[0]
    elif len(sels) > 1:
        on["selector"] = {"@type": "oa:Choice", "default": sels[0], "item": sels[1]}
    else:
        # The whole canvas (adapters expect a selector to be present).
        on["selector"] = {"@type": "oa:FragmentSelector", "value": "xywh=percent:0,0,100,100"}
    if rec.manifest:
        on["within"] = {"@id": rec.manifest, "@type": "sc:Manifest"}
    motivation = motivations(doc) or ["commenting"]
    return {
        "@context": PRESENTATION2_CONTEXT,
        "@id": annotation_url(base_url, rec.canvas, rec.key),
        "@type": "oa:Annotation",
        "motivation": [f"oa:{m}" for m in motivation],
        "resource": resources[0] if len(resources) == 1 else resources,
        "on": [on],
        **oa_provenance(rec, base_url),
    }


def oa_provenance(rec: Record, base_url: str) -> Doc:
    """The writer in Open Annotation terms (SAS, Content Search 1.0): ``annotatedBy`` with its
    URI and class, and for software ``serializedBy``, the engine."""
    out: Doc = {
        "annotatedBy": {
            "@id": Urls(base_url).agent(rec.kind, rec.creator),
            "@type": "prov:SoftwareAgent" if rec.kind == "Software" else "foaf:Person",
            "name": rec.creator,
        }
    }
    if rec.kind == "Software":
        out["serializedBy"] = _oa_generator(rec, base_url)
    return out


def _oa_generator(rec: Record, base_url: str) -> Doc:
    made_by = generator(rec, base_url) or {}
    return {"@id": made_by.get("id"), "@type": "prov:SoftwareAgent", "name": made_by.get("name")}


def _v3_selector(sel: Any) -> Any:
    if not isinstance(sel, dict):
        raise BadRequest("an Open Annotation selector must be a JSON object")
    kind = sel.get("@type")
    if kind in ("oa:SvgSelector", "oa:FragmentSelector"):
        return {"type": str(kind)[3:], "value": sel.get("value")}
    if kind == "oa:Choice":
        return [_v3_selector(sel.get("default")), _v3_selector(sel.get("item"))]
    raise BadRequest(f"unsupported Open Annotation selector {kind!r}")


def from_oa(v2: Any) -> Doc:
    """A W3C annotation from an Open Annotation one (what the SAS adapter POSTs)."""
    if not isinstance(v2, dict):
        raise BadRequest("an annotation must be a JSON object")
    resource = v2.get("resource", [])
    bodies = []
    for res in resource if isinstance(resource, list) else [resource]:
        if not isinstance(res, dict):
            continue
        body: Doc = {"type": "TextualBody", "value": res.get("chars", "")}
        for name in ("format", "language"):
            if name in res:
                body[name] = res[name]
        if res.get("@type") == "oa:Tag":
            body["purpose"] = "tagging"
        bodies.append(body)
    on = _first(v2.get("on"))
    target: Any
    if isinstance(on, str):
        target = on
    elif isinstance(on, dict):
        full = on.get("full")
        if not isinstance(full, str):
            raise BadRequest('"on" needs "full": the canvas URI')
        source: Any = full
        within = on.get("within")
        if within:
            source = {
                "id": full,
                "type": "Canvas",
                "partOf": [{"id": _id_of(within), "type": "Manifest"}],
            }
        target = {"type": "SpecificResource", "source": source}
        if on.get("selector") is not None:
            target["selector"] = _v3_selector(on["selector"])
    else:
        raise BadRequest('an Open Annotation needs "on"')
    motivation = [m.removeprefix("oa:") for m in motivations(v2)] or ["commenting"]
    doc: Doc = {
        "type": "Annotation",
        "motivation": motivation[0] if len(motivation) == 1 else motivation,
    }
    if isinstance(v2.get("@id"), str):
        doc["id"] = v2["@id"]
    if v2.get("annotatedBy") is not None:
        # The writer the client claims (foaf:Person, prov:SoftwareAgent): checked against its
        # token like a W3C creator, never shown (the server names the writer).
        doc["creator"] = v2["annotatedBy"]
    doc["body"] = bodies[0] if len(bodies) == 1 else bodies
    doc["target"] = target
    return doc
