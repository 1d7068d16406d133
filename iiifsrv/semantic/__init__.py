"""Semantic search over annotation text: an offline sentence-embedding model (the [semantic]
extra), vectors kept beside the annotation store, a brute-force cosine index, a background worker.

Imports the annotation model and store interface, numpy, and (lazily) sentence-transformers.
"""
