"""Access rules and the one access decision: ``decide(subject, resource, rules) -> Decision``.

PURE: imports only the standard library (ipaddress, fnmatch, tomllib for parsing text). No
clock, no files: rules.py parses TOML text it is given; access/book.py re-reads the file.
"""

from __future__ import annotations

import ipaddress
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

MODES = ("public", "restricted", "degraded", "clickthrough")
# What a curator may write as ``access``: the modes, and "location" (the word for a
# rule that lets in by address: read as "restricted" with its ``locations``, roles optional).
ACCESS = (*MODES, "location")
ANY_USER = "*"  # the role every signed-in account has
ALLOW, DEGRADE, DENY = "allow", "degrade", "deny"


@dataclass(frozen=True)
class Rule:
    """One curator's rule. ``match`` is a glob over image identifiers / media paths; ``object`` a
    catalogue object id (its image, bands, composites, spectra and manifest). First match wins."""

    name: str
    mode: str = "public"
    match: str = ""
    object: str = ""
    roles: frozenset[str] = frozenset()
    locations: tuple[Network, ...] = ()
    max_size: int = 0  # degraded: longest side the public may see
    kiosk: bool = False  # locations are kiosk machines: a kiosk service, not an external one
    label: str = ""
    heading: str = ""
    note: str = ""

    def applies(self, resource: Resource) -> bool:
        if self.object:
            if resource.object_id == self.object:
                return True
            ident = resource.identifier
            return ident == self.object or ident.startswith(self.object + "/")
        return bool(self.match) and fnmatchcase(resource.identifier, self.match)

    @property
    def needs_login(self) -> bool:
        return bool(self.roles)


@dataclass(frozen=True)
class Subject:
    """Who asks: an account (with roles) or nobody, the client address, and whether this
    session accepted the terms of a clickthrough rule."""

    user: str | None = None
    roles: frozenset[str] = frozenset()
    address: Address | None = None
    agreed: bool = False

    @property
    def signed_in(self) -> bool:
        return self.user is not None


ANONYMOUS = Subject()


@dataclass(frozen=True)
class Resource:
    """What is asked for: an image identifier (or media path), the catalogue object it belongs
    to, and for composites/computed images the band identifiers it is made of."""

    identifier: str
    object_id: str = ""
    parts: tuple[str, ...] = ()


@dataclass(frozen=True)
class Decision:
    kind: str  # ALLOW | DEGRADE | DENY
    rule: Rule | None = None  # None: no rule applies (public)
    max_size: int = 0  # DEGRADE: the longest side allowed
    status: int = 200  # DENY (or above max_size): 401 when signing in/agreeing may help, else 403

    @property
    def allowed(self) -> bool:
        return self.kind == ALLOW

    @property
    def protected(self) -> bool:
        """Whether a rule governs the resource: then responses are private, never shared."""
        return self.rule is not None

    @property
    def key(self) -> str:
        """The decision class, part of every cache key and ETag of what it governs."""
        if self.rule is None:
            return "public"
        if self.kind == DEGRADE:
            return f"degraded:{self.max_size}:{self.rule.name}"
        return f"{self.kind}:{self.rule.name}"


PUBLIC = Decision(ALLOW)


def _located(subject: Subject, rule: Rule) -> bool:
    return subject.address is not None and any(
        subject.address.version == net.version and subject.address in net for net in rule.locations
    )


def _has_role(subject: Subject, rule: Rule) -> bool:
    if not subject.signed_in:
        return False
    return ANY_USER in rule.roles or bool(rule.roles & subject.roles)


def _decide_one(subject: Subject, resource: Resource, rules: Sequence[Rule]) -> Decision:
    rule = next((r for r in rules if r.applies(resource)), None)
    if rule is None or rule.mode == "public":
        return PUBLIC
    if _has_role(subject, rule) or _located(subject, rule):
        return Decision(ALLOW, rule)
    if rule.mode == "clickthrough":
        return Decision(ALLOW, rule) if subject.agreed else Decision(DENY, rule, status=401)
    # Signing in can help only if the rule names roles the subject does not have yet.
    status = 401 if rule.needs_login and not subject.signed_in else 403
    if rule.mode == "degraded":
        return Decision(DEGRADE, rule, max_size=rule.max_size, status=status)
    return Decision(DENY, rule, status=status)


def governed(resource: Resource, rules: Sequence[Rule]) -> bool:
    """Whether any decision about ``resource`` could differ from PUBLIC: the first rule that
    applies to it (or to one of its parts) is not a public one. When False, ``decide`` returns
    PUBLIC for every subject, so the subject need not even be known."""
    for identifier in (resource.identifier, *resource.parts):
        one = (
            resource
            if identifier == resource.identifier
            else Resource(identifier, resource.object_id)
        )
        rule = next((r for r in rules if r.applies(one)), None)
        if rule is not None and rule.mode != "public":
            return True
    return False


