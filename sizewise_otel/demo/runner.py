"""``sizewise-otel demo``: the demo and its materials service on loopback, optionally under load."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import sys

import structlog
import uvicorn

from sizewise_otel.demo.console import ErrorConsole, banner

log = structlog.get_logger("sizewise.demo")


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def warn_if_exposed(host: str) -> None:
    from sizewise_otel.settings import get_settings

    if not is_loopback(host) and not get_settings().api_keys():
        log.warning("!!! monitoring endpoints are OPEN: listening on a non-loopback address without "
                    "SIZEWISE_API_KEYS; anyone who reaches this port can read errors and health "
                    "details", host=host)


async def serve(host: str, port: int, load: bool, load_rate: float, load_duration: float | None) -> None:
    servers: list[uvicorn.Server] = []
    if not os.environ.get("MATERIALS_SERVICE_URL"):
        from sizewise_otel.demo.materials import create_materials_app

        mport = _free_port("127.0.0.1")
        os.environ["MATERIALS_SERVICE_URL"] = f"http://127.0.0.1:{mport}"
        servers.append(uvicorn.Server(uvicorn.Config(create_materials_app(), host="127.0.0.1",
                                                     port=mport, log_level="warning")))
    from sizewise_otel.demo.logsetup import configure_logging
    from sizewise_otel.settings import get_settings

    get_settings.cache_clear()
    configure_logging(get_settings().log_level)
    warn_if_exposed(host)
    from sizewise_otel.demo import create_app

    app = create_app()
    main = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                         access_log=False))
    servers.append(main)
    # After uvicorn.Config (it configures its loggers): captured errors print one line each.
    tracker = app.state.sizewise.tracker
    console = ErrorConsole(tracker).install() if tracker is not None else None
    try:
        tasks = [asyncio.create_task(s.serve()) for s in servers]
        while not main.started:
            await asyncio.sleep(0.05)
            if tasks[-1].done():
                await tasks[-1]
                return
        base = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
        log.info("demo serving", url=base, metrics=f"{base}/metrics", health=f"{base}/health",
                 dashboard=f"{base}/dashboard", materials=os.environ["MATERIALS_SERVICE_URL"])
        from sizewise_otel.demo.load import describe

        print(banner(base, get_settings(), describe(load_rate, load_duration) if load else None,
                     errors_tracked=console is not None), file=sys.stderr, flush=True)
        if load:
            from sizewise_otel.demo.load import run_load

            async def drive() -> None:
                stats = await run_load(base, rate=load_rate, duration=load_duration)
                log.info("load finished", sent=stats.sent, by_status=dict(stats.by_status),
                         failures=stats.failures)
                if load_duration is not None:
                    for s in servers:
                        s.should_exit = True

            tasks.append(asyncio.create_task(drive()))
        await asyncio.gather(*tasks[: len(servers)])
    finally:
        if console is not None:
            await asyncio.to_thread(console.close, 2.0)
