"""Run a real Studio server in a subprocess for tests: start, stop (SIGTERM), kill, restart."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from .timing import UNIT

_LISTEN = re.compile(r"listening on http://([^\s]+):(\d+)")


class StudioProcess:
    """A `aster-studio serve` subprocess on a free port (the same port across restarts)."""

    def __init__(
        self,
        db_path: Path | str,
        *,
        port: int = 0,
        env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
    ) -> None:
        self.db_path = db_path
        self.port = port
        self.env = env or {}
        self.args = args
        self.proc: subprocess.Popen[str] | None = None
        self.output: list[str] = []
        self._reader: threading.Thread | None = None

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def agent_url(self) -> str:
        return f"{self.url}/v1/remote-agents/connect"

    def start(self, timeout: float = 20 * UNIT) -> StudioProcess:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "aster_studio",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--db",
                str(self.db_path),
                "--log-level",
                "warning",
                *self.args,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        found = threading.Event()
        listening = False

        def read(proc: subprocess.Popen[str]) -> None:
            nonlocal listening
            assert proc.stdout is not None
            for line in proc.stdout:
                self.output.append(line)
                match = _LISTEN.search(line)
                if match:
                    self.port = int(match.group(2))
                    listening = True
                    found.set()
            found.set()  # the output ended: a server that exited is not waited for

        self._reader = threading.Thread(target=read, args=(self.proc,), daemon=True)
        self._reader.start()
        if not found.wait(timeout) or not listening:
            self.kill()
            raise RuntimeError("studio did not start:\n" + "".join(self.output))
        self._wait_healthy(timeout)
        return self

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.http_url}/healthz", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            if self.proc is not None and self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError("studio never became healthy:\n" + "".join(self.output))

    def stop(self, timeout: float = 20 * UNIT) -> int:
        """SIGTERM and wait: the graceful path that flushes every received event."""
        return self._end(signal.SIGTERM, timeout)

    def kill(self) -> int:
        """SIGKILL: nothing is flushed; only what was durable survives."""
        return self._end(signal.SIGKILL, 10 * UNIT)

    def _end(self, sig: int, timeout: float) -> int:
        proc = self.proc
        if proc is None:
            return 0
        if proc.poll() is None:
            proc.send_signal(sig)
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait(5)
        if self._reader is not None:
            self._reader.join(2)
        if proc.stdout is not None:
            proc.stdout.close()
        self.proc = None
        return code

    def restart(self) -> StudioProcess:
        self.stop()
        return self.start()

    def __enter__(self) -> StudioProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run `aster-studio ARGS` to its end (bounded), whatever its status."""
    return subprocess.run(
        [sys.executable, "-m", "aster_studio", *args],
        capture_output=True,
        text=True,
        timeout=30 * UNIT,
    )
