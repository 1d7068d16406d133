"""Local accounts: the ``iiifsrv users`` command, scrypt hashes, password sign-in at /session
(throttled per address and per account), sessions ending with a password change or removal."""

from __future__ import annotations

import io
import sqlite3
import sys

import pytest

from iiifsrv.access.accounts import STRONG, Accounts, hash_password, verify_password
from iiifsrv.cli import main
from iiifsrv.settings import Settings
from tests.access.conftest import CHEAP, PASSWORD, WRITER, Apps, add_account
from tests.annotations.annotation_samples import anno, container

pytestmark = pytest.mark.anyio


def users(settings: Settings, *args: str, stdin: str = "") -> int:
    old = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        return main(["users", *args[:1], "--data", settings.data, *args[1:]])
    finally:
        sys.stdin = old


def test_hash_is_scrypt_with_strong_cost_and_salted() -> None:
    a, b = hash_password("same password"), hash_password("same password")
    assert a.startswith(f"scrypt${STRONG.n}$8$1$") and STRONG.n >= 2**17
    assert a != b  # salted
    assert verify_password("same password", a) and not verify_password("same passwore", a)
    assert not verify_password("x", "bcrypt$garbage")


def test_unknown_name_costs_one_password_check_as_a_known_one(
    access_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wrong name is checked against a hash of the same cost as a wrong password (no timing
    tells the names apart), and a bad name never reaches the database."""
    from iiifsrv.access import accounts as module

    add_account(access_settings, "ann", "staff")
    store = Accounts(access_settings.data_path, CHEAP)
    checked: list[str] = []
    real = module.verify_password

    def spy(password: str, stored: str) -> bool:
        checked.append(stored.rsplit("$", 2)[0])  # scheme and cost, not salt or key
        return real(password, stored)

    monkeypatch.setattr(module, "verify_password", spy)
    assert store.login("ann", "wrong password here") is None
    assert store.login("nobody", "wrong password here") is None
    assert store.login("no such/name", "wrong password here") is None
    assert store.login("ann", PASSWORD) is not None
    assert len(checked) == 4 and len(set(checked)) == 1, checked


def test_users_command(access_settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        users(access_settings, "add", "ann", "--role", "staff,research", stdin=PASSWORD + "\n") == 0
    )
    assert users(access_settings, "add", "bob", "--generate") == 0
    out = capsys.readouterr().out
    generated = out.split("password for bob: ")[1].split()[0]
    assert len(generated) >= 20
    assert Accounts(access_settings.data_path).login("bob", generated) is not None
    assert users(access_settings, "add", "ann", stdin=PASSWORD + "\n") == 1
    assert "exists" in capsys.readouterr().err
    assert users(access_settings, "add", "carl", stdin="short\n") == 1
    assert "at least 10" in capsys.readouterr().err
    assert users(access_settings, "list") == 0
    assert capsys.readouterr().out.splitlines() == ["ann\tresearch,staff", "bob\t"]
    assert users(access_settings, "roles", "bob", "--role", "staff") == 0
    assert users(access_settings, "passwd", "ann", stdin="another long password\n") == 0
    assert Accounts(access_settings.data_path).login("ann", PASSWORD) is None
    assert users(access_settings, "remove", "bob") == 0
    assert users(access_settings, "remove", "bob") == 1
    capsys.readouterr()
    assert users(access_settings, "list") == 0
    assert capsys.readouterr().out.splitlines() == ["ann\tresearch,staff"]
    # no password in clear anywhere in the database
    db = sqlite3.connect(access_settings.data_path / "accounts.sqlite3")
    dump = "\n".join(db.iterdump())
    assert PASSWORD not in dump and "another long password" not in dump


async def test_password_sign_in_and_session_state(
    access_settings: Settings, app_client: Apps
) -> None:
    add_account(access_settings, "ann", "staff")
    c = app_client()
    r = await c.post("/session", json={"user": "ann", "password": PASSWORD})
    assert r.status_code == 200, r.text
    assert "HttpOnly" in r.headers["set-cookie"] and PASSWORD not in r.headers["set-cookie"]
    state = r.json()
    assert (state["user"], state["roles"], state["writer"]) == ("ann", ["staff"], False)
    assert (await c.get("/session")).json()["user"] == "ann"
    # an account session may read, not write: writes need a write token
    r = await c.post(container(), json=anno(), headers={"X-CSRF-Token": state["csrf"]})
    assert r.status_code == 401
    r = await c.post("/session", json={"user": "ann", "password": "wrong password!"})
    assert r.status_code == 401 and r.text == "wrong user name or password\n"
    r = await c.post("/session", json={"user": "nobody", "password": PASSWORD})
    assert r.status_code == 401 and r.text == "wrong user name or password\n"


async def test_password_change_and_removal_end_sessions(
    access_settings: Settings, app_client: Apps
) -> None:
    add_account(access_settings, "ann", "staff")
    c = app_client()
    assert (await c.post("/session", json={"user": "ann", "password": PASSWORD})).status_code == 200
    Accounts(access_settings.data_path, CHEAP).passwd("ann", "a brand new password")
    fresh = app_client()  # another worker: no cached account
    fresh.cookies = c.cookies
    assert (await fresh.get("/session")).json()["user"] is None
    Accounts(access_settings.data_path, CHEAP).remove("ann")


async def test_sign_in_throttled_per_account_and_per_address(
    access_settings: Settings, app_client: Apps
) -> None:
    add_account(access_settings, "ann")
    c = app_client(auth_failures=3)
    for i in range(3):
        r = await c.post("/session", json={"user": "ann", "password": f"wrong-{i}-password"})
        assert r.status_code == 401
    r = await c.post("/session", json={"user": "ann", "password": PASSWORD})
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    # the token sign-in of the same address is throttled too (per address)
    r = await c.post("/session", json={"token": WRITER})
    assert r.status_code == 429


async def test_account_throttle_is_per_account(access_settings: Settings, app_client: Apps) -> None:
    add_account(access_settings, "ann")
    app = app_client(auth_failures=2)
    creds = None
    for route in app._transport.app.app.routes:  # type: ignore[attr-defined]
        endpoint = getattr(route, "endpoint", None)
        owner = getattr(endpoint, "__self__", None)
        if owner is not None and hasattr(owner, "account_throttle"):
            creds = owner
    assert creds is not None
    # failures for "ann" from two addresses: the account is locked for a third address too
    creds.account_throttle.fail("user:ann", creds.clock())
    creds.account_throttle.fail("user:ann", creds.clock())
    r = await app.post("/session", json={"user": "ann", "password": PASSWORD})
    assert r.status_code == 429
    r = await app.post("/session", json={"user": "ann2", "password": PASSWORD})
    assert r.status_code == 401
