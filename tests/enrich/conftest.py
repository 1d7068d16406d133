"""Fixtures of the enrichment tests: each annotation backend (SQLite, real PostgreSQL) with a
person's, an editor's and a software agent's token."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import httpx
import pytest

from iiifsrv.settings import Settings
from iiifsrv.web.app import create_app
from tests.annotations.conftest import TOKENS, backend_settings, pg_schema  # noqa: F401

AGENT_TOKEN = "ocr-bot-token-Zq8vN2kLx4Rw7Ty"
AGENT = {"Authorization": f"Bearer {AGENT_TOKEN}"}
OTHER_AGENT = {"Authorization": "Bearer tagger-token-Jd5sQ9fWb2Ge6Uo"}
AGENT_TOKENS = f"{TOKENS},{AGENT_TOKEN}=ocr-bot:agent,tagger-token-Jd5sQ9fWb2Ge6Uo=tagger:agent"


@pytest.fixture
def agent_settings(backend_settings: Settings) -> Settings:  # noqa: F811
    return dataclasses.replace(backend_settings, tokens=AGENT_TOKENS, annotation_batch_max=50)


@pytest.fixture
async def agent_client(agent_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(agent_settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c
    await app.state.annotation_store.close()
