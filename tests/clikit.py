"""The ``credfed`` command run as a real process from tests, output captured,
and the check that a refusal is one line with the expected exit code."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Mapping
from typing import Any, NamedTuple

COMMAND = (sys.executable, "-m", "credfed.cli")
#: Tests read stdout/stderr: keep the node's info logs out of them.
QUIET = "warning"


class Result(NamedTuple):
    """Unpacks as ``code, out, err``."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def environment(env: Mapping[str, str] | None, log_level: str | None) -> dict[str, str]:
    """The test's environment plus ``env``; ``log_level=None`` leaves
    CREDFED_LOG_LEVEL alone (for tests that inspect the overrides)."""
    quiet = {} if log_level is None else {"CREDFED_LOG_LEVEL": log_level}
    return {**os.environ, **quiet, **(env or {})}


def run(
    *args: str,
    env: Mapping[str, str] | None = None,
    log_level: str | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment(env, log_level),
        check=False,
    )


def credfed(*args: str, env: Mapping[str, str] | None = None, timeout: float = 60) -> Result:
    done = run(*args, env=env, log_level=QUIET, timeout=timeout)
    return Result(done.returncode, done.stdout, done.stderr)


async def acredfed(*args: str, env: Mapping[str, str] | None = None, timeout: float = 60) -> Result:
    """credfed from an async test, without blocking the event loop (the node
    it may call, or a writer, keeps running meanwhile)."""
    proc = await asyncio.create_subprocess_exec(
        *COMMAND,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=environment(env, QUIET),
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


def one_line_error(res: Result, code: int = 1) -> str:
    assert res.code == code, (res.code, res.out, res.err)
    lines = res.err.strip().splitlines()
    assert len(lines) == 1, res.err
    return lines[0]
