"""HTTP layer: Starlette routes and the one error→response map.

The only package that imports Starlette; it calls service/ and the pure iiif/ layer.
"""
