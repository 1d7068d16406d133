"""Sources: resolve identifiers safely under the image root and describe files (blocking I/O).

May import iiifsrv.errors and iiifsrv.iiif (pure); never Starlette.
"""
