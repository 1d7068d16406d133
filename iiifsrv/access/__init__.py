"""Access control without HTTP: signed session values, CSRF values and the failed-authentication
throttle. Imports only the standard library, iiifsrv.errors and iiifsrv.tokens; web/credentials.py
is the one place that applies them to requests.
"""
