"""Commands ``iiifsrv ingest`` and ``iiifsrv objects list|show|remove``.

Entry layer: imports argparse, settings, catalogue and ingest.{run,profiles}. ``register`` adds
the commands to the main parser (one line in iiifsrv.cli.build_parser).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from typing import Any

from iiifsrv.catalogue import Catalogue, CatalogueStore
from iiifsrv.ingest import profiles
from iiifsrv.ingest.derive import IngestError
from iiifsrv.ingest.publish import S3Target
from iiifsrv.ingest.run import CATALOGUE_NAME
from iiifsrv.settings import Settings, load
from iiifsrv.state import open_state


def _paths(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="TOML configuration file (images and data are read from it)")
    p.add_argument(
        "--images",
        help="image root (a folder or s3://bucket/prefix): derivatives are written here",
    )
    p.add_argument("--data", help="state directory: the catalogue is <data>/catalogue.sqlite3")


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {"images": args.images, "data": args.data}
    return load(config_file=args.config, environ=os.environ, overrides=overrides)


def _meta(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SystemExit(f"iiifsrv ingest: --meta expects KEY=VALUE, not {item!r}")
        out[key.strip()] = value.strip()
    return out


def cmd_ingest(args: argparse.Namespace) -> int:
    import logging

    logging.basicConfig(level=logging.WARNING, format="iiifsrv: %(message)s")
    for noisy in ("tifffile", "pyvips"):  # their complaints become our one-line messages
        logging.getLogger(noisy).setLevel(logging.ERROR)
    settings = _settings(args)
    try:
        profile = profiles.load(args.profile)
    except profiles.ProfileError as exc:
        print(f"iiifsrv ingest: {exc}", file=sys.stderr)
        return 2
    if args.jobs < 0:
        print("iiifsrv ingest: --jobs must be 0 (one per core) or more", file=sys.stderr)
        return 2
    state = open_state(settings) if settings.database_url else None  # else <data>'s SQLite
    try:
        outcomes = _run(args, settings, profile, state.catalogue if state else None)
    finally:
        if state is not None:
            state.close()
    return 1 if any(o.status == "failed" for o in outcomes) else 0


def _run(
    args: argparse.Namespace,
    settings: Settings,
    profile: profiles.Profile,
    catalogue: CatalogueStore | None,
) -> list[Any]:
    from iiifsrv.ingest.run import run

    root = settings.image_root
    images, target = settings.images_path, None
    if root.kind == "s3":  # derivatives are staged under data, then uploaded
        target = S3Target.of(root, settings.s3_endpoint, settings.s3_region, settings.s3_timeout)
        images = settings.data_path / "s3-staging" / root.bucket / root.prefix
    return run(
        args.sources,
        target=target,
        images=images,
        data=settings.data_path,
        profile=profile,
        jobs=args.jobs or (os.cpu_count() or 1),
        object_id=args.id,
        label=args.label or "",
        metadata=_meta(args.meta),
        rights=args.rights or "",
        catalogue=catalogue,
    )


def _catalogue(args: argparse.Namespace) -> CatalogueStore | None:
    settings = _settings(args)
    if settings.database_url:  # the catalogue every replica reads (the process exits after)
        return open_state(settings).catalogue
    path = settings.data_path / CATALOGUE_NAME
    return Catalogue(path) if path.is_file() else None


def cmd_objects(args: argparse.Namespace) -> int:
    catalogue = _catalogue(args)
    if args.action == "list":
        objects = catalogue.list() if catalogue else []
        if args.json:
            print(json.dumps([o.to_json() for o in objects], indent=2))
            return 0
        for o in objects:
            extra = f", {len(o.bands)} bands" if o.bands else ""
            print(f"{o.id}\t{o.kind}\t{o.width}x{o.height}{extra}\t{o.label}")
        print(f"{len(objects)} object(s)", file=sys.stderr)
        return 0
    if not args.object_id:
        print(f"iiifsrv objects {args.action}: give an object identifier", file=sys.stderr)
        return 2
    obj = catalogue.get(args.object_id) if catalogue else None
    if obj is None:
        print(f"iiifsrv objects: no object {args.object_id!r} in the catalogue", file=sys.stderr)
        return 1
    if args.action == "show":
        print(json.dumps(obj.to_json(), indent=2))
        return 0
    # remove
    assert catalogue is not None
    removed_files: list[object] = []
    settings = _settings(args)
    idents = [b.image for b in obj.bands] or [obj.image]
    if not args.keep_files and settings.image_root.kind == "s3":
        target = S3Target.of(
            settings.image_root, settings.s3_endpoint, settings.s3_region, settings.s3_timeout
        )
        try:
            removed_files.extend(target.remove(idents))
        except IngestError as exc:
            print(f"iiifsrv objects remove: {exc}", file=sys.stderr)
            return 1  # the catalogue still names the object: run it again
    elif not args.keep_files:
        images = settings.images_path
        for ident in idents:
            for ext in (".tif", ".jp2"):
                path = images / f"{ident}{ext}"
                if path.is_file():
                    path.unlink()
                    removed_files.append(path)
        if obj.bands:
            with contextlib.suppress(OSError):
                (images / obj.id).rmdir()  # only when empty
    catalogue.remove(obj.id)
    print(f"removed {obj.id} ({len(removed_files)} derivative file(s) deleted)")
    return 0


def register(subparsers: Any) -> None:
    known = ", ".join(profiles.available()) or "none found"
    ingest = subparsers.add_parser(
        "ingest",
        help="make pyramidal derivatives and record objects in the catalogue",
        description="Ingest images, band folders and multi-page band TIFFs (see docs/ingest.md).",
    )
    ingest.add_argument("sources", nargs="+", metavar="SRC", help="file or folder to ingest")
    _paths(ingest)
    ingest.add_argument(
        "--profile", default="default", help=f"codecs/<NAME>.toml or a .toml path ({known})"
    )
    ingest.add_argument("--jobs", type=int, default=1, help="parallel workers (0 = one per core)")
    ingest.add_argument("--id", help="object identifier (one SRC only; default: its name)")
    ingest.add_argument("--label", help="object label (default: the identifier)")
    ingest.add_argument("--rights", help="rights URI (Creative Commons or RightsStatements.org)")
    ingest.add_argument(
        "--meta",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="metadata (title, creator, date, institution, description); repeatable",
    )
    ingest.set_defaults(func=cmd_ingest)

    objects = subparsers.add_parser("objects", help="list, show or remove catalogued objects")
    objects.add_argument("action", choices=("list", "show", "remove"))
    objects.add_argument("object_id", nargs="?", help="object identifier (show, remove)")
    _paths(objects)
    objects.add_argument("--json", action="store_true", help="list: print JSON")
    objects.add_argument(
        "--keep-files", action="store_true", help="remove: keep the derivative files"
    )
    objects.set_defaults(func=cmd_objects)
