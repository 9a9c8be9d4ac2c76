"""Run every benchmark script in bench/ and print their Markdown tables."""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    failed = []
    for script in sorted(HERE.glob("*.py")):
        if script.name == "run.py" or script.name.startswith("_"):
            continue
        print(f"## {script.stem}\n", flush=True)
        result = subprocess.run(
            [sys.executable, str(script)], cwd=HERE.parent, check=False
        )
        print(flush=True)
        if result.returncode != 0:
            failed.append(script.name)
    if failed:
        print(f"Failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
