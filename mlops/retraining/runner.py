"""Run one retraining command in its own process group: timeout, cancel, capped log, peak memory.

:func:`run_command` starts ``command`` (a list of arguments, never a shell string) with
``start_new_session=True``, so the job and everything it forks share a process group whose
id is the job's pid. A timeout or a cancel sends ``SIGTERM`` to the whole group, waits
``grace`` seconds for every process of the group to end, then sends ``SIGKILL`` to what is
left. When the job's own process exits by itself, processes it left behind in its group are
stopped the same way, so no job leaves anything running.

- **Environment.** The child gets exactly ``env``: nothing is inherited from ``os.environ``.
  The caller decides what a job may see (``PATH``, ``HOME``, the job's ``MLOPS_*`` variables);
  an executable named without a ``/`` is looked up in ``env["PATH"]`` (``os.defpath``
  when it is absent), a relative one in ``cwd``.
- **Output.** stdin is ``/dev/null``; stdout and stderr go into one pipe that a reader thread
  drains in 64 KiB chunks into a :class:`LogBuffer`, which keeps the first quarter of
  ``log_limit`` bytes and the last three quarters, with a ``... N bytes cut ...`` line in
  between. Memory stays bounded whatever the job prints, with or without newlines.
- **Peak memory** (``peak_rss_mb``) is the larger of two measurements, both lower bounds of
  the true peak except for shared pages:

  1. every ``sample_interval`` seconds (0.2 s), the sum of the resident set sizes
     (``/proc/PID/stat`` field 24) of the live processes whose process group is the job's.
     A spike shorter than the interval can be missed; pages shared between processes (a
     fork's copy-on-write pages, shared libraries) are counted once per process, so a tree
     of forked workers is over-counted;
  2. the ``ru_maxrss`` that ``os.wait4`` reports for the job's own process when it is reaped:
     the kernel's exact high-water mark of that process, or of the largest of the
     descendants it waited for itself - a maximum, not a sum, over the tree. It counts the
     parent's pages the child held between ``fork`` and ``exec`` too, so a figure that is
     not above this process's own peak size is left out (the samples stand alone).

  Processes that leave the group (``setsid``, ``setpgid``: daemons) escape both the
  measurement and the kill; only a cgroup (a container, ``systemd-run --scope``) contains
  those. ``resource.getrusage(RUSAGE_CHILDREN)`` is deliberately not used: it mixes every
  child this process ever reaped.
- **Outcome.** Exit code 0 is ``succeeded``; a non-zero code is ``failed`` with that code, a
  signal is ``failed`` with ``exit_code = -signal``; ``timed_out`` and ``cancelled`` say why
  the runner stopped it; ``not_started`` means nothing ran (executable missing or not
  executable, ``cwd`` missing, a malformed environment), with an error naming the fix. Job
  problems never raise; only invalid arguments of the caller (a non-positive timeout...)
  raise ``ValueError``.

Linux only: it reads ``/proc`` and uses ``os.pidfd_open`` when the kernel has it (5.3+),
short waits otherwise.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import resource
import select
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

__all__ = [
    "DEFAULT_LOG_LIMIT",
    "LogBuffer",
    "RunOutcome",
    "RunResult",
    "cap_log",
    "run_command",
]

log = logging.getLogger(__name__)

#: Default cap on the captured log (bytes): 256 KiB.
DEFAULT_LOG_LIMIT = 256 * 1024

_CHUNK = 64 * 1024
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
# How long the reader keeps draining the pipe once the job's group is gone (a process that
# left the group may still hold the pipe open) and how long a SIGKILLed leader may take.
_DRAIN_SECONDS = 1.0
_REAP_SECONDS = 10.0
_STEP = 0.05


class RunOutcome(StrEnum):
    """How a run ended."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    NOT_STARTED = "not_started"


@dataclass(frozen=True)
class RunResult:
    """What :func:`run_command` observed.

    ``exit_code`` is the job's own exit status (``-N`` when signal N ended it, ``None`` when it
    never started or could not be reaped); ``wall_seconds`` runs from the start until the job's
    process group is gone (the kill sequence included); ``peak_rss_mb`` is in MiB (``None`` when nothing
    could be measured); ``log`` is the capped stdout+stderr, ``log_bytes`` the total the job
    wrote; ``error`` says why it did not succeed (empty on success).
    """

    outcome: RunOutcome
    exit_code: int | None
    wall_seconds: float
    peak_rss_mb: float | None
    log: str
    log_bytes: int
    error: str = ""

    @property
    def ok(self) -> bool:
        """True when the job exited with code 0 on its own."""
        return self.outcome is RunOutcome.SUCCEEDED


