"""What the tests of the docs/ guides share: the fenced ``sh`` blocks marked
``<!-- tested: NAME -->``, the output documented right after one, and
running a block with bash exactly as written."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping
from pathlib import Path

_TESTED = re.compile(r"<!-- tested: ([\w-]+) -->\n```sh\n(.*?)\n```\n", re.S)


def tested_blocks(guide: Path) -> dict[str, str]:
    """Name -> the commands of every tested block, in the guide's order."""
    found = _TESTED.findall(guide.read_text(encoding="utf-8"))
    names = [name for name, _ in found]
    assert len(names) == len(set(names)), f"duplicate tested block names: {names}"
    return dict(found)


def documented_output(guide: Path, name: str) -> str:
    """The plain fenced block right after tested block ``name``: its output."""
    match = re.search(
        rf"<!-- tested: {re.escape(name)} -->\n```sh\n.*?\n```\n\n```\n(.*?)\n```\n",
        guide.read_text(encoding="utf-8"),
        re.S,
    )
    assert match is not None, f"no output block after the tested block {name!r}"
    return match.group(1)


def run_block(
    block: str, cwd: Path, env: Mapping[str, str], timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    """``block`` run by bash in ``cwd`` with only ``env``; a failing command
    in a pipeline fails the block."""
    return subprocess.run(
        ["bash", "-c", "set -o pipefail\n" + block],
        cwd=cwd,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
