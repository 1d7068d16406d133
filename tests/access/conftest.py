"""Shared set-up of the access-control tests: settings with a rules file, accounts, clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from iiifsrv.access.accounts import Accounts, Cost
from iiifsrv.settings import Settings, replace
from iiifsrv.web.app import create_app

WRITER = "writer-Zq8vN2kLx4Rw7TyPm3Hc"
SECRET = "s" * 8 + "-shared-secret-of-all-replicas-0123"
PASSWORD = "correct horse battery"
CHEAP = Cost(2**10, 8, 1)  # accounts made by the tests: fast to hash (the server's cost: STRONG)
Apps = Callable[..., httpx.AsyncClient]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def access_settings(tmp_path: Path) -> Settings:
    images = tmp_path / "images"
    images.mkdir()
    data = tmp_path / "data"
    data.mkdir()
    return Settings(
        images=str(images),
        data=str(data),
        tokens=f"{WRITER}=wendy",
        annotation_canvases="any",
        session_secret=SECRET,
        access_rules=str(tmp_path / "access.toml"),
        access_reload=0,
    )


def add_account(settings: Settings, name: str, *roles: str) -> None:
    Accounts(settings.data_path, CHEAP).add(name, PASSWORD, list(roles))


@pytest.fixture
async def app_client(access_settings: Settings) -> AsyncIterator[Apps]:
    opened: list[tuple[Any, httpx.AsyncClient]] = []

    def make(base: str = "http://test", **changes: Any) -> httpx.AsyncClient:
        app = create_app(replace(access_settings, **changes))
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base)
        opened.append((app, client))
        return client

    yield make
    for app, client in opened:
        await client.aclose()
        await app.state.annotation_store.close()