_RANK = {ALLOW: 0, DEGRADE: 1, DENY: 2}


def strictest(decisions: Iterable[Decision]) -> Decision:
    """The combination of several parts' decisions: deny beats degrade beats allow; the
    smallest size of the degrades; a protected allow beats a public one."""
    best = PUBLIC
    for d in decisions:
        stricter = _RANK[d.kind] > _RANK[best.kind]
        smaller = d.kind == best.kind == DEGRADE and d.max_size < best.max_size
        governed = d.kind == best.kind and best.rule is None and d.rule is not None
        if stricter or smaller or governed:
            best = d
    return best


def decide(subject: Subject, resource: Resource, rules: Sequence[Rule]) -> Decision:
    """Allow, degrade to a maximum size, or deny: the resource itself and each of its parts
    (the bands of a composite) decided alone, the strictest wins."""
    own = _decide_one(subject, resource, rules)
    if not resource.parts:
        return own
    parts = [_decide_one(subject, Resource(p, resource.object_id), rules) for p in resource.parts]
    return strictest([own, *parts])


# ---- parsing ------------------------------------------------------------------------------


class RulesError(ValueError):
    """A rules file that cannot be used; names the rule and the problem."""


_KEYS = {
    "match",
    "object",
    "access",
    "roles",
    "locations",
    "kiosk",
    "max_size",
    "label",
    "heading",
    "note",
}


def _strings(value: Any, where: str, key: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise RulesError(f"{where}: {key} must be a list of non-empty strings")
    return [v.strip() for v in value]


def parse_rule(index: int, doc: Any) -> Rule:
    where = f"rule {index + 1}"
    if not isinstance(doc, dict):
        raise RulesError(f"{where}: not a table")
    unknown = set(doc) - _KEYS
    if unknown:
        raise RulesError(f"{where}: unknown key {sorted(unknown)[0]!r}")
    match, obj = doc.get("match", ""), doc.get("object", "")
    if not isinstance(match, str) or not isinstance(obj, str) or bool(match) == bool(obj):
        raise RulesError(f"{where}: give exactly one of match (a glob) or object (an id)")
    mode = doc.get("access", "public")
    if mode not in ACCESS:
        raise RulesError(f"{where}: access must be one of {', '.join(ACCESS)}")
    roles = frozenset(_strings(doc.get("roles", []), where, "roles"))
    locations: list[Network] = []
    for text in _strings(doc.get("locations", []), where, "locations"):
        try:
            locations.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise RulesError(f"{where}: {text!r} is not an IP address or network") from None
    if mode == "location":
        if not locations:
            raise RulesError(f"{where}: a location rule needs locations (IP ranges)")
        mode = "restricted"
    max_size = doc.get("max_size", 0)
    if not isinstance(max_size, int) or isinstance(max_size, bool) or max_size < 0:
        raise RulesError(f"{where}: max_size must be a positive integer (pixels)")
    if mode == "degraded" and max_size < 1:
        raise RulesError(f"{where}: a degraded rule needs max_size (the long side in pixels)")
    if mode in ("restricted", "degraded") and not roles and not locations:
        raise RulesError(f"{where}: a {mode} rule needs roles or locations (who may see all)")
    kiosk = doc.get("kiosk", False)
    if not isinstance(kiosk, bool) or (kiosk and not locations):
        raise RulesError(f"{where}: kiosk = true needs locations (the kiosk machines' addresses)")
    texts = {}
    for key in ("label", "heading", "note"):
        value = doc.get(key, "")
        if not isinstance(value, str):
            raise RulesError(f"{where}: {key} must be a string")
        texts[key] = value
    return Rule(
        name=f"r{index + 1}",
        mode=mode,
        match=match,
        object=obj,
        roles=roles,
        locations=tuple(locations),
        max_size=max_size,
        kiosk=kiosk,
        **texts,
    )


def parse_rules(text: str) -> tuple[Rule, ...]:
    """The ``[[rule]]`` tables of a rules file (TOML), in order."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"not valid TOML: {exc}") from None
    extra = set(doc) - {"rule"}
    if extra:
        raise RulesError(f"unknown top-level key {sorted(extra)[0]!r} (use [[rule]] tables)")
    tables = doc.get("rule", [])
    if not isinstance(tables, list):
        raise RulesError("use [[rule]] tables")
    return tuple(parse_rule(i, t) for i, t in enumerate(tables))
