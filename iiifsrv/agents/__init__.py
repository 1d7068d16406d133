"""Software agents (OCR, …) that write annotations through the AnnotationService as ``Software``.

Imports the annotation service, catalogue, imaging helpers and settings; never Starlette.
"""
