"""Access control without HTTP: the rules and the one decision (rules.py), the rules file
re-read on change (book.py), local accounts (accounts.py), the IIIF Auth 2.0/1.0 service
documents (services.py), signed session values and CSRF values (sessions.py), the
failed-authentication throttle (throttle.py) and the OpenID Connect checks (oidc.py). Imports
only the standard library, iiifsrv.errors and iiifsrv.tokens (oidc.py: Authlib and joserfc, the
[oidc] extra, when a token is checked); web/credentials.py, web/auth.py and web/oidc.py apply
them to requests.
"""
