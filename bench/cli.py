"""CLI start-up benchmark: median wall time of common commands.

Runs each command 10 times as a fresh process of the installed `reeve` entry
point, against a throwaway data dir holding 10,000 pulses, and prints a
Markdown table. Targets come from issue 2; see docs/performance.md.
"""

import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

RUNS = 10
PULSES = 10_000
REEVE = str(Path(sys.executable).with_name("reeve"))


def seed(env: dict[str, str], count: int) -> None:
    """Fill the store with `count` pending pulses in one transaction."""
    os.environ.update(env)
    from reeve_cli.config import ensure_data_dir, load_settings
    from reeve_cli.db import open_database
    from reeve_cli.model import Priority, db_time

    settings = load_settings()
    ensure_data_dir(settings)
    db = open_database(settings.db_url)
    start = datetime.now(UTC) + timedelta(days=1)
    now = db_time(datetime.now(UTC))
    rows = [
        {
            "prompt": f"benchmark pulse {n}: check the inbox and summarise it",
            "scheduled_at": db_time(start + timedelta(minutes=n)),
            "priority": list(Priority)[n % 5].rank,
            "tags": '["bench"]',
            "created_at": now,
        }
        for n in range(count)
    ]
    with db.transaction(write=True) as conn:
        conn.executemany(
            "INSERT INTO pulses (prompt, scheduled_at, priority, status, "
            "sticky_notes, tags, source, created_at, updated_at, max_retries) "
            "VALUES (:prompt, :scheduled_at, :priority, 'pending', '[]', :tags, "
            "'bench', :created_at, :created_at, 2)",
            rows,
        )
    db.close()


def measure(args: list[str], env: dict[str, str]) -> tuple[list[float], list[float]]:
    """Run a command once to warm up, then RUNS times; return wall and CPU ms.

    CPU time barely moves when other processes compete for the two cores, so it
    shows what a command costs on a quiet machine better than wall time does.
    """
    subprocess.run(args, env=env, capture_output=True)  # warm-up: writes .pyc files
    walls, cpus = [], []
    for _ in range(RUNS):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        result = subprocess.run(args, env=env, capture_output=True, text=True)
        walls.append((time.perf_counter() - start) * 1000)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(
            (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000
        )
        if result.returncode != 0:
            raise SystemExit(f"{' '.join(args)} failed: {result.stderr.strip()}")
    return walls, cpus


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="reeve-bench-"))
    # Users' Python caches bytecode; without it every run recompiles edited modules.
    base = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env = {
        **base,
        "REEVE_DATA_DIR": str(workdir / "data"),
        "REEVE_CONFIG": str(workdir / "config.toml"),
        "REEVE_TIMEZONE": "Europe/Berlin",
        "TERM": "unknown",
        "NO_COLOR": "1",
    }
    complete = {
        **env,
        "_REEVE_COMPLETE": "complete_bash",
        "COMP_WORDS": "reeve pulse ",
        "COMP_CWORD": "2",
    }
    try:
        seed(env, PULSES)
        cases = [
            ("`python -c pass` (floor)", [sys.executable, "-c", "pass"], env, None),
            ("`reeve --help`", [REEVE, "--help"], env, 120),
            ("TAB completion (`reeve pulse <TAB>`)", [REEVE], complete, 120),
            (
                "`reeve pulse add ... --at 'in 1h'`",
                [REEVE, "pulse", "add", "bench", "--at", "in 1h"],
                env,
                250,
            ),
            ("`reeve pulse list --json`", [REEVE, "pulse", "list", "--json"], env, 250),
            ("`reeve pulse list` (table)", [REEVE, "pulse", "list"], env, None),
            (
                "`reeve pulse add ... --at 'tomorrow 6:45'`",
                [REEVE, "pulse", "add", "bench", "--at", "tomorrow 6:45"],
                env,
                None,
            ),
        ]
        load = os.getloadavg()[0]
        print(f"### CLI start-up ({PULSES:,} pulses in the store, {RUNS} runs each)")
        print()
        print(f"{os.cpu_count()} cores, load average {load:.1f} at the start.")
        print()
        print(
            "| Command | Median wall ms | Min wall ms | Median CPU ms | Target ms "
            "| Met |"
        )
        print("|---|---:|---:|---:|---:|---|")
        for label, args, case_env, target in cases:
            walls, cpus = measure(args, case_env)
            median = statistics.median(walls)
            met = "" if target is None else ("yes" if median <= target else "**no**")
            print(
                f"| {label} | {median:.0f} | {min(walls):.0f} "
                f"| {statistics.median(cpus):.0f} | {target or '-'} | {met} |"
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