class LogBuffer:
    """A byte sink that keeps the head and the tail of what it is given, in bounded memory.

    The first ``limit // 4`` bytes are kept as they come, then the last ``limit - limit // 4``
    bytes; :meth:`text` joins them with a ``... N bytes cut ...`` line. Memory stays under
    about ``2 * limit`` bytes whatever is written. Thread-safe.
    """

    def __init__(self, limit: int = DEFAULT_LOG_LIMIT) -> None:
        if limit < 2:
            raise ValueError(f"log limit must be at least 2 bytes, got {limit}")
        self.limit = limit
        self._head_limit = limit // 4
        self._tail_limit = limit - self._head_limit
        self._head = bytearray()
        self._tail = bytearray()
        self._total = 0
        self._lock = threading.Lock()

    @property
    def total_bytes(self) -> int:
        """Every byte ever written, kept or not."""
        return self._total

    def write(self, data: bytes) -> None:
        """Append ``data``."""
        with self._lock:
            self._total += len(data)
            room = self._head_limit - len(self._head)
            if room > 0:
                self._head += data[:room]
                data = data[room:]
            if not data:
                return
            if len(data) >= self._tail_limit:
                self._tail[:] = data[-self._tail_limit:]
                return
            self._tail += data
            # trim lazily so a stream of small writes does not copy the tail every time
            if len(self._tail) > 2 * self._tail_limit:
                del self._tail[: len(self._tail) - self._tail_limit]

    def getvalue(self) -> bytes:
        """The kept bytes with the cut marker line (bytes that were cut are counted)."""
        with self._lock:
            tail = bytes(self._tail[-self._tail_limit:])
            kept = len(self._head) + len(tail)
            cut = self._total - kept
            if cut <= 0:
                return bytes(self._head) + tail
            head = bytes(self._head)
            sep = b"" if not head or head.endswith(b"\n") else b"\n"
            return head + sep + f"... {cut} bytes cut ...\n".encode() + tail

    def text(self) -> str:
        """:meth:`getvalue` decoded as UTF-8 (undecodable bytes become U+FFFD)."""
        return self.getvalue().decode("utf-8", errors="replace")


def cap_log(data: bytes | str, limit: int = DEFAULT_LOG_LIMIT) -> str:
    """``data`` cut to its head and tail the way a job's log is (see :class:`LogBuffer`)."""
    buffer = LogBuffer(limit)
    buffer.write(data.encode("utf-8", errors="replace") if isinstance(data, str) else data)
    return buffer.text()


# --- checks before starting --------------------------------------------------------------

def _preflight(command: Sequence[str], env: Mapping[str, str], cwd: Path) -> str:
    """Why ``command`` cannot start, or ``""``."""
    if isinstance(command, str | bytes):
        return ("the command must be a list of arguments, not a shell string: write "
                "['python', 'train.py'] (shlex.split turns a string into such a list)")
    if not command:
        return "the command is empty: give the executable and its arguments, e.g. ['make', 'retrain']"
    for i, arg in enumerate(command):
        if not isinstance(arg, str):
            return f"argument {i} of the command is {type(arg).__name__}, not a string: {arg!r}"
        if "\0" in arg:
            return f"argument {i} of the command contains a NUL byte: {arg!r}"
    for key, value in env.items():
        if not isinstance(key, str) or not isinstance(value, str):
            return (f"environment variable {key!r} has a {type(value).__name__} value; "
                    "every name and value must be a string")
        if not key or "=" in key or "\0" in key or "\0" in value:
            return f"environment variable {key!r} is malformed (empty name, '=' or NUL byte)"
    if not cwd.exists():
        return f"working directory not found: {cwd} (create it or set the job's cwd to an existing folder)"
    if not cwd.is_dir():
        return f"working directory is not a folder: {cwd}"
    exe = command[0]
    if "/" in exe:
        path = Path(exe) if os.path.isabs(exe) else cwd / exe
        if not path.exists():
            return (f"executable not found: {exe} (looked at {path}; give an existing path, "
                    "absolute or relative to the working directory)")
        if path.is_dir() or not os.access(path, os.X_OK):
            return (f"not executable: {exe} (chmod +x {path}, or run it through its "
                    f"interpreter: ['python', '{exe}'])")
        return ""
    search = env.get("PATH", os.defpath)
    # a relative PATH entry is relative to the child's working directory
    resolved = os.pathsep.join(d if os.path.isabs(d) else str(cwd / (d or ".")) for d in
                               search.split(os.pathsep))
    if shutil.which(exe, path=resolved) is None:
        return (f"executable not found: {exe} (looked in the job's PATH={search!r}; the job does "
                "not inherit this process's environment: put its folder in the job's PATH or "
                "give an absolute path)")
    return ""


