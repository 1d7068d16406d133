"""The rules in force: the ``access_rules`` file, re-read when it changes, checked at most once
per ``access_reload`` seconds. Blocking I/O (one stat, a read on change); imports access.rules.

A file that becomes invalid keeps the last good rules in force (and says why in the log); a
file that cannot be parsed at start-up is an error. A missing file means no rules: all public.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from iiifsrv.access.rules import Rule, RulesError, parse_rules

log = logging.getLogger("iiifsrv.access")


class RuleBook:
    def __init__(
        self,
        path: Path | None,
        interval: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.interval = interval
        self.clock = clock
        self._rules: tuple[Rule, ...] = ()
        self._seen: tuple[int, int] | None = None
        self._checked = -1e18
        if path is not None:
            self._load(strict=True)

    def _load(self, *, strict: bool) -> None:
        assert self.path is not None
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            if self._seen is not None:
                log.warning("access rules file %s removed: everything is public now", self.path)
            self._rules, self._seen = (), None
            return
        signature = (st.st_mtime_ns, st.st_size)
        if signature == self._seen:
            return
        try:
            rules = parse_rules(self.path.read_text(encoding="utf-8"))
        except (RulesError, OSError, UnicodeDecodeError) as exc:
            if strict:
                raise RulesError(f"access rules {self.path}: {exc}") from None
            log.error("access rules %s not reloaded, the previous ones stay: %s", self.path, exc)
            self._seen = signature
            return
        self._rules, self._seen = rules, signature
        log.info("access rules %s: %d rule(s) in force", self.path, len(rules))

    def rules(self) -> tuple[Rule, ...]:
        """The rules in force now (re-read if the file changed and the interval has passed)."""
        if self.path is not None:
            now = self.clock()
            if now - self._checked >= self.interval:
                self._checked = now
                self._load(strict=False)
        return self._rules

    @property
    def empty(self) -> bool:
        return not self.rules()
