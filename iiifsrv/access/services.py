"""The IIIF Authorization Flow 2.0 and Auth 1.0 service descriptions, probe results and token
messages, from a rule and the server's base URL. PURE: standard library and access.rules only.

One login, one session behind both: Auth 1.0 cookie services (login, clickthrough, external or
kiosk) with their token and logout services, for today's viewers; and the Auth 2.0 probe →
access → token + logout nesting. Every entry carries a ``profile`` (Mirador 4 needs one on
every service of a 401 info.json, even on the 2.0 probe, where it is our extension property).
Service ids never contain ``?``: clients append ``?origin=`` / ``?messageId=`` by concatenation.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from iiifsrv.access.rules import DEGRADE, Decision, Rule

AUTH1 = "http://iiif.io/api/auth/1/"
AUTH2_CONTEXT = "http://iiif.io/api/auth/2/context.json"
AUTH2 = "http://iiif.io/api/auth/2/"
PROBE_PROFILE = AUTH2 + "probe"  # extension: see the module docstring
TIER = ".degraded"  # first identifier segment of the degraded tier (never a real file)

# URL paths of the services (under the base URL)
LOGIN = "/auth/login"
CLICKTHROUGH = "/auth/clickthrough"
KIOSK = "/auth/kiosk"
EXTERNAL = "/auth/external"
TOKEN1 = "/auth/token"
LOGOUT = "/auth/logout"
PROBE = "/auth/v2/probe/"
TOKEN2 = "/auth/v2/token"

ERROR_PROFILES = (
    "invalidRequest",
    "invalidOrigin",
    "missingAspect",
    "invalidAspect",
    "expiredAspect",
    "unavailable",
)


def _en(text: str) -> dict[str, list[str]]:
    return {"en": [text]}


def texts(rule: Rule) -> dict[str, str]:
    """label, heading, note and confirm label of a rule's access service (curator's or ours)."""
    if rule.mode == "clickthrough":
        default = {
            "label": "Terms of use",
            "heading": "Please accept the terms of use",
            "note": "This material may only be viewed by those who accept its terms of use.",
            "confirm": "I agree",
        }
    elif rule.roles:
        default = {
            "label": "Sign in to see this material",
            "heading": "Restricted material",
            "note": "Sign in with an account that may see it."
            + (" It is also open in the reading room." if rule.locations else ""),
            "confirm": "Sign in",
        }
    else:
        default = {
            "label": "Reading room only",
            "heading": "Available in the reading room",
            "note": "This material can only be seen from the reading room's network.",
            "confirm": "Check again",
        }
    return {k: getattr(rule, k, "") or v for k, v in default.items()}


def probe_id(base: str, identifier: str) -> str:
    return f"{base}{PROBE}{quote(identifier, safe='')}"


def tier_identifier(encoded: str) -> str:
    """The (encoded) identifier of an image's degraded tier."""
    return f"{TIER}/{encoded}"


def _access_services_2(base: str, rule: Rule) -> list[dict[str, Any]]:
    t = texts(rule)
    token = {
        "id": f"{base}{TOKEN2}",
        "type": "AuthAccessTokenService2",
        "profile": AUTH2 + "token",  # extension, as on the probe
        "errorHeading": _en("Access denied"),
        "errorNote": _en("You do not have access to this material."),
    }
    logout = {
        "id": f"{base}{LOGOUT}",
        "type": "AuthLogoutService2",
        "profile": AUTH2 + "logout",  # extension, as on the probe
        "label": _en("Sign out"),
    }
    out: list[dict[str, Any]] = []
    if rule.locations and rule.kiosk:  # opened by the client without interaction
        out.append(
            {
                "id": f"{base}{KIOSK}",
                "type": "AuthAccessService2",
                "profile": "kiosk",
                "label": _en("Kiosk"),
                "service": [token],
            }
        )
    elif rule.locations:
        out.append(
            {
                "type": "AuthAccessService2",
                "profile": "external",
                "label": _en("Reading room"),
                "service": [token],
            }
        )
    if rule.roles or rule.mode == "clickthrough":
        out.append(
            {
                "id": f"{base}{CLICKTHROUGH if rule.mode == 'clickthrough' else LOGIN}",
                "type": "AuthAccessService2",
                "profile": "active",
                "label": _en(t["label"]),
                "heading": _en(t["heading"]),
                "note": _en(t["note"]),
                "confirmLabel": _en(t["confirm"]),
                "service": [token, logout],
            }
        )
    return out


