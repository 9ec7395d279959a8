"""``sdworker serve``: the local endpoint on uvicorn, with N worker processes."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import uvicorn
from fastapi import FastAPI

from sdworker.core.errors import ConfigError, SdworkerError
from sdworker.core.settings import Settings
from sdworker.server.app import create_app
from sdworker.server.redact import QueryTokenFilter

if TYPE_CHECKING:
    from sdworker.core.models import ModelRegistry


class _EndpointServer(uvicorn.Server):
    """uvicorn, but on shutdown the workers are told first and the long polls let go, so
    stopping takes a moment rather than the whole poll interval."""

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self._app = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        state = self._app.state
        supervisor = getattr(state, "supervisor", None)
        if supervisor is not None:
            supervisor.terminate()
        gateway = getattr(state, "gateway", None)
        if gateway is not None:
            gateway.release_polls()
        await super().shutdown(sockets)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sdworker serve",
        description="Serve RunPod's serverless API locally, with real runpod worker processes.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port; 0 picks a free one")
    parser.add_argument(
        "--workers", type=int, default=None, help="worker processes (SDWORKER_WORKERS)"
    )
    parser.add_argument(
        "--handler",
        type=Path,
        default=None,
        help="a custom handler script (SDWORKER_HANDLER; default: the packaged worker)",
    )
    parser.add_argument(
        "--endpoint-id", default=None, help="served endpoint id (SDWORKER_ENDPOINT_ID)"
    )
    parser.add_argument(
        "--state-dir", type=Path, default=None, help="queue and files (SDWORKER_STATE_DIR)"
    )
    parser.add_argument(
        "--public-url",
        default=None,
        help="base of result-file links (default: the address each client used)",
    )
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    return parser


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def reachable_host(host: str) -> str:
    """The address this machine's own processes use to reach a server bound to ``host``:
    loopback for a wildcard bind, else the bound address itself (bracketed for IPv6)."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _registry(settings: Settings) -> ModelRegistry | None:
    """The baked models the request formats name; None (said on stderr) when the endpoint
    cannot serve them: it refuses to start, with the worker's own message.

    With the packaged worker the models are checked as the worker checks them at its start
    (some baked, the default one of them, the aliases, every file at its size; sha256, which
    ``SDWORKER_VERIFY_SHA256`` asks of each worker, is left to the workers, whose failure
    shows in ``/health``). A ``--handler`` script of one's own may need no models, and with
    ``--workers 0`` the workers are someone else's: then only the aliases are checked."""
    from sdworker.core.models import ModelRegistry

    packaged = settings.workers > 0 and settings.handler_path is None
    try:
        registry = ModelRegistry(settings)
        if packaged:
            registry.verify(check_sha256=False)
        else:
            registry.check_aliases()
    except SdworkerError as exc:
        print(f"sdworker serve: refusing to start: {exc}", file=sys.stderr)
        return None
    return registry


def _overrides(args: argparse.Namespace) -> dict[str, object]:
    """The settings the command line gives (over the environment's)."""
    overrides: dict[str, object] = {}
    if args.workers is not None:
        overrides["workers"] = args.workers
    if args.handler is not None:
        overrides["handler_path"] = args.handler
    if args.endpoint_id:
        overrides["endpoint_id"] = args.endpoint_id
    if args.state_dir is not None:
        overrides["state_dir"] = args.state_dir
    return overrides


def serve_command(argv: list[str]) -> int:
    """Run the endpoint until interrupted; returns the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"sdworker serve: {exc}", file=sys.stderr)
        return 2
    settings = settings.with_(**_overrides(args))

    if not is_loopback(args.host) and not settings.api_key:
        print(
            f"sdworker serve: refusing to listen on {args.host} without an API key;"
            " set SDWORKER_API_KEY, or bind 127.0.0.1",
            file=sys.stderr,
        )
        return 2
    handler = settings.handler_path
    if settings.workers > 0 and handler is not None and not handler.is_file():
        print(
            f"sdworker serve: handler {handler} not found (give an existing script,"
            " none to run the packaged worker, or --workers 0 to serve the queue alone)",
            file=sys.stderr,
        )
        return 2

    registry = _registry(settings)
    if registry is None:
        return 2

    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as exc:
        print(f"sdworker serve: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    port = sock.getsockname()[1]
    # workers are local processes: they use the bound address directly, never a proxy's
    local_url = f"http://{reachable_host(args.host)}:{port}"
    shown_url = (args.public_url or local_url).rstrip("/")

    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    from sdworker.formats.registry import routers

    app = create_app(
        settings,
        public_url=args.public_url,
        worker_url=local_url,
        worker_log=None,
        extra_routers=routers(registry, settings),
    )
    print(
        f"sdworker endpoint {settings.endpoint_id!r} on {shown_url}/v2/{settings.endpoint_id}"
        f" with {settings.workers} worker(s); docs at {shown_url}/docs",
        flush=True,
    )
    config = uvicorn.Config(
        app,
        log_level=args.log_level,
        timeout_graceful_shutdown=3,
        access_log=args.log_level == "debug",
    )
    # after uvicorn.Config, which sets up its loggers: the access log prints each request's
    # query, and a worker's job-take query carries the worker token
    for name in ("uvicorn.access", "uvicorn.error"):
        logging.getLogger(name).addFilter(QueryTokenFilter())
    _EndpointServer(config, app).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(serve_command(sys.argv[1:]))
