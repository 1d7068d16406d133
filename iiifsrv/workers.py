"""Several worker processes, each accepting from its own listening socket (SO_REUSEPORT).

Entry-level helper: imports the standard library and uvicorn's supervisor. uvicorn's own
supervisor binds one socket that every worker accepts from; on Linux the worker whose event loop
wakes first takes a whole burst of connections (wrk's 32 split 23/9 between two workers). Here
the supervisor binds one socket per worker on the same address with SO_REUSEPORT, and the kernel
spreads new connections over them by the hash of their addresses. Each socket belongs to one
worker slot and is kept open by the supervisor, so a worker replaced after a crash or a SIGHUP
takes over its slot's queue. Where the platform or the installed uvicorn does not allow it,
``per_worker_sockets`` says so and ``iiifsrv serve`` falls back to the shared socket.
"""

from __future__ import annotations

import inspect
import logging
import socket
import sys

from uvicorn.config import STARTUP_FAILURE, Config
from uvicorn.supervisors.multiprocess import Multiprocess, Process

log = logging.getLogger("iiifsrv.workers")


def per_worker_sockets() -> str:
    """Why each worker cannot have its own socket here ("" when it can)."""
    if not sys.platform.startswith("linux") or not hasattr(socket, "SO_REUSEPORT"):
        # elsewhere SO_REUSEPORT does not balance (BSD, macOS: the last socket bound wins)
        return "SO_REUSEPORT balances connections only on Linux"
    params = list(inspect.signature(Process.__init__).parameters)
    hooks = ("init_processes", "restart_all", "keep_subprocess_alive")
    if params[1:] != ["config", "sockets"] or not all(hasattr(Multiprocess, h) for h in hooks):
        return "this uvicorn's supervisor differs from the one iiifsrv.workers extends"
    return ""


def bind_sockets(host: str, port: int, count: int, backlog: int) -> list[socket.socket]:
    """``count`` listening sockets on one address, SO_REUSEPORT; port 0 picks one free port
    for all of them."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            port = sock.getsockname()[1]
            # queue connections from now on, before the worker's loop calls listen() again
            sock.listen(backlog)
            sock.set_inheritable(True)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class PerWorkerSockets(Multiprocess):
    """uvicorn's supervisor (health pings, restart of dead workers, SIGHUP, SIGTERM to all)
    with the socket of slot ``i`` given to worker ``i`` and to whichever replaces it."""

    def __init__(self, config: Config, sockets: list[socket.socket]) -> None:
        super().__init__(config, sockets)
        self.processes_num = len(sockets)

    def _start(self, slot: int) -> Process:
        process = Process(self.config, [self.sockets[slot]])
        process.start()
        return process

    def init_processes(self) -> None:
        self.processes = [self._start(slot) for slot in range(self.processes_num)]

    def restart_all(self) -> None:
        """Each worker replaced in turn: its successor, on the same socket, is ready first."""
        for slot, old in enumerate(self.processes):
            if self.should_exit.is_set():
                return
            new = self._start(slot)
            if not new.wait_until_ready(self.config.timeout_worker_healthcheck, self.should_exit):
                new.kill()
                new.join()
                if not self.should_exit.is_set():
                    log.error("worker [%s] was not ready in time; keeping [%s]", new.pid, old.pid)
                return
            old.terminate()
            old.join()
            self.processes[slot] = new

    def keep_subprocess_alive(self) -> None:
        if self.should_exit.is_set():
            return
        for slot, process in enumerate(self.processes):
            if process.is_alive(timeout=self.config.timeout_worker_healthcheck):
                continue
            process.kill()  # hung: kill it
            process.join()
            if process.exitcode == STARTUP_FAILURE:
                # it failed before serving (app, settings): every restart would fail the same way
                log.error("worker [%s] failed to start, stopping", process.pid)
                self.should_exit.set()
                return
            if self.should_exit.is_set():
                return
            log.info("worker [%s] died; starting another on its socket", process.pid)
            self.processes[slot] = self._start(slot)


def run(config: Config) -> None:
    """Serve ``config`` (an import string, ``config.workers`` > 1) with one socket a worker."""
    sockets = bind_sockets(config.host, config.port, config.workers, config.backlog)
    log.info(
        "%d workers, each listening on its own socket (SO_REUSEPORT) at %s:%d",
        len(sockets),
        config.host,
        sockets[0].getsockname()[1],
    )
    try:
        PerWorkerSockets(config, sockets).run()
    finally:
        for sock in sockets:
            sock.close()
