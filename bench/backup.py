"""Backup, restore and prune benchmark on a database of realistic size.

Builds a throwaway data dir with finished pulses (prompt, output tail, events,
attempts), then times `reeve db backup` as a fresh process (idle, and while
another process adds pulses as fast as it can), `reeve db restore` and
`reeve db prune`. Prints a Markdown table; figures go in docs/performance.md.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

PULSES = 50_000
REEVE = str(Path(sys.executable).with_name("reeve"))

SEED = textwrap.dedent(
    """
    import os, sys
    from datetime import timedelta
    from reeve_cli.config import ensure_data_dir, load_settings
    from reeve_cli.db import open_database
    from reeve_cli.model import db_time, utcnow

    settings = load_settings()
    ensure_data_dir(settings)
    db = open_database(settings.db_url)
    old = db_time(utcnow() - timedelta(days=60))
    tail = "agent output line\\n" * 100
    with db.transaction(write=True) as conn:
        for i in range(int(sys.argv[1])):
            rows = conn.execute(
                "INSERT INTO pulses (prompt, scheduled_at, priority, status, source,"
                " created_at, updated_at, finished_at, output_tail) VALUES"
                " (:p, :t, 2, 'completed', 'bench', :t, :t, :t, :tail) RETURNING id",
                {"p": f"Check the inbox and summarise it ({i})", "t": old,
                 "tail": tail},
            )
            pid = rows[0]["id"]
            conn.execute(
                "INSERT INTO attempts (pulse_id, number, status, started_at,"
                " finished_at) VALUES (:id, 1, 'completed', :t, :t)",
                {"id": pid, "t": old},
            )
            conn.execute(
                "INSERT INTO events (at, kind, pulse_id) VALUES (:t, 'pulse.completed',"
                " :id)", {"t": old, "id": pid},
            )
    """
)

WRITER = textwrap.dedent(
    """
    import sys
    from datetime import timedelta
    from reeve_cli import store
    from reeve_cli.db import open_database
    from reeve_cli.model import utcnow

    db = open_database(sys.argv[1], busy_timeout=30)
    print("ready", flush=True)
    while True:
        store.add_pulse(db, prompt="write during backup",
                        scheduled_at=utcnow() + timedelta(hours=1))
    """
)


def timed(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([REEVE, *args], env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="reeve-bench-backup-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("REEVE_")}
    env.update(
        REEVE_DATA_DIR=str(tmp / "data"),
        REEVE_CONFIG=str(tmp / "config.toml"),
        REEVE_TIMEZONE="UTC",
    )
    try:
        subprocess.run([sys.executable, "-c", SEED, str(PULSES)], env=env, check=True)
        db_file = tmp / "data" / "reeve.db"
        size_mb = db_file.stat().st_size / 1e6
        rows = []

        seconds = timed(["db", "backup", str(tmp / "idle.db")], env)
        rows.append(("backup, idle", seconds))

        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, f"sqlite:///{db_file}"],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert writer.stdout is not None
        writer.stdout.readline()
        try:
            seconds = timed(["db", "backup", str(tmp / "busy.db")], env)
        finally:
            writer.kill()
            writer.wait()
        rows.append(("backup, another process writing", seconds))

        rows.append(("restore", timed(["db", "restore", str(tmp / "idle.db")], env)))
        prune_s = timed(["db", "prune", "--older-than", "30d"], env)

        print(f"Database: {PULSES:,} finished pulses, {size_mb:.0f} MB\n")
        print("| operation | wall time | rate |")
        print("|---|---|---|")
        for name, seconds in rows:
            print(f"| {name} | {seconds:.2f} s | {size_mb / seconds:.0f} MB/s |")
        print(
            f"| prune --older-than 30d (all {PULSES:,}) | {prune_s:.2f} s "
            f"| {PULSES / prune_s:,.0f} pulses/s |"
        )
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
