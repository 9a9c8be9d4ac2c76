"""HTTP API load: 4 keep-alive connections for 10 s against a real daemon.

The daemon runs as its own process (`reeve daemon`, private data dir, API on
127.0.0.1 with an ephemeral port); this script is the second process and drives
it with a minimal asyncio HTTP/1.1 client, so the client costs little CPU.
Pulses are created 30 days ahead so no agent runs during the measurement.

    .venv/bin/python bench/api.py [--seconds 10] [--connections 4] [--app-only]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def start_daemon(
    data_dir: Path, app_only: bool = False
) -> tuple[subprocess.Popen[bytes], str, int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REEVE_")} | {
        "REEVE_DATA_DIR": str(data_dir),
        "REEVE_CONFIG": str(data_dir / "config.toml"),
        "REEVE_TIMEZONE": "Europe/Berlin",
        "REEVE_API_HOST": "127.0.0.1",
        "REEVE_API_PORT": "0",
        "REEVE_AGENT_COMMAND": "true",
        "REEVE_LOG_LEVEL": "WARNING",
        "REEVE_DESK": str(data_dir),
    }
    reeve = Path(sys.executable).with_name("reeve")
    command = [str(reeve), "daemon"]
    if app_only:
        command = [sys.executable, __file__, "--serve-app", str(data_dir)]
    log = open(data_dir.parent / "daemon.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        command,
        env=env,
        stdout=log,
        stderr=log,
        stdin=subprocess.DEVNULL,
    )
    info_path = data_dir / "daemon.json"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"daemon exited with {proc.returncode}")
        try:
            info = json.loads(info_path.read_text())
        except (OSError, ValueError):
            info = {}
        if info.get("pid") == proc.pid and info.get("api_url"):
            host, port = info["api_url"].removeprefix("http://").rsplit(":", 1)
            token = (data_dir / "api_token").read_text().strip()
            return proc, host, int(port), token
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("daemon did not become ready within 60 s")


def serve_app(data_dir: Path) -> None:
    """Serve only the API app with uvicorn (no scheduler), for comparison."""
    import socket

    import uvicorn

    from reeve_cli.api import create_app
    from reeve_cli.config import load_settings
    from reeve_cli.db import open_database

    settings = load_settings()
    app = create_app(settings, open_database(settings.db_url))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)  # accept (queue) connections before uvicorn has started
    info = {"pid": os.getpid(), "api_url": f"http://127.0.0.1:{sock.getsockname()[1]}"}
    (data_dir / "daemon.json").write_text(json.dumps(info))
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])


def build_request(method: str, path: str, host: str, token: str, body: bytes) -> bytes:
    lines = [
        f"{method} {path} HTTP/1.1",
        f"Host: {host}",
        f"Authorization: Bearer {token}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "",
        "",
    ]
    return "\r\n".join(lines).encode() + body


async def worker(
    host: str, port: int, request: bytes, deadline: float, latencies: list[float]
) -> dict[int, int]:
    statuses: dict[int, int] = {}
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            status = int(head.split(b" ", 2)[1])
            statuses[status] = statuses.get(status, 0) + 1
    finally:
        writer.close()
    return statuses


async def load(
    host: str, port: int, request: bytes, seconds: float, connections: int
) -> tuple[list[float], dict[int, int], float]:
    latencies: list[float] = []
    started = time.perf_counter()
    deadline = started + seconds
    results = await asyncio.gather(
        *(worker(host, port, request, deadline, latencies) for _ in range(connections))
    )
    elapsed = time.perf_counter() - started
    statuses: dict[int, int] = {}
    for result in results:
        for status, count in result.items():
            statuses[status] = statuses.get(status, 0) + count
    return latencies, statuses, elapsed


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument(
        "--app-only",
        action="store_true",
        help="serve only the API app with uvicorn, without the daemon",
    )
    parser.add_argument("--serve-app", metavar="DATA_DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_app:
        serve_app(Path(args.serve_app))
        return

    body = json.dumps({"prompt": "benchmark pulse", "at": "in 30d"}).encode()
    cases = [
        ("POST /api/pulses", "POST", "/api/pulses", body),
        ("GET /api/health", "GET", "/api/health", b""),
    ]
    rows = []
    with tempfile.TemporaryDirectory(prefix="reeve-bench-") as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir(mode=0o700)
        proc, host, port, token = start_daemon(data_dir, args.app_only)
        try:
            for name, method, path, payload in cases:
                request = build_request(method, path, host, token, payload)
                asyncio.run(load(host, port, request, 1.0, args.connections))  # warm-up
                cpu_before = cpu_seconds(proc.pid)
                latencies, statuses, elapsed = asyncio.run(
                    load(host, port, request, args.seconds, args.connections)
                )
                cpu = (cpu_seconds(proc.pid) - cpu_before) / len(latencies) * 1000
                rows.append(
                    (
                        name,
                        len(latencies) / elapsed,
                        statistics.median(latencies) * 1000,
                        percentile(latencies, 0.99) * 1000,
                        max(latencies) * 1000,
                        cpu,
                        statuses,
                    )
                )
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()

    header = (
        "| request | req/s | p50 ms | p99 ms | max ms | server CPU ms/req | statuses |"
    )
    print(header)
    print("|---|---:|---:|---:|---:|---:|---|")
    for name, rate, p50, p99, worst, cpu, statuses in rows:
        shown = ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items()))
        figures = f"{rate:,.0f} | {p50:.1f} | {p99:.1f} | {worst:.1f} | {cpu:.2f}"
        print(f"| `{name}` | {figures} | {shown} |")
    server = "uvicorn with the app only" if args.app_only else "reeve daemon"
    print(
        f"\n{server}, {args.connections} connections, {args.seconds:g} s each, "
        f"CPU count {os.cpu_count()}, load average {os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    main()
