"""Daemon benchmarks: wake-up latency, throughput, claim order, memory, start time.

    .venv/bin/python bench/daemon.py            # all scenarios, prints a table
    .venv/bin/python bench/daemon.py --quick    # smaller counts

Each scenario uses its own temporary data dir. Latency and start-up scenarios run
the real `reeve daemon` process; the throughput scenario runs the daemon
in-process with a no-op executor, so it measures Reeve (claim, bookkeeping,
events) rather than process creation. Numbers go to docs/performance.md.
"""

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

REEVE = str(Path(sys.executable).with_name("reeve"))


def pct(values, q):
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def fresh_env(tmp, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("REEVE_")}
    env.update(
        REEVE_DATA_DIR=str(tmp / "data"),
        REEVE_CONFIG=str(tmp / "config.toml"),
        REEVE_TIMEZONE="UTC",
        REEVE_DESK=str(tmp),
        REEVE_API_HOST="127.0.0.1",
        REEVE_API_PORT="0",
        REEVE_LOG_LEVEL="WARNING",
    )
    env.update({k: str(v) for k, v in extra.items()})
    return env


def open_db(env):
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        from reeve_cli.config import ensure_data_dir, load_settings
        from reeve_cli.db import open_database

        settings = load_settings()
        ensure_data_dir(settings)
        return settings, open_database(settings.db_url)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def start(env):
    data = Path(env["REEVE_DATA_DIR"])
    began = time.monotonic()
    proc = subprocess.Popen(
        [REEVE, "daemon"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    while True:
        if proc.poll() is not None:
            raise SystemExit(proc.stderr.read().decode())
        try:
            if json.loads((data / "daemon.json").read_text())["pid"] == proc.pid:
                return proc, time.monotonic() - began
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.005)


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)


def rss_mb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def bulk_insert(db, count, *, due, spread_s=0.0, priorities=None):
    from reeve_cli.model import db_time

    now = db_time(datetime.now(UTC))
    rows = []
    for index in range(count):
        at = due + timedelta(seconds=spread_s * index)
        rank = priorities[index] if priorities else 2
        rows.append(
            {
                "prompt": f"bench {index}",
                "at": db_time(at),
                "priority": rank,
                "now": now,
            }
        )
    with db.transaction(write=True) as conn:
        conn.executemany(
            "INSERT INTO pulses (prompt, scheduled_at, priority, status, source, "
            "created_at, updated_at, max_retries) VALUES (:prompt, :at, :priority, "
            "'pending', 'bench', :now, :now, 0)",
            rows,
        )


def agent_starts(path):
    starts = {}
    if path.exists():
        for line in path.read_text().split("\n"):
            parts = line.split()
            if len(parts) == 2:
                starts[int(parts[0])] = float(parts[1])
    return starts


def scenario_latency(count):
    """Due -> claim and due -> agent process start, pulses 25 ms apart."""
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        log = tmp / "starts.txt"
        agent = tmp / "agent.sh"
        agent.write_text(f'#!/bin/sh\necho "$REEVE_PULSE_ID $(date +%s.%N)" >> {log}\n')
        agent.chmod(0o755)
        env = fresh_env(
            tmp,
            REEVE_EXECUTOR="command",
            REEVE_AGENT_COMMAND=str(agent),
            REEVE_MAX_CONCURRENT=8,
        )
        settings, db = open_db(env)
        proc, _ = start(env)
        first = datetime.now(UTC) + timedelta(seconds=2)
        bulk_insert(db, count, due=first, spread_s=0.025)
        deadline = time.monotonic() + 60 + count * 0.05
        while time.monotonic() < deadline:
            with db.transaction() as conn:
                done = conn.execute(
                    "SELECT COUNT(*) AS n FROM pulses WHERE status = 'completed'"
                )[0]["n"]
            if done >= count:
                break
            time.sleep(0.2)
        stop(proc)
        with db.transaction() as conn:
            rows = conn.execute(
                "SELECT p.id, p.scheduled_at, a.lateness_s FROM pulses p "
                "JOIN attempts a ON a.pulse_id = p.id AND a.number = 1"
            )
        starts = agent_starts(log)
        claim = [r["lateness_s"] * 1000 for r in rows]
        agent_ms = []
        for r in rows:
            due = datetime.strptime(r["scheduled_at"], "%Y-%m-%dT%H:%M:%S.%fZ")
            due = due.replace(tzinfo=UTC).timestamp()
            if r["id"] in starts:
                agent_ms.append((starts[r["id"]] - due) * 1000)
        return claim, agent_ms