def _start_error(command: Sequence[str], exc: Exception) -> str:
    exe = command[0]
    if not isinstance(exc, OSError):
        return f"cannot start {exe}: {exc}"
    if exc.errno == errno.ENOENT:
        return (f"executable not found: {exe} ({exc.strerror}; a script's interpreter in its "
                "#! line may be missing too)")
    if exc.errno == errno.EACCES:
        return f"not executable: {exe} (chmod +x it, or run it through its interpreter)"
    if exc.errno == errno.ENOEXEC:
        return (f"cannot execute {exe}: exec format error (add a #! line such as "
                "'#!/usr/bin/env python3', or run it through its interpreter)")
    return f"cannot start {exe}: {exc.strerror or exc}"


# --- the process group -------------------------------------------------------------------

def _group_members(pgid: int) -> list[tuple[int, int]]:
    """``(pid, resident bytes)`` of the live (not zombie) processes of group ``pgid``."""
    members: list[tuple[int, int]] = []
    try:
        entries = os.scandir("/proc")
    except OSError:
        return members
    with entries:
        for entry in entries:
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as f:
                    stat = f.read()
            except OSError:
                continue  # ended meanwhile
            fields = stat[stat.rfind(b")") + 2:].split()
            # fields[0] is field 3 of proc(5): state; [2] pgrp; [21] rss in pages
            if len(fields) < 22 or int(fields[2]) != pgid or fields[0] in (b"Z", b"X"):
                continue
            members.append((int(entry.name), int(fields[21]) * _PAGE_SIZE))
    return members


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


class _Job:
    """The started process: reaping with rusage, the group's memory, the kill sequence."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.status: int | None = None  # exit code once reaped
        self.reaped = False
        self.maxrss_bytes = 0
        self.sampled_peak = 0
        self.sampled = False
        self._pidfd: int | None = None
        with contextlib.suppress(AttributeError, OSError):
            self._pidfd = os.pidfd_open(self.pid)

    def close(self) -> None:
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None

    def _try_reap(self) -> bool:
        if self.reaped:
            return True
        try:
            pid, status, usage = os.wait4(self.pid, os.WNOHANG)
        except ChildProcessError:  # reaped by someone else (SIGCHLD ignored, os.wait())
            self.reaped = True
            return True
        if pid == 0:
            return False
        self.reaped = True
        self.status = os.waitstatus_to_exitcode(status)
        self.proc.returncode = self.status
        self.maxrss_bytes = usage.ru_maxrss * 1024  # KiB on Linux
        return True

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the job's own process to end; reap it."""
        if self._try_reap():
            return True
        if timeout > 0:
            if self._pidfd is not None:
                poller = select.poll()
                poller.register(self._pidfd, select.POLLIN)
                poller.poll(math.ceil(timeout * 1000))
            else:
                time.sleep(min(timeout, _STEP))
        return self._try_reap()

    def sample(self) -> int:
        """Record the group's resident memory now; return how many processes are live."""
        members = _group_members(self.pid)
        if members:
            self.sampled = True
            self.sampled_peak = max(self.sampled_peak, sum(rss for _, rss in members))
        return len(members)

    def group_gone(self) -> bool:
        return self.reaped and not _group_members(self.pid)

    def wait_group(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the leader to be reaped and the group to be empty."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if self.reaped:
                if not _group_members(self.pid):
                    return True
                if remaining <= 0:
                    return False
                time.sleep(min(_STEP, remaining))
            elif not self.wait(min(_STEP, max(remaining, 0.0))) and remaining <= 0:
                return False

    def stop(self, grace: float) -> bool:
        """SIGTERM the group, wait ``grace`` s, SIGKILL what is left; True if SIGKILL was sent."""
        _signal_group(self.pid, signal.SIGTERM)
        if self.wait_group(grace):
            return False
        _signal_group(self.pid, signal.SIGKILL)
        if not self.wait_group(_REAP_SECONDS):
            log.warning("process group %d still has live processes %.0f s after SIGKILL",
                        self.pid, _REAP_SECONDS)
        return True

    def peak_mb(self) -> float | None:
        # the job's high-water mark starts from this process's pages until ``exec`` (a
        # vfork shares them): a figure not above this process's own peak may be ours
        kernel = self.maxrss_bytes if self.maxrss_bytes > _own_peak() else 0
        if not self.sampled and not kernel:
            return None
        return max(self.sampled_peak, kernel) / 2**20


def _read_pipe(fd: int, buffer: LogBuffer, stop: threading.Event) -> None:
    """Drain ``fd`` into ``buffer`` until EOF, or until idle / ``_DRAIN_SECONDS`` after ``stop``."""
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP)
    give_up_at: float | None = None
    try:
        while True:
            if stop.is_set():
                now = time.monotonic()
                if give_up_at is None:
                    give_up_at = now + _DRAIN_SECONDS
                elif now >= give_up_at:
                    return
            if not poller.poll(100):
                if stop.is_set():
                    return
                continue
            chunk = os.read(fd, _CHUNK)
            if not chunk:
                return
            buffer.write(chunk)
    except OSError as exc:  # pragma: no cover - the pipe is ours; only a closed fd gets here
        log.warning("reading the job's output failed: %s", exc)


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "the job's exit status is unknown (it was reaped elsewhere or never ended)"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = (" (the kernel's out-of-memory killer or another process may have killed it)"
                if -code == signal.SIGKILL else "")
        return f"killed by {name}{hint}"
    return f"exited with code {code}"


