"""Ingest: pyramidal derivatives from masters and band sets, recorded in the catalogue.

Blocking work (pyvips, files, SQLite); imported by the CLI only, never by the server.
"""