def scenario_cli_add(count):
    """A separate `reeve pulse add` process -> the daemon claims the pulse."""
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        env = fresh_env(
            tmp,
            REEVE_EXECUTOR="command",
            REEVE_AGENT_COMMAND="true",
            REEVE_MAX_CONCURRENT=2,
        )
        settings, db = open_db(env)
        proc, _ = start(env)
        delays = []
        for _ in range(count):
            out = subprocess.run(
                [REEVE, "pulse", "add", "hi", "--json"],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            pulse_id = json.loads(out.stdout)["id"]
            while True:
                with db.transaction() as conn:
                    rows = conn.execute(
                        "SELECT p.created_at, a.started_at FROM pulses p JOIN "
                        "attempts a ON a.pulse_id = p.id WHERE p.id = :id",
                        {"id": pulse_id},
                    )
                if rows:
                    created = datetime.fromisoformat(rows[0]["created_at"][:-1])
                    began = datetime.fromisoformat(rows[0]["started_at"][:-1])
                    delays.append((began - created).total_seconds() * 1000)
                    break
                time.sleep(0.005)
            time.sleep(random.uniform(0.05, 0.15))
        stop(proc)
        return delays


class NoopExecutor:
    name = "noop"
    description = "returns at once"

    async def run(self, request, on_start):
        from reeve_cli.executor import AttemptResult

        on_start(os.getpid())
        return AttemptResult(ok=True, exit_code=0, error=None)


def scenario_burst(count, slots):
    """`count` pulses due at once, random priorities, `slots` slots, no-op agent."""
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        env = fresh_env(tmp, REEVE_MAX_CONCURRENT=slots)
        settings, db = open_db(env)
        ranks = [random.randrange(5) for _ in range(count)]
        bulk_insert(
            db,
            count,
            due=datetime.now(UTC) - timedelta(seconds=60),
            spread_s=0.001,
            priorities=ranks,
        )
        os.environ.update(env)
        from reeve_cli.config import load_settings
        from reeve_cli.daemon import Daemon

        settings = load_settings()
        executor = NoopExecutor()
        daemon = Daemon(settings, executor_for=lambda pulse: executor, serve_api=False)

        async def main():
            task = asyncio.create_task(daemon.run())
            await daemon.ready.wait()
            began = time.monotonic()
            claims_done = None
            while daemon.dispatcher.stats.completed < count:
                if claims_done is None and daemon.dispatcher.stats.claimed >= count:
                    claims_done = time.monotonic() - began
                await asyncio.sleep(0.002)
            took = time.monotonic() - began
            daemon.request_stop()
            await task
            return took, claims_done or took

        took, claims_took = asyncio.run(main())
        with db.transaction() as conn:
            order = [
                (r["priority"], r["scheduled_at"], r["id"])
                for r in conn.execute(
                    "SELECT p.id, p.priority, p.scheduled_at FROM attempts a "
                    "JOIN pulses p ON p.id = a.pulse_id ORDER BY a.id"
                )
            ]
        in_order = all(a <= b for a, b in zip(order, order[1:], strict=False))
        return count / took, took, count / claims_took, in_order, len(order)


def scenario_burst_process(count, slots):
    """The real daemon, `count` due at once, `slots` slots, agent `/bin/true`.

    Counts completions per second including the agent process of every attempt
    (the `command` executor spawns it, waits for it, reads its output).
    """
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        env = fresh_env(
            tmp,
            REEVE_EXECUTOR="command",
            REEVE_AGENT_COMMAND="true",
            REEVE_MAX_CONCURRENT=slots,
        )
        settings, db = open_db(env)
        bulk_insert(db, count, due=datetime.now(UTC) - timedelta(seconds=60))
        proc, _ = start(env)
        deadline = time.monotonic() + 120 + count * 0.1
        while time.monotonic() < deadline:
            with db.transaction() as conn:
                done = conn.execute(
                    "SELECT COUNT(*) AS n FROM pulses WHERE status IN "
                    "('completed', 'failed')"
                )[0]["n"]
            if done >= count:
                break
            time.sleep(0.1)
        stop(proc)
        with db.transaction() as conn:
            row = conn.execute(
                "SELECT MIN(a.started_at) AS first, MAX(a.finished_at) AS last, "
                "SUM(a.status = 'completed') AS ok FROM attempts a"
            )[0]
        first = datetime.fromisoformat(row["first"][:-1])
        last = datetime.fromisoformat(row["last"][:-1])
        took = (last - first).total_seconds()
        return count / took, took, int(row["ok"] or 0)


def scenario_wake(pending, wakes):
    """Event-loop time of one wake-up (another process wrote): nothing is due.

    What `on_rows_changed` runs: dispatch (is anything due?), re-arm the pulse
    timer (MIN query), mirror schedules (a COUNT/MAX query), with `pending`
    future pulses and one schedule in the database.
    """
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        env = fresh_env(tmp)
        settings, db = open_db(env)
        bulk_insert(db, pending, due=datetime.now(UTC) + timedelta(days=1), spread_s=1)
        os.environ.update(env)
        from reeve_cli.config import load_settings
        from reeve_cli.daemon import Daemon
        from reeve_cli.schedule import create_schedule

        settings = load_settings()
        create_schedule(settings, db, name="hourly", prompt="p", cron="0 * * * *")
        daemon = Daemon(settings, serve_api=False)

        async def main():
            task = asyncio.create_task(daemon.run())
            await daemon.ready.wait()
            await asyncio.sleep(0.2)
            costs = []
            for _ in range(wakes):
                daemon._sync_pending = True  # what on_rows_changed sets
                daemon._rearm_pending = True
                began = time.perf_counter()
                daemon._react()
                daemon._settle(datetime.now(UTC))
                costs.append((time.perf_counter() - began) * 1000)
                await asyncio.sleep(0.002)
            daemon.request_stop()
            await task
            return costs

        return asyncio.run(main())


def scenario_idle_and_big(pending):
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        env = fresh_env(tmp, REEVE_AGENT_COMMAND="true")
        settings, db = open_db(env)
        proc, started = start(env)
        time.sleep(2)
        idle = rss_mb(proc.pid)
        stop(proc)
        bulk_insert(db, pending, due=datetime.now(UTC) + timedelta(days=1), spread_s=1)
        proc, big_start = start(env)
        time.sleep(1)
        big_rss = rss_mb(proc.pid)
        stop(proc)
        return started, idle, big_start, big_rss


def run_only(which, burst_n, spawn_n, wake_pending):
    print(f"load average {os.getloadavg()[0]:.2f}")
    if which == "latency":
        claim, agent = scenario_latency(240)
        print(
            f"due -> claim p50 {pct(claim, 50):.1f} ms, p99 {pct(claim, 99):.1f} ms; "
            f"agent p50 {pct(agent, 50):.1f} ms, p99 {pct(agent, 99):.1f} ms"
        )
    elif which == "burst":
        rate, took, claim_rate, in_order, seen = scenario_burst(burst_n, 8)
        print(
            f"completions {rate:,.0f}/s ({took:.2f} s), claims {claim_rate:,.0f}/s, "
            f"order {'yes' if in_order else 'NO'} ({seen})"
        )
    elif which == "spawn":
        rate, took, ok = scenario_burst_process(spawn_n, 8)
        print(f"completions {rate:.0f}/s ({took:.2f} s, {ok} ok)")
    else:
        wake = scenario_wake(wake_pending, 300)
        print(f"wake p50 {pct(wake, 50):.2f} ms, p99 {pct(wake, 99):.2f} ms")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--only",
        choices=["latency", "burst", "spawn", "wake"],
        help="run one scenario",
    )
    args = parser.parse_args()
    latency_n, cli_n, burst_n, big_n = (
        (60, 10, 2000, 20000) if args.quick else (240, 40, 10000, 100000)
    )
    spawn_n, wake_pending = (200, 10000) if args.quick else (1000, 100000)
    if args.only:
        run_only(args.only, burst_n, spawn_n, wake_pending)
        return

    rows = []
    claim, agent = scenario_latency(latency_n)
    rows.append(
        (
            f"due -> claim, {len(claim)} pulses 25 ms apart",
            f"p50 {pct(claim, 50):.1f} ms, p99 {pct(claim, 99):.1f} ms",
        )
    )
    rows.append(
        (
            f"due -> agent process running ({len(agent)})",
            f"p50 {pct(agent, 50):.1f} ms, p99 {pct(agent, 99):.1f} ms",
        )
    )
    cli = scenario_cli_add(cli_n)
    rows.append(
        (
            f"`reeve pulse add` commit -> claim ({cli_n} runs)",
            f"p50 {pct(cli, 50):.1f} ms, p99 {pct(cli, 99):.1f} ms",
        )
    )
    rate, took, claim_rate, in_order, seen = scenario_burst(burst_n, 8)
    rows.append(
        (
            f"{burst_n} due at once, 8 slots, no-op executor: completions",
            f"{rate:,.0f} pulses/s ({took:.2f} s)",
        )
    )
    rows.append(
        (
            f"{burst_n} due at once, 8 slots, no-op executor: claims",
            f"{claim_rate:,.0f} pulses/s",
        )
    )
    rows.append(
        (
            "claims in priority, time, id order",
            f"{'yes' if in_order else 'NO'} ({seen} claims checked)",
        )
    )
    spawn_rate, spawn_took, spawn_ok = scenario_burst_process(spawn_n, 8)
    rows.append(
        (
            f"{spawn_n} due at once, 8 slots, real daemon, agent `true`",
            f"{spawn_rate:,.0f} pulses/s ({spawn_took:.2f} s, {spawn_ok} ok)",
        )
    )
    wake = scenario_wake(wake_pending, 300)
    rows.append(
        (
            f"wake-up on the loop, nothing due, {wake_pending:,} pending",
            f"p50 {pct(wake, 50):.2f} ms, p99 {pct(wake, 99):.2f} ms",
        )
    )
    started, idle, big_start, big_rss = scenario_idle_and_big(big_n)
    rows.append(("start (empty database) -> ready", f"{started:.2f} s"))
    rows.append(("idle daemon RSS", f"{idle:.0f} MB"))
    rows.append((f"start with {big_n:,} pending -> ready", f"{big_start:.2f} s"))
    rows.append((f"RSS with {big_n:,} pending", f"{big_rss:.0f} MB"))

    rows.append(("load average (1 min) at the end", f"{os.getloadavg()[0]:.2f}"))
    width = max(len(r[0]) for r in rows)
    print(f"| {'measurement':<{width}} | result |")
    print(f"|{'-' * (width + 2)}|--------|")
    for label, value in rows:
        print(f"| {label:<{width}} | {value} |")


if __name__ == "__main__":
    main()
