"""Access control without HTTP: the rules and the one decision (rules.py), the rules file
re-read on change (book.py), local accounts (accounts.py), the IIIF Auth 2.0/1.0 service
documents (services.py), signed session values and CSRF values (sessions.py) and the
failed-authentication throttle (throttle.py). Imports only the standard library, iiifsrv.errors
and iiifsrv.tokens; web/credentials.py and web/auth.py apply them to requests.
"""
