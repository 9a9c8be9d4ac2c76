#!/usr/bin/env python3
"""A stand-in for `claude -p --output-format stream-json --verbose` in tests.

It speaks Claude Code's stream-json: a `system`/`init` event, one `assistant`
message, then a `result` event, one JSON object per line. The prompt comes from
the arguments after the options (or after `--`), else from stdin. Directives in
the prompt change what it does:

    [sleep N]      wait N seconds (after init) before answering
    [silent N]     same as sleep; named for stall tests (no output meanwhile)
    [fail]         answer with is_error true and exit status 1
    [exit N]       print init, then exit with status N and no result
    [hang]         print nothing at all and sleep forever
    [children]     start a child process (same process group) that sleeps
    [escape]       start a child in a new session (outside the process group)
                   that sleeps holding stdout open
    [stderr TEXT]  write TEXT to stderr
    [spam N]       print N KiB of filler lines before the result
    [new-session]  when resuming, report a new session id in the result
    [ignore-term]  ignore SIGTERM (only SIGKILL stops it)

Each run appends one JSON line to $FAKE_AGENT_LOG when set: argv, cwd, pid,
the prompt, where it came from, the resumed id, the REEVE_* variables, the
child pid and the start time.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid


def parse_args(argv):
    resume = None
    positional = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            positional.extend(argv[i + 1 :])
            break
        if arg in ("--resume", "-r"):
            resume = argv[i + 1] if i + 1 < len(argv) else None
            i += 2
            continue
        if arg.startswith("--resume="):
            resume = arg.split("=", 1)[1]
        elif arg == "--output-format":
            i += 1
        elif not arg.startswith("-"):
            positional.append(arg)
        i += 1
    return resume, positional


def directive(prompt, name):
    match = re.search(r"\[" + name + r"(?: ([^\]]*))?\]", prompt)
    if match is None:
        return None
    return match.group(1) if match.group(1) is not None else ""


def emit(event):
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def main():
    started = time.time()
    resume, positional = parse_args(sys.argv[1:])
    if positional:
        prompt, source = " ".join(positional), "argv"
    else:
        prompt, source = sys.stdin.read(), "stdin"

    if directive(prompt, "ignore-term") is not None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)

    child_pid = None
    if directive(prompt, "children") is not None:
        child = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(1000)"],
            stdin=subprocess.DEVNULL,
        )
        child_pid = child.pid

    escape_pid = None
    if directive(prompt, "escape") is not None:
        escaped = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(1000)"],
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        escape_pid = escaped.pid

    log_path = os.environ.get("FAKE_AGENT_LOG")
    if log_path:
        record = {
            "argv": sys.argv[1:],
            "cwd": os.getcwd(),
            "pid": os.getpid(),
            "pgid": os.getpgid(0),
            "prompt": prompt,
            "prompt_source": source,
            "stdin": prompt if source == "stdin" else None,
            "resume": resume,
            "env": {k: v for k, v in os.environ.items() if k.startswith("REEVE_")},
            "REEVE_PULSE_ID": os.environ.get("REEVE_PULSE_ID"),
            "child_pid": child_pid,
            "escape_pid": escape_pid,
            "started_at": started,
        }
        with open(log_path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")

    if directive(prompt, "hang") is not None:
        while True:
            time.sleep(3600)

    stderr_text = directive(prompt, "stderr")
    if stderr_text:
        sys.stderr.write(stderr_text + "\n")
        sys.stderr.flush()

    session = resume or str(uuid.uuid4())
    emit(
        {
            "type": "system",
            "subtype": "init",
            "cwd": os.getcwd(),
            "session_id": session,
            "tools": ["Bash", "Read", "Edit", "Write"],
            "mcp_servers": [],
            "model": "claude-fake-1",
            "permissionMode": "default",
            "apiKeySource": "none",
        }
    )

    exit_code = directive(prompt, "exit")
    if exit_code is not None:
        sys.exit(int(exit_code))

    for name in ("sleep", "silent"):
        seconds = directive(prompt, name)
        if seconds:
            time.sleep(float(seconds))

    spam = directive(prompt, "spam")
    if spam:
        line = "x" * 1023 + "\n"
        for _ in range(int(spam)):
            sys.stdout.write(line)
        sys.stdout.flush()

    failed = directive(prompt, "fail") is not None
    if resume and directive(prompt, "new-session") is not None:
        session = str(uuid.uuid4())
    text = "Something went wrong" if failed else f"Done: {prompt.strip()[:60]}"
    emit(
        {
            "type": "assistant",
            "message": {
                "id": "msg_fake",
                "type": "message",
                "role": "assistant",
                "model": "claude-fake-1",
                "content": [{"type": "text", "text": text}],
                "stop_reason": "end_turn",
                "usage": {"input_tokens": 12, "output_tokens": 7},
            },
            "parent_tool_use_id": None,
            "session_id": session,
        }
    )
    duration_ms = int((time.time() - started) * 1000)
    emit(
        {
            "type": "result",
            "subtype": "error_during_execution" if failed else "success",
            "is_error": failed,
            "duration_ms": duration_ms,
            "duration_api_ms": max(duration_ms - 1, 0),
            "num_turns": 1,
            "result": text,
            "session_id": session,
            "total_cost_usd": 0.0123,
            "usage": {
                "input_tokens": 12,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "output_tokens": 7,
                "server_tool_use": {"web_search_requests": 0},
                "service_tier": "standard",
            },
        }
    )
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
