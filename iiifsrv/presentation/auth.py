"""The writer's identity for manifest registration: ``User`` (from iiifsrv.tokens).

Imports iiifsrv.tokens only. Authentication itself (Bearer header, path token, session cookie,
throttling) lives in one place for every route: iiifsrv/web/credentials.py.
"""

from __future__ import annotations

from iiifsrv.tokens import User

__all__ = ["User"]
