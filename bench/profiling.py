"""py-spy around a benchmark phase, and a text summary of its raw output.

``python bench/profiling.py FILE... [--top N]`` prints the summary of raw
profiles written by ``--profile DIR`` of any benchmark (several files, e.g.
the rounds of one benchmark, are merged). Profiled runs are for
finding costs only: sampling slows the node, so their figures are not recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

_LINE = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")


def py_spy() -> str:
    local = Path(sys.executable).parent / "py-spy"
    found = str(local) if local.exists() else shutil.which("py-spy")
    if found is None:
        raise RuntimeError("py-spy is not installed: .venv/bin/pip install py-spy")
    return found


# CREDFED_PROFILE_NATIVE=1 adds C frames (grpc's Cython core, OpenSSL, SQLite).
NATIVE = ["--native"] if os.environ.get("CREDFED_PROFILE_NATIVE") == "1" else []


@contextmanager
def record(pid: int, path: Path, rate: int = 100) -> Iterator[None]:
    """Sample ``pid`` while the block runs; raw collapsed stacks to ``path``.

    Idle threads are not sampled, so a sidecar file keeps the wall time: a
    thread's samples / (seconds * rate) is how busy it was."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [py_spy(), "record", "--pid", str(pid), "--format", "raw", "--output", str(path),
           "--rate", str(rate), "--threads", "--function", *NATIVE]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1.0)  # let it attach before the measured phase starts
    started = time.perf_counter()
    try:
        yield
    finally:
        seconds = time.perf_counter() - started
        proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if not path.exists():
        err = proc.stderr.read().decode() if proc.stderr else ""
        raise RuntimeError(f"py-spy wrote no profile: {err.strip()}")
    _meta(path).write_text(json.dumps({"seconds": seconds, "rate": rate}))


def _meta(path: Path) -> Path:
    return path.with_suffix(".meta.json")


@contextmanager
def maybe_profile(pid: int, out_dir: str | None, label: str) -> Iterator[None]:
    if out_dir is None:
        yield
        return
    path = Path(out_dir) / f"{label}.txt"
    with record(pid, path):
        yield
    print(summarize([path]), flush=True)


@dataclass
class ThreadProfile:
    samples: int = 0
    self_time: Counter[str] = field(default_factory=Counter)
    inclusive: Counter[str] = field(default_factory=Counter)


def _frame_name(frame: str) -> str:
    """``name (path/to/file.py:12)`` -> ``name (file.py:12)``."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit('/', 1)[-1]}" if where else name


def load(paths: Sequence[Path]) -> dict[str, ThreadProfile]:
    """Per-thread samples; threads are named without their id, so the same
    thread of several recordings (rounds) adds up."""
    threads: dict[str, ThreadProfile] = defaultdict(ThreadProfile)
    lines = (line for path in paths for line in path.read_text().splitlines())
    for line in lines:
        match = _LINE.match(line)
        if match is None:
            continue
        frames = match["stack"].split(";")
        count = int(match["count"])
        # With --threads the first frame names the process, then the thread.
        thread = next((f for f in frames[:2] if f.startswith("thread ")), "thread ?")
        thread = re.sub(r"^thread \(\d+\): ", "", thread)
        stack = [_frame_name(f) for f in frames if not f.startswith(("process ", "thread "))]
        prof = threads[thread]
        prof.samples += count
        if not stack:
            continue
        prof.self_time[stack[-1]] += count
        for name in set(stack):
            prof.inclusive[name] += count
    return dict(threads)


def summarize(paths: Sequence[Path], top: int = 15) -> str:
    """Busy threads by share of wall time, each with its top frames as a
    share of that thread's busy (sampled) time."""
    threads = load(paths)
    metas = [json.loads(_meta(p).read_text()) for p in paths if _meta(p).exists()]
    wall = sum(m["seconds"] * m["rate"] for m in metas) if len(metas) == len(paths) else None
    seconds = sum(m["seconds"] for m in metas)
    out = [f"profile of {', '.join(p.name for p in paths)} ({seconds:.1f} s wall)"]
    for thread, prof in sorted(threads.items(), key=lambda kv: -kv[1].samples):
        if wall is not None and prof.samples < 0.02 * wall:
            continue
        busy = f"busy {prof.samples / wall:.0%} of wall time, " if wall else ""
        out.append(f"  {thread}: {busy}{prof.samples} samples; shares of its busy time:")
        out.append("    self:")
        out += _top(prof.self_time, prof.samples, top)
        # Frames on (nearly) every stack are the event loop's trunk: no information.
        branches = Counter({k: n for k, n in prof.inclusive.items() if n < 0.97 * prof.samples})
        out.append("    inclusive (below the event loop):")
        out += _top(branches, prof.samples, top)
    return "\n".join(out)


def _top(counts: Counter[str], total: int, top: int) -> list[str]:
    return [f"      {n / total:6.1%}  {name}" for name, n in counts.most_common(top)]


def main(argv: Sequence[str] = sys.argv[1:]) -> int:
    p = argparse.ArgumentParser(description="Summarise a raw py-spy profile.")
    p.add_argument("files", type=Path, nargs="+")
    p.add_argument("--top", type=int, default=15)
    args = p.parse_args(argv)
    print(summarize(args.files, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
