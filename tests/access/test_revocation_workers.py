"""Signing out ends the session and its IIIF access tokens in every worker: the sign-out list
lives in the shared state (sessions.sqlite3 in the data folder here; the database with
``database_url``), not in the memory of the worker that handled the sign-out.

Two real workers (``iiifsrv serve --workers 2``); every request on a new connection, many at
once, so both workers answer; the JSON access log names the worker (pid) of each request."""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from iiifsrv.access.accounts import Accounts
from tests.access.conftest import CHEAP, PASSWORD
from tests.conftest import start_server, stop_server

RULES = '[[rule]]\nobject = "jpeg2000"\naccess = "restricted"\nroles = ["staff"]\n'
TRIES = 24


def _each_on_a_new_connection(url: str, headers: dict[str, str]) -> list[int]:
    def one(_: int) -> int:
        with httpx.Client(headers=headers) as c:  # a new connection every time
            return c.get(url).status_code

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(TRIES)))


def _workers(log: Path, marker: str) -> dict[int, set[int]]:
    """pid -> statuses of the access-log lines whose query or path contains ``marker``."""
    seen: dict[int, set[int]] = {}
    for line in log.read_text().splitlines():
        if not line.startswith("{") or marker not in line:
            continue
        record = json.loads(line)
        seen.setdefault(record["pid"], set()).add(record["status"])
    return seen


def test_sign_out_revokes_tokens_and_cookie_in_every_worker(
    sample_root: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    shutil.copytree(sample_root / "data", data)
    Accounts(data, CHEAP).add("sam", PASSWORD, ["staff"])
    rules = tmp_path / "access.toml"
    rules.write_text(RULES)
    env = {
        "IIIFSRV_ACCESS_RULES": str(rules),
        "IIIFSRV_ACCESS_LOG": "json",
        "IIIFSRV_SESSION_REVOCATION_CHECK": "0",
    }
    server = start_server(sample_root / "images", data, "--workers", "2", env=env)
    try:
        base = server.url
        info = f"{base}/iiif/3/jpeg2000/info.json"
        with httpx.Client() as c:
            published = c.get(info)
            assert published.status_code == 401
            login = next(s for s in published.json()["service"] if s["profile"].endswith("login"))
            token_url = next(s for s in login["service"] if s["profile"].endswith("token"))["@id"]
            signed = c.post(f"{base}/session", json={"user": "sam", "password": PASSWORD})
            assert signed.status_code == 200
            cookie = {"Cookie": f"iiifsrv_session={c.cookies['iiifsrv_session']}"}
            token = c.get(token_url).json()["accessToken"]
        bearer = {"Authorization": f"Bearer {token}"}
        tile = published.json()["id"] + "/full/64,/0/default.jpg?before"
        assert _each_on_a_new_connection(info + "?before", bearer) == [200] * TRIES
        assert _each_on_a_new_connection(tile, cookie) == [200] * TRIES
        before = _workers(server.log, "before")
        assert len(before) == 2, f"one worker answered everything: {before}"

        with httpx.Client(headers=cookie) as c:  # sign out (one worker handles it)
            assert c.get(login["service"][1]["@id"]).status_code == 200

        tile = tile.replace("?before", "?after")
        assert _each_on_a_new_connection(info + "?after", bearer) == [401] * TRIES
        assert _each_on_a_new_connection(tile, cookie) == [401] * TRIES
        after = _workers(server.log, "after")
        assert len(after) == 2 and all(s == {401} for s in after.values()), after
    finally:
        stop_server(server)
