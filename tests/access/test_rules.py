"""The pure access decision, table-tested; rules parsing; the re-reading rule book."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import pytest

from iiifsrv.access.book import RuleBook
from iiifsrv.access.rules import (
    ANONYMOUS,
    Resource,
    RulesError,
    Subject,
    decide,
    parse_rules,
)

RULES = parse_rules(
    """
[[rule]]
object = "secret"
access = "restricted"
roles = ["staff"]

[[rule]]
object = "preview"
access = "degraded"
max_size = 1024
roles = ["research"]

[[rule]]
match = "room/*"
access = "restricted"
roles = ["staff"]
locations = ["10.1.0.0/16", "2001:db8::/32"]

[[rule]]
match = "terms/*"
access = "clickthrough"

[[rule]]
match = "open/*"
access = "public"

[[rule]]
match = "ms/b3"
access = "restricted"
roles = ["*"]
"""
)


def subject(user: str | None = None, *roles: str, ip: str = "", agreed: bool = False) -> Subject:
    return Subject(user, frozenset(roles), ipaddress.ip_address(ip) if ip else None, agreed=agreed)


READER = subject("ann", "research")
STAFF = subject("bob", "staff")
NOBODY_IN_ROOM = subject(ip="10.1.4.5")

TABLE = [
    # subject, resource, kind, status, max_size, key
    (ANONYMOUS, Resource("plain/a.jpg"), "allow", 200, 0, "public"),
    (ANONYMOUS, Resource("secret"), "deny", 401, 0, "deny:r1"),
    (ANONYMOUS, Resource("secret/band1"), "deny", 401, 0, "deny:r1"),
    (ANONYMOUS, Resource("secretive"), "allow", 200, 0, "public"),
    (READER, Resource("secret"), "deny", 403, 0, "deny:r1"),
    (STAFF, Resource("secret/band1"), "allow", 200, 0, "allow:r1"),
    (ANONYMOUS, Resource("other", object_id="secret"), "deny", 401, 0, "deny:r1"),
    (ANONYMOUS, Resource("preview"), "degrade", 401, 1024, "degraded:1024:r2"),
    (STAFF, Resource("preview"), "degrade", 403, 1024, "degraded:1024:r2"),
    (READER, Resource("preview"), "allow", 200, 0, "allow:r2"),
    (ANONYMOUS, Resource("room/x"), "deny", 401, 0, "deny:r3"),
    (NOBODY_IN_ROOM, Resource("room/x"), "allow", 200, 0, "allow:r3"),
    (subject(ip="10.2.0.1"), Resource("room/x"), "deny", 401, 0, "deny:r3"),
    (subject(ip="2001:db8::7"), Resource("room/x"), "allow", 200, 0, "allow:r3"),
    (STAFF, Resource("room/x"), "allow", 200, 0, "allow:r3"),
    (ANONYMOUS, Resource("terms/t"), "deny", 401, 0, "deny:r4"),
    (subject(agreed=True), Resource("terms/t"), "allow", 200, 0, "allow:r4"),
    (ANONYMOUS, Resource("open/o"), "allow", 200, 0, "public"),  # explicit public: shared
    (subject("zed"), Resource("ms/b3"), "allow", 200, 0, "allow:r6"),
    # a composite: each band decided alone, the strictest wins
    (ANONYMOUS, Resource("ms/rgb:b1,b2,b3", "ms", ("ms/b1", "ms/b3")), "deny", 401, 0, "deny:r6"),
    (
        subject("zed"),
        Resource("ms/rgb:b1,b3", "ms", ("ms/b1", "ms/b3")),
        "allow",
        200,
        0,
        "allow:r6",
    ),
    (ANONYMOUS, Resource("ms/rgb:b1,b2", "ms", ("ms/b1", "ms/b2")), "allow", 200, 0, "public"),
]


@pytest.mark.parametrize(("who", "what", "kind", "status", "size", "key"), TABLE)
def test_decide(who: Subject, what: Resource, kind: str, status: int, size: int, key: str) -> None:
    d = decide(who, what, RULES)
    assert (d.kind, d.status, d.max_size, d.key) == (kind, status, size, key)
    assert d.protected == (key != "public")


def test_no_rules_everything_public() -> None:
    assert decide(ANONYMOUS, Resource("anything"), ()).key == "public"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[rule]]\naccess = "restricted"\nroles = ["a"]', "exactly one of match"),
        ('[[rule]]\nmatch = "a"\nobject = "b"', "exactly one of match"),
        ('[[rule]]\nmatch = "a"\naccess = "secret"', "access must be one of"),
        ('[[rule]]\nmatch = "a"\naccess = "restricted"', "needs roles or locations"),
        ('[[rule]]\nmatch = "a"\naccess = "location"\nroles = ["x"]', "needs locations"),
        ('[[rule]]\nmatch = "a"\naccess = "degraded"\nroles = ["x"]', "needs max_size"),
        ('[[rule]]\nmatch = "a"\naccess = "restricted"\nlocations = ["10.0.0.300/8"]', "not an IP"),
        ('[[rule]]\nmatch = "a"\nrole = ["x"]', "unknown key 'role'"),
        ("rules = 1", "unknown top-level key"),
        ("[[rule]\n", "not valid TOML"),
    ],
)
def test_bad_rules(text: str, message: str) -> None:
    with pytest.raises(RulesError, match=message):
        parse_rules(text)


def test_location_rule_is_restricted_to_its_addresses_or_roles() -> None:
    """``access = "location"`` (the issue's word): restricted to the addresses, a role OR a
    location lets in, and nobody else: 403 (signing in cannot help) or 401 with roles."""
    (room,) = parse_rules(
        '[[rule]]\nmatch = "r/*"\naccess = "location"\nlocations = ["10.2.0.0/16"]'
    )
    assert room.mode == "restricted" and not room.roles
    inside, outside = subject(ip="10.2.3.4"), subject(ip="192.0.2.1")
    assert decide(inside, Resource("r/1"), (room,)).kind == "allow"
    d = decide(outside, Resource("r/1"), (room,))
    assert (d.kind, d.status) == ("deny", 403)
    (either,) = parse_rules(
        '[[rule]]\nmatch = "r/*"\naccess = "location"\nlocations = ["10.2.0.0/16"]\n'
        'roles = ["staff"]'
    )
    assert decide(subject("sam", "staff", ip="192.0.2.1"), Resource("r/1"), (either,)).allowed
    assert decide(outside, Resource("r/1"), (either,)).status == 401


def test_book_rereads_after_interval_and_keeps_last_good(tmp_path: Path) -> None:
    path = tmp_path / "access.toml"
    path.write_text('[[rule]]\nmatch = "a/*"\naccess = "restricted"\nroles = ["x"]\n')
    now = [0.0]
    book = RuleBook(path, 5, clock=lambda: now[0])
    assert [r.match for r in book.rules()] == ["a/*"]
    path.write_text('[[rule]]\nmatch = "b/*"\naccess = "clickthrough"\n')
    os.utime(path, ns=(1, 10**18))
    now[0] = 4.0
    assert [r.match for r in book.rules()] == ["a/*"]  # within the interval: not re-read
    now[0] = 5.5
    assert [r.match for r in book.rules()] == ["b/*"]
    path.write_text("not toml [")
    os.utime(path, ns=(1, 2 * 10**18))
    now[0] = 11.0
    assert [r.match for r in book.rules()] == ["b/*"]  # broken file: last good rules stay
    path.unlink()
    now[0] = 17.0
    assert book.rules() == ()


def test_book_refuses_a_broken_file_at_start(tmp_path: Path) -> None:
    path = tmp_path / "access.toml"
    path.write_text('[[rule]]\nmatch = "a"\naccess = "nope"\n')
    with pytest.raises(RulesError, match="access must be one of"):
        RuleBook(path, 5)
