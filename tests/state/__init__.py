"""Tests of the state backends (SQLite + files, PostgreSQL): one suite run against both."""
