"""The annotation store: model, SQLite and PostgreSQL backends, Content Search.

Imports nothing from web/. What the manifest builder needs is re-exported here.
"""

from iiifsrv.annotations.urls import (
    annotation_page_ref,
    canvas_container_url,
    manifest_container_url,
    search_services,
)

__all__ = [
    "annotation_page_ref",
    "canvas_container_url",
    "manifest_container_url",
    "search_services",
]
