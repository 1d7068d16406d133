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


RULES = """
[[rule]]
object = "palimpsest"
access = "restricted"
roles = ["staff"]

[[rule]]
object = "large"
access = "degraded"
max_size = 256
roles = ["staff"]

[[rule]]
object = "flat"
access = "clickthrough"

[[rule]]
match = "jpeg2000"
access = "restricted"
locations = ["10.9.0.0/16"]

[[rule]]
match = "tone.wav"
access = "restricted"
roles = ["staff"]
"""
READING_ROOM = ("10.9.1.1", 4000)


@pytest.fixture(scope="session")
def sample_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small sample collection (images, a multispectral object, audio) and its catalogue."""
    from iiifsrv import samples

    root = tmp_path_factory.mktemp("access-samples")
    samples.ensure(root / "images", small=True, data=root / "data")
    return root


@pytest.fixture
def protected(sample_root: Path, tmp_path: Path) -> Settings:
    """Settings over the sample collection with RULES in force and a staff account."""
    import shutil

    data = tmp_path / "data"
    shutil.copytree(sample_root / "data", data)
    rules = tmp_path / "access.toml"
    rules.write_text(RULES)
    settings = Settings(
        images=str(sample_root / "images"),
        data=str(data),
        tokens=f"{WRITER}=wendy",
        annotation_canvases="any",
        session_secret=SECRET,
        access_rules=str(rules),
        access_reload=0,
    )
    add_account(settings, "sam", "staff")
    add_account(settings, "rita", "reader")
    return settings


@pytest.fixture
async def clients(protected: Settings) -> AsyncIterator[Callable[..., httpx.AsyncClient]]:
    """``clients(client=(ip, port))``: clients of ONE application (shared caches)."""
    async for make in clients_of(protected):
        yield make


async def clients_of(settings: Settings) -> AsyncIterator[Callable[..., httpx.AsyncClient]]:
    """One application of ``settings`` and a maker of its clients, all closed afterwards."""
    app = create_app(settings)
    opened: list[httpx.AsyncClient] = []

    def make(client: tuple[str, int] = ("127.0.0.1", 5000)) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=client)
        c = httpx.AsyncClient(transport=transport, base_url="http://test")
        opened.append(c)
        return c

    yield make
    for c in opened:
        await c.aclose()
    await app.state.annotation_store.close()


async def sign_in(client: httpx.AsyncClient, user: str = "sam") -> None:
    r = await client.post("/session", json={"user": user, "password": PASSWORD})
    assert r.status_code == 200, r.text
