"""Run ``credfed serve`` as a real separate process for integration tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path


class NodeProcess:
    def __init__(self, data_dir: Path, log_path: Path, listen: str = "127.0.0.1:0") -> None:
        self.data_dir = data_dir
        self.listen = listen
        self.log_path = log_path
        self.port_file = data_dir / "serve.port"
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def start(self, timeout: float = 20.0) -> int:
        self.port_file.unlink(missing_ok=True)
        env = dict(os.environ, CREDFED_LOG_LEVEL="debug")
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "credfed.cli",
                    "serve",
                    "--data-dir",
                    str(self.data_dir),
                    "--listen",
                    self.listen,
                    "--port-file",
                    str(self.port_file),
                ],
                stdout=log,
                stderr=log,
                env=env,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.port_file.exists():
                self.port = int(self.port_file.read_text())
                return self.port
            if self.proc.poll() is not None:
                raise RuntimeError(f"node exited: {self.log_path.read_text()[-2000:]}")
            time.sleep(0.02)
        raise RuntimeError("node did not start")

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
