"""`EmulatorProcess`: the emulator in a child process (benchmarks, command-line tests).

```python
with EmulatorProcess("--rate", "50", cpu=0) as proc:
    proc.base_url    # read from the child's first line of stdout
with EmulatorProcess(tls=True) as proc:
    proc.base_url, proc.ca_file    # https://...; the CA to trust (verify=proc.ca_file)
```
Leaving the block sends SIGINT and waits for a clean exit.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
from types import TracebackType
from typing import IO


class EmulatorProcess:
    """`python -m tiktok_async.emulator --port 0 ARGS...` as a child process."""

    def __init__(self, *args: str, cpu: int | None = None, start_timeout: float = 20.0,
                 tls: bool = False) -> None:
        self.args = list(args)
        if cpu is not None:
            self.args += ["--cpu", str(cpu)]
        self.tls = tls
        #: With `tls=True`, once started: the CA certificate to trust (PEM).
        self.ca_file: str | None = None
        self._folder: tempfile.TemporaryDirectory[str] | None = None
        self.start_timeout = start_timeout
        self.base_url = ""
        self._proc: subprocess.Popen[str] | None = None
        self._stderr: IO[str] | None = None

    @property
    def command(self) -> list[str]:
        """The child's command line."""
        tls = ["--tls", "--ca-out", self.ca_file] if self.ca_file is not None else []
        return [sys.executable, "-m", "tiktok_async.emulator", "--port", "0", *self.args, *tls]

    def start(self) -> str:
        """Start the child and return its base URL once it listens."""
        if self.tls:
            self._folder = tempfile.TemporaryDirectory(prefix="tiktok-emulator-")
            self.ca_file = os.path.join(self._folder.name, "ca.pem")
        self._stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed by close()
        self._proc = subprocess.Popen(
            self.command, stdout=subprocess.PIPE, stderr=self._stderr, text=True
        )
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self._readline()), daemon=True)
        reader.start()
        reader.join(self.start_timeout)
        if not line or not line[0].startswith("http"):
            self.stop()
            reason = self.stderr.strip() or "timeout"
            self.close()
            raise RuntimeError(f"emulator did not start: {reason}")
        self.base_url = line[0].strip()
        return self.base_url

    @property
    def stderr(self) -> str:
        """What the child wrote on stderr so far."""
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read()

    def _readline(self) -> str:
        stdout = self._proc.stdout if self._proc is not None else None
        return stdout.readline() if stdout is not None else ""

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs."""
        return self._proc.pid if self._proc is not None else None

    @property
    def url(self) -> str:
        """The child's root URL (without the prefix)."""
        scheme, _, rest = self.base_url.partition("://")
        return f"{scheme}://{rest.partition('/')[0]}"

    def stop(self, timeout: float = 10.0) -> int:
        """SIGINT, wait (kill after `timeout`); return the exit code."""
        proc, self._proc = self._proc, None
        if proc is None:
            return 0
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
        return proc.returncode

    def close(self) -> None:
        """Stop the child and drop its stderr file."""
        self.stop()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        if self._folder is not None:
            self._folder.cleanup()
            self._folder = self.ca_file = None

    def __enter__(self) -> EmulatorProcess:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
