"""Allow ``python -m iiifsrv``.

Imports only the CLI entry point.
"""

from iiifsrv.cli import main

raise SystemExit(main())
