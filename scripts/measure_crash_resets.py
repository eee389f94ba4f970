"""What a client sees when one of several web processes crashes: connections the kernel had queued for it.

    python scripts/measure_crash_resets.py --rounds 3

Starts ``anomaloop serve`` with two web processes (``ANOMALOOP_WEB_WORKERS=2``) on a temporary SQLite file, then per
round: stops one process (SIGSTOP, so the connections the kernel hashes to its socket wait in that socket's queue),
opens 40 connections at once, each asking ``/healthz``, kills the stopped process (SIGKILL) half a second later, and
counts the answers and the errors. With ``net.ipv4.tcp_migrate_req=0`` (Linux's default) the connections queued for
the dead process are reset; with 1 (Linux 5.14 and later, ``sysctl -w net.ipv4.tcp_migrate_req=1`` as root) the
kernel hands them to the other process. The value in force is printed with each round; the script changes nothing.
Loopback only; it stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
MIGRATE = Path("/proc/sys/net/ipv4/tcp_migrate_req")


def web_processes(supervisor: int) -> list[int]:
    """The web processes ``anomaloop serve`` spawned (not multiprocessing's resource tracker beside them)."""
    children = [int(c) for t in Path(f"/proc/{supervisor}/task").glob("*/children") for c in t.read_text().split()]
    return [c for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]


async def burst(url: str, victim: int, connections: int) -> Counter:
    async def one(client: httpx.AsyncClient) -> int | str:
        try:
            return (await client.get(url + "/healthz")).status_code
        except httpx.HTTPError as exc:
            return type(exc).__name__

    limits = httpx.Limits(max_keepalive_connections=0)  # a new connection per request
    async with httpx.AsyncClient(timeout=10, limits=limits) as client:
        tasks = [asyncio.create_task(one(client)) for _ in range(connections)]
        await asyncio.sleep(0.5)  # the stopped process's share now waits in its socket's queue
        os.kill(victim, signal.SIGKILL)
        return Counter(await asyncio.gather(*tasks))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=40)
    args = parser.parse_args()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ANOMALOOP_")}
        env.update(
            ANOMALOOP_DATABASE_URL=f"sqlite:///{tmp}/crash.sqlite",
            ANOMALOOP_DATA_DIR=tmp,
            ANOMALOOP_WEB_WORKERS="2",
            ANOMALOOP_DEVICE="cpu",
        )
        command = [sys.executable, "-m", "app.cli", "serve", "--no-demo", "--host", "127.0.0.1", "--port", str(port)]
        with open(Path(tmp) / "server.log", "wb") as log:
            server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 120
            while len(web_processes(server.pid)) < 2 or not _answers(url):
                if time.monotonic() > deadline or server.poll() is not None:
                    sys.exit(f"the server did not start; see {tmp}/server.log")
                time.sleep(0.2)
            time.sleep(5)  # both processes listening
            for n in range(args.rounds):
                victim = web_processes(server.pid)[0]
                os.kill(victim, signal.SIGSTOP)
                outcome = asyncio.run(burst(url, victim, args.connections))
                setting = MIGRATE.read_text().strip() if MIGRATE.exists() else "absent"
                print(f"round {n + 1}: tcp_migrate_req={setting}: {dict(outcome)}", flush=True)
                while len(web_processes(server.pid)) < 2 or victim in web_processes(server.pid):
                    time.sleep(0.2)
                time.sleep(6)  # the replacement listening
        finally:
            server.terminate()
            server.wait(60)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    main()
