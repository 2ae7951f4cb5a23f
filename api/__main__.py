"""`python -m api`: the service under uvicorn, configured from the environment.

The container's CMD and `make serve` both start the service this way, so both get the same worker
count, in-flight cap and shutdown bound. uvicorn runs in this process: with several workers this
process is their supervisor, so the SIGTERM of `docker stop` reaches it and it drains them.
(Plain `uvicorn api.main:app --workers 2` still works; it just takes these values from its flags.)
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import socket
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from api import multiprocess

APP = "api.main:app"
# uvicorn's HTTP protocol with the gap in its graceful shutdown closed (api.draining)
HTTP_PROTOCOL = "api.draining:DrainingHttpToolsProtocol"
logger = logging.getLogger("uvicorn.error")
Loop = Literal["asyncio", "uvloop", "auto"]
_LOOPS: dict[str, Loop] = {"asyncio": "asyncio", "uvloop": "uvloop", "auto": "auto"}


@dataclass(frozen=True)
class Launch:
    """How uvicorn is started; each field comes from the variable named in VARIABLES."""

    host: str
    port: int
    workers: int
    limit_concurrency: int
    loop: Loop
    timeout_graceful_shutdown: int
    timeout_keep_alive: int


# variable, default, what it sets: printed by `python -m api --help` and in docs/operating.md.
VARIABLES: dict[str, tuple[str, str, str]] = {
    "host": ("BOSTON_API_HOST", "127.0.0.1", "address to bind (the container sets 0.0.0.0)"),
    "port": ("BOSTON_API_PORT", "8000", "port to bind"),
    "workers": ("WEB_CONCURRENCY", "1", "worker processes (about one per core)"),
    # Per worker, and uvicorn counts open connections as well as running requests. Overload is
    # shed by the app itself (BOSTON_API_SHED_LAG_MS: 503 with Retry-After, the connection kept);
    # this cap is only the last guard, against running out of file descriptors, because uvicorn's
    # own 503 closes the connection and carries no Retry-After. Figures:
    # docs/decisions/0013-server-launch-settings.md.
    "limit_concurrency": (
        "BOSTON_API_LIMIT_CONCURRENCY",
        "4096",
        "connections plus requests in flight per worker; beyond it uvicorn answers 503 at once",
    ),
    # docker stop sends SIGKILL 10 s after SIGTERM: 5 s of draining plus the lifespan shutdown
    # ends well before that, and is many times the slowest legitimate request (10,000 rows).
    "timeout_graceful_shutdown": (
        "BOSTON_API_TIMEOUT_GRACEFUL_SHUTDOWN",
        "5",
        "seconds a worker keeps finishing accepted requests after SIGTERM before cancelling them",
    ),
    # uvloop (uvicorn's choice when installed) accepts new connections slowly while busy, so under
    # a flood clients time out in the kernel's accept queue; the asyncio loop takes them in at
    # once and serves /predict as fast (docs/decisions/0013-server-launch-settings.md).
    "loop": (
        "BOSTON_API_LOOP",
        "asyncio",
        "event loop: asyncio, uvloop or auto (uvloop if installed)",
    ),
    "timeout_keep_alive": (
        "BOSTON_API_TIMEOUT_KEEP_ALIVE",
        "5",
        "seconds an idle keep-alive connection stays open (above a proxy's idle timeout)",
    ),
}


class LaunchError(ValueError):
    """A launch variable the operator set to something unusable; the message names it."""


def from_environment(env: Mapping[str, str]) -> Launch:
    def whole(field: str, minimum: int, maximum: int | None = None) -> int:
        name, default, _ = VARIABLES[field]
        raw = env.get(name, "").strip() or default
        bound = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum}"
        try:
            value = int(raw)
        except ValueError:
            value = minimum - 1  # reported below, with the same message as a value out of range
        if value < minimum or (maximum is not None and value > maximum):
            raise LaunchError(f"{name} must be a whole number {bound}, got {raw!r}")
        return value

    host_name, host_default, _ = VARIABLES["host"]
    host = env.get(host_name, "").strip() or host_default
    if any(character.isspace() for character in host):
        raise LaunchError(f"{host_name} must be an address or host name, got {host!r}")
    loop_name, loop_default, _ = VARIABLES["loop"]
    raw_loop = env.get(loop_name, "").strip() or loop_default
    loop = _LOOPS.get(raw_loop)
    if loop is None:
        raise LaunchError(f"{loop_name} must be asyncio, uvloop or auto, got {raw_loop!r}")
    return Launch(
        host=host,
        port=whole("port", 1, 65_535),
        workers=whole("workers", 1),
        limit_concurrency=whole("limit_concurrency", 1),
        loop=loop,
        timeout_graceful_shutdown=whole("timeout_graceful_shutdown", 0),
        timeout_keep_alive=whole("timeout_keep_alive", 1),
    )


def _help() -> str:
    rows = [
        f"  {name} (default {default}): {meaning}" for name, default, meaning in VARIABLES.values()
    ]
    return (
        "environment variables:\n"
        + "\n".join(rows)
        + ("\n  BOSTON_API_*: the service's own settings (model folder, API key, ...: docs/api.md)")
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m api",
        description="Serve the model API under uvicorn, configured from the environment.",
        epilog=_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.parse_args(argv)
    try:
        launch = from_environment(os.environ)
    except LaunchError as error:
        sys.exit(f"python -m api: {error}")
    serve(launch)


def _tcp_socket(config: uvicorn.Config) -> socket.socket:
    """The shared listening socket of several workers, bound by uvicorn, with its proto stated.

    uvicorn binds it with proto 0; accepted sockets inherit that, and asyncio enables TCP_NODELAY
    only when proto is IPPROTO_TCP, so Nagle's algorithm would hold each keep-alive response
    until the delayed acknowledgement (uvicorn issue 3149).
    """
    sock = config.bind_socket()
    if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.proto == 0:
        return socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, sock.detach())
    return sock


class Supervisor(Multiprocess):
    """uvicorn's supervisor of several workers, except for SIGHUP: uvicorn replaces every worker
    with a new process, which would start serving even with a model it could not load. This
    supervisor passes the signal on, and each worker reloads its model in place, keeping the one
    it has when the new one is refused (api.runtime)."""

    def handle_hup(self) -> None:
        logger.info("Received SIGHUP, asking every worker to reload its model.")
        for process in self.processes:
            if process.pid is not None:
                with contextlib.suppress(ProcessLookupError):  # a worker that just died
                    os.kill(process.pid, signal.SIGHUP)


@contextlib.contextmanager
def _shared_metrics_folder() -> Iterator[None]:
    """The workers' metrics folder (api.multiprocess): the operator's PROMETHEUS_MULTIPROC_DIR,
    else one this process makes for its workers and removes when they have stopped."""
    if os.environ.get(multiprocess.ENV):
        yield
        return
    with tempfile.TemporaryDirectory(prefix="boston-api-metrics-") as folder:
        os.environ[multiprocess.ENV] = folder  # inherited by the workers it spawns
        try:
            yield
        finally:
            del os.environ[multiprocess.ENV]


def serve(launch: Launch) -> None:
    """What uvicorn.run does: a supervisor of several workers, else one server in this process.

    Not uvicorn.run itself, which binds the workers' socket without stating it is TCP (above).
    The Config is uvicorn's own class: the spawned workers unpickle it, and they cannot import
    this module by name (multiprocessing does not re-run a package's __main__ in its children).
    """
    config = uvicorn.Config(
        APP,
        http=HTTP_PROTOCOL,
        host=launch.host,
        port=launch.port,
        workers=launch.workers,
        limit_concurrency=launch.limit_concurrency,
        loop=launch.loop,
        timeout_graceful_shutdown=launch.timeout_graceful_shutdown,
        timeout_keep_alive=launch.timeout_keep_alive,
    )
    if config.workers > 1:
        sock = _tcp_socket(config)
        try:
            with _shared_metrics_folder():
                Supervisor(config, sockets=[sock]).run()
        finally:
            sock.close()
        return
    server = uvicorn.Server(config)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how a user stops it, as uvicorn.run
        server.run()
    if not server.started:
        sys.exit(STARTUP_FAILURE)


if __name__ == "__main__":
    main()
