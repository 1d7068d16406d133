"""Presentation API 3: manifest builder, file-backed manifest store, collections, change stream.

Imports the catalogue, iiif_prezi3, jsonschema and the standard library; never Starlette.
"""