def run_command(
    command: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    timeout: float,
    cancel: threading.Event | None = None,
    log_limit: int = DEFAULT_LOG_LIMIT,
    grace: float = 5.0,
    on_start: Callable[[int], None] | None = None,
    sample_interval: float = 0.2,
) -> RunResult:
    """Run ``command`` in ``cwd`` with exactly ``env``, for at most ``timeout`` seconds.

    ``cancel`` stops the job when set (noticed within ``sample_interval``; already set: the
    job does not start and the run is ``cancelled``); ``on_start(pid)``
    is called once it runs (the pid is also its process group id). If ``on_start`` raises,
    the job is stopped and the run is ``failed``. Never raises for a job problem; see the
    module docstring for the kill sequence and what the memory figure means.
    """
    if not (timeout > 0 and math.isfinite(timeout)):
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout}")
    if not (grace >= 0 and math.isfinite(grace)):
        raise ValueError(f"grace must be zero or more seconds, got {grace}")
    if sample_interval <= 0:
        raise ValueError(f"sample_interval must be positive, got {sample_interval}")
    buffer = LogBuffer(log_limit)
    started = time.monotonic()
    cwd = Path(cwd)

    def not_started(error: str) -> RunResult:
        return RunResult(RunOutcome.NOT_STARTED, None, time.monotonic() - started, None,
                         "", 0, error)

    problem = _preflight(command, env, cwd)
    if problem:
        return not_started(problem)
    if cancel is not None and cancel.is_set():
        return RunResult(RunOutcome.CANCELLED, None, 0.0, None, "", 0,
                         "cancelled before it started")
    try:
        proc = subprocess.Popen(
            list(command), cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
            close_fds=True,
        )
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        return not_started(_start_error(command, exc))
    assert proc.stdout is not None
    job = _Job(proc)
    stop_reading = threading.Event()
    reader = threading.Thread(target=_read_pipe, args=(proc.stdout.fileno(), buffer, stop_reading),
                              name=f"job-{proc.pid}-log", daemon=True)
    reader.start()
    outcome: RunOutcome | None = None
    error = ""
    try:
        if on_start is not None:
            try:
                on_start(proc.pid)
            except Exception as exc:
                log.exception("on_start failed for job pid %d; stopping it", proc.pid)
                outcome, error = RunOutcome.FAILED, f"on_start failed ({exc!r}); the job was stopped"
        deadline = started + timeout
        while outcome is None:
            job.sample()
            step = min(sample_interval, deadline - time.monotonic())
            if job.wait(step):
                break
            if cancel is not None and cancel.is_set():
                outcome, error = RunOutcome.CANCELLED, "cancelled"
            elif time.monotonic() >= deadline:
                outcome, error = RunOutcome.TIMED_OUT, f"timed out after {timeout:g} s"
        if outcome is not None:
            killed = job.stop(grace)
            error += (f"; the process group got SIGTERM, then SIGKILL after {grace:g} s"
                      if killed else "; the process group got SIGTERM")
        elif not job.group_gone():
            # the job ended but left processes in its group: they do not outlive the job
            log.info("job pid %d left processes in its group; stopping them", proc.pid)
            job.stop(grace)
        wall = time.monotonic() - started
    except BaseException:
        _signal_group(proc.pid, signal.SIGKILL)
        job.wait_group(_REAP_SECONDS)
        raise
    finally:
        stop_reading.set()
        reader.join(_DRAIN_SECONDS + 1.0)
        job.close()
        with contextlib.suppress(OSError):
            proc.stdout.close()
    if outcome is None:
        if job.status == 0:
            outcome = RunOutcome.SUCCEEDED
        else:
            outcome, error = RunOutcome.FAILED, _describe_exit(job.status)
    return RunResult(outcome, job.status, wall, job.peak_mb(), buffer.text(),
                     buffer.total_bytes, error)


def _own_peak() -> int:
    """This process's peak resident set size in bytes, which bounds what a job's
    ``ru_maxrss`` inherits from it between ``fork`` and ``exec``."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
