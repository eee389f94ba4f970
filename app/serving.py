"""Several web processes on one port (``anomaloop serve --workers N``), each with a listening socket of its own.

uvicorn's own ``--workers`` shares one listening socket between its processes, and whichever process wakes first
accepts every connection waiting (asyncio accepts up to the backlog in one go): measured here, 50 keep-alive clients
connecting at once were split 44 / 6 and 49 / 1 between two processes. Here every process binds the port with
``SO_REUSEPORT`` and the kernel spreads new connections over them by a hash of the client's address and port. The
price: connections the kernel had queued for a process that crashes, up to the moment its socket closes (its last
thread gone, a few milliseconds after the process shows as a zombie), are reset, where a shared socket would have kept
them for another; on Linux 5.14 and later the sysctl ``net.ipv4.tcp_migrate_req=1`` hands them to another process
instead. A supervisor (this module, in the parent) starts the processes, restarts one
that dies, and on SIGINT / SIGTERM asks each to shut down gracefully (running requests and the in-process job
finish, see :func:`app.web.create_app`'s lifespan).
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import socket
import time
from types import FrameType

from app.errors import AppError

log = logging.getLogger("anomaloop")

SHUTDOWN_WAIT_S = 60.0
"""Seconds a web process gets to finish its requests and job after SIGTERM before it is killed."""
EARLY_EXIT_S = 10.0
"""A web process that exits this soon after it started failed to start; three such exits in a row stop the server
(a setting or the port is wrong: starting it again would fail again)."""


def reuse_port_supported() -> bool:
    return hasattr(socket, "SO_REUSEPORT")


def bind_shared(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` that other processes may bind too (``SO_REUSEPORT``); not yet listening."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto named: asyncio sets TCP_NODELAY only on sockets whose proto is IPPROTO_TCP (0 would leave Nagle's
    # algorithm on, and each small answer would wait ~40 ms for the client's delayed ACK)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def _web_process(host: str, port: int, log_level: str) -> None:
    """One web process: its own socket, its own app built from the environment's settings."""
    import uvicorn

    sock = bind_shared(host, port)
    config = uvicorn.Config("app.web:create_app", factory=True, log_level=log_level)
    uvicorn.Server(config).run(sockets=[sock])


def serve_processes(n: int, host: str, port: int, log_level: str) -> None:
    """Run ``n`` web processes on ``host:port`` until SIGINT or SIGTERM; a process that dies is started again."""
    try:  # a port taken by another program fails here, once, not in every process
        bind_shared(host, port).close()
    except OSError as exc:
        raise AppError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    spawn = multiprocessing.get_context("spawn")  # a fresh interpreter each: no inherited pools, threads or locks
    stopping: int | None = None  # the signal that asked us to stop

    started: dict[int | None, float] = {}  # pid -> time.monotonic() at its start
    early_exits = 0

    def start() -> multiprocessing.process.BaseProcess:
        process = spawn.Process(target=_web_process, args=(host, port, log_level), name="anomaloop-web")
        process.start()
        started[process.pid] = time.monotonic()
        return process

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = signum

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    processes = [start() for _ in range(n)]
    try:
        while stopping is None:
            time.sleep(0.5)
            for i, process in enumerate(processes):
                if process.is_alive() or stopping is not None:
                    continue
                early = time.monotonic() - started.pop(process.pid, 0.0) < EARLY_EXIT_S
                early_exits = early_exits + 1 if early else 0
                if early_exits >= 3:
                    raise AppError(f"web processes keep exiting as they start (code {process.exitcode}); see above")
                log.warning("web process %s exited with code %s; starting another", process.pid, process.exitcode)
                processes[i] = start()
    finally:
        if stopping == signal.SIGINT:
            # Ctrl-C in a terminal reaches every process of the group: give them a moment to begin on their own (a
            # second signal would make uvicorn stop waiting for open connections)
            for process in processes:
                process.join(2.0)
        for process in processes:
            if process.is_alive():
                process.terminate()  # SIGTERM: uvicorn's graceful shutdown
        deadline = time.monotonic() + SHUTDOWN_WAIT_S
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
