"""Caches: a byte-bounded in-memory LRU of encoded responses.

Imports only the standard library and cachetools.
"""
