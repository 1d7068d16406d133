"""The Image API in pure code: request parsing, planning and info.json.

PURE: nothing in this package does I/O or imports pyvips or numpy.
"""