def probe_service(base: str, identifier: str, rule: Rule) -> dict[str, Any]:
    """The Auth 2.0 probe of one resource, with its access services nested."""
    return {
        "id": probe_id(base, identifier),
        "type": "AuthProbeService2",
        "profile": PROBE_PROFILE,
        "service": _access_services_2(base, rule),
    }


def cookie_services_1(base: str, rule: Rule, version: int) -> list[dict[str, Any]]:
    """The Auth 1.0 cookie services (full profile URIs), each with token and logout."""
    t = texts(rule)
    idk, typek = "@id", "@type"  # Auth 1.0 keeps them in Image 2 and 3 alike
    token = {idk: f"{base}{TOKEN1}", typek: "AuthTokenService1", "profile": AUTH1 + "token"}
    logout = {
        idk: f"{base}{LOGOUT}",
        typek: "AuthLogoutService1",
        "profile": AUTH1 + "logout",
        "label": "Sign out",
    }
    out: list[dict[str, Any]] = []
    if rule.locations:
        kind = "kiosk" if rule.kiosk else "external"
        out.append(
            {
                idk: f"{base}{KIOSK if rule.kiosk else EXTERNAL}",
                typek: "AuthCookieService1",
                "profile": AUTH1 + kind,
                "label": "Kiosk" if rule.kiosk else "Reading room",
                "failureHeader": t["heading"],
                "failureDescription": t["note"],
                "service": [token],
            }
        )
    if rule.roles or rule.mode == "clickthrough":
        kind = "clickthrough" if rule.mode == "clickthrough" else "login"
        out.append(
            {
                idk: f"{base}{CLICKTHROUGH if kind == 'clickthrough' else LOGIN}",
                typek: "AuthCookieService1",
                "profile": AUTH1 + kind,
                "label": t["label"],
                "header": t["heading"],
                "description": t["note"],
                "confirmLabel": t["confirm"],
                "failureHeader": "Access denied",
                "failureDescription": "This account may not see this material.",
                "service": [token, logout],
            }
        )
    return out


def info_services(base: str, identifier: str, rule: Rule, version: int) -> list[dict[str, Any]]:
    """What a protected image's info.json lists: Auth 1.0 cookie services, then the 2.0 probe."""
    return [*cookie_services_1(base, rule, version), probe_service(base, identifier, rule)]


def probe_result(decision: Decision, substitute: dict[str, Any] | None = None) -> dict[str, Any]:
    """The AuthProbeResult2 body: ``status`` is what the resource itself would answer."""
    status = 200 if decision.allowed else decision.status
    doc: dict[str, Any] = {"@context": AUTH2_CONTEXT, "type": "AuthProbeResult2", "status": status}
    if status != 200 and decision.rule is not None:
        t = texts(decision.rule)
        doc["heading"] = _en(t["heading"])
        doc["note"] = _en(
            t["note"]
            if status == 401
            else "You are signed in, but this account may not see this material."
        )
        if decision.kind == DEGRADE and substitute is not None:
            doc["substitute"] = [substitute]
    return doc


def token_message_2(message_id: str, token: str, expires_in: int) -> dict[str, Any]:
    return {
        "@context": AUTH2_CONTEXT,
        "type": "AuthAccessToken2",
        "messageId": message_id,
        "accessToken": token,
        "expiresIn": expires_in,
    }


def token_error_2(message_id: str, profile: str, heading: str, note: str) -> dict[str, Any]:
    assert profile in ERROR_PROFILES
    return {
        "@context": AUTH2_CONTEXT,
        "type": "AuthAccessTokenError2",
        "profile": profile,
        "messageId": message_id,
        "heading": _en(heading),
        "note": _en(note),
    }


# Auth 1.0's error names for the 2.0 profiles
ERRORS_1 = {
    "invalidRequest": "invalidRequest",
    "invalidOrigin": "invalidOrigin",
    "missingAspect": "missingCredentials",
    "invalidAspect": "invalidCredentials",
    "expiredAspect": "invalidCredentials",
    "unavailable": "unavailable",
}
