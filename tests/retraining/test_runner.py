"""The retraining job runner: real subprocesses, process groups, timeouts, logs and memory."""

from __future__ import annotations

import os
import random
import shutil
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from mlops.retraining import LogBuffer, RunOutcome, cap_log, run_command

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the runner is Linux-only")

ENV = {"PATH": os.environ.get("PATH", os.defpath)}


def script(tmp_path: Path, body: str, name: str = "job.py") -> list[str]:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return [sys.executable, str(path)]


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie nobody reaps counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except FileNotFoundError:
        return False
    return stat[stat.rfind(b")") + 2:][:1] not in (b"Z", b"X")


def pids(path: Path) -> list[int]:
    return [int(p) for p in path.read_text().split()]


# --- outcomes ----------------------------------------------------------------------------

def test_success_captures_stdout_and_stderr_and_reports_the_pid(tmp_path: Path) -> None:
    started: list[int] = []
    # the job outlives one sample interval: a job that ends before its second sample is
    # measured only at its start (the kernel's figure after a fork counts the parent too)
    cmd = script(tmp_path, """
        import os, sys, time
        print("hello from", os.getcwd())
        print("to stderr", file=sys.stderr)
        time.sleep(0.5)
    """)
    result = run_command(cmd, env=ENV, cwd=tmp_path, timeout=10, on_start=started.append,
                         sample_interval=0.1)
    assert result.outcome is RunOutcome.SUCCEEDED and result.ok
    assert result.exit_code == 0 and result.error == ""
    assert f"hello from {tmp_path}" in result.log and "to stderr" in result.log
    assert result.log_bytes == len(result.log.encode())
    assert len(started) == 1 and started[0] > 0
    assert 0 < result.wall_seconds < 10
    assert result.peak_rss_mb is not None and result.peak_rss_mb > 1


def test_a_non_zero_exit_fails_with_its_code(tmp_path: Path) -> None:
    cmd = script(tmp_path, "import sys; print('bad data'); sys.exit(3)")
    result = run_command(cmd, env=ENV, cwd=tmp_path, timeout=10)
    assert result.outcome is RunOutcome.FAILED
    assert result.exit_code == 3
    assert result.error == "exited with code 3"
    assert "bad data" in result.log


def test_death_by_a_signal_fails_with_minus_the_signal(tmp_path: Path) -> None:
    cmd = script(tmp_path, "import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
    result = run_command(cmd, env=ENV, cwd=tmp_path, timeout=10)
    assert result.outcome is RunOutcome.FAILED
    assert result.exit_code == -9
    assert "SIGKILL" in result.error and "out-of-memory" in result.error


def test_a_hang_times_out_and_the_whole_tree_is_gone(tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    cmd = script(tmp_path, f"""
        import os, subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1000)"])
        # a double fork: the grandchild's parent exits, it stays in the process group
        r, w = os.pipe()
        if os.fork() == 0:
            if os.fork() == 0:
                os.write(w, str(os.getpid()).encode())
                time.sleep(1000)
            os._exit(0)
        orphan = os.read(r, 32).decode()
        with open({str(pid_file)!r}, "w") as f:
            f.write(f"{{child.pid}} {{orphan}}")
        print("waiting forever", flush=True)
        time.sleep(1000)
    """)
    started = time.monotonic()
    result = run_command(cmd, env=ENV, cwd=tmp_path, timeout=1.5, grace=1.0)
    assert time.monotonic() - started < 1.5 + 1.0 + 1.5
    assert result.outcome is RunOutcome.TIMED_OUT
    assert result.error.startswith("timed out after 1.5 s")
    assert result.exit_code == -15
    assert "waiting forever" in result.log
    descendants = pids(pid_file)
    assert len(descendants) == 2
    assert not any(alive(p) for p in descendants)


def test_a_job_that_ignores_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    cmd = script(tmp_path, f"""
        import signal, subprocess, sys, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)   # inherited by the child below
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1000)"])
        open({str(pid_file)!r}, "w").write(str(child.pid))
        time.sleep(1000)
    """)
    started = time.monotonic()
    result = run_command(cmd, env=ENV, cwd=tmp_path, timeout=1.0, grace=0.5)
    took = time.monotonic() - started
    assert result.outcome is RunOutcome.TIMED_OUT
    assert result.exit_code == -9
    assert "SIGKILL after 0.5 s" in result.error
    assert 1.0 + 0.5 <= took < 1.0 + 0.5 + 1.5
    assert not alive(pids(pid_file)[0])


def test_cancel_from_another_thread_stops_the_job(tmp_path: Path) -> None:
    cancel = threading.Event()
    cmd = script(tmp_path, "import time; print('training', flush=True); time.sleep(1000)")
    timer = threading.Timer(0.5, cancel.set)
    timer.start()
    started = time.monotonic()
    try:
        result = run_command(cmd, env=ENV, cwd=tmp_path, timeout=30, cancel=cancel, grace=1)
    finally:
        timer.cancel()
    assert time.monotonic() - started < 2.5
    assert result.outcome is RunOutcome.CANCELLED
    assert result.error.startswith("cancelled")
    assert result.exit_code == -15
    assert "training" in result.log


def test_a_job_cancelled_before_it_starts_never_runs(tmp_path: Path) -> None:
    cancel = threading.Event()
    cancel.set()
    marker = tmp_path / "ran"
    cmd = script(tmp_path, f"open({str(marker)!r}, 'w').write('yes')")
    result = run_command(cmd, env=ENV, cwd=tmp_path, timeout=10, cancel=cancel)
    assert result.outcome is RunOutcome.CANCELLED and result.exit_code is None
    assert not marker.exists()


def test_processes_left_behind_by_a_finished_job_are_stopped(tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    cmd = script(tmp_path, f"""
        import subprocess, sys
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1000)"])
        open({str(pid_file)!r}, "w").write(str(child.pid))
        print("done")
    """)
    started = time.monotonic()
    result = run_command(cmd, env=ENV, cwd=tmp_path, timeout=10, grace=2)
    assert time.monotonic() - started < 4
    assert result.outcome is RunOutcome.SUCCEEDED
    assert "done" in result.log
    assert not alive(pids(pid_file)[0])


def test_a_failing_on_start_stops_the_job(tmp_path: Path) -> None:
    def boom(pid: int) -> None:
        raise RuntimeError("store is down")

    cmd = script(tmp_path, "import time; time.sleep(1000)")
    result = run_command(cmd, env=ENV, cwd=tmp_path, timeout=10, grace=1, on_start=boom)
    assert result.outcome is RunOutcome.FAILED
    assert "on_start failed" in result.error and "store is down" in result.error
    assert result.wall_seconds < 3


# --- environment -------------------------------------------------------------------------

def test_the_environment_is_exactly_the_one_given(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    env_exe = shutil.which("env")
    assert env_exe is not None
    monkeypatch.setenv("MLOPS_RUNNER_PARENT_ONLY", "secret")
    result = run_command([env_exe], env={"MLOPS_MODEL": "churn", "A": "1 2"}, cwd=tmp_path,
                         timeout=10)
    assert result.outcome is RunOutcome.SUCCEEDED
    assert sorted(result.log.splitlines()) == ["A=1 2", "MLOPS_MODEL=churn"]


def test_a_bare_executable_is_found_in_the_jobs_path(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "train-tool"
    tool.write_text(f"#!{sys.executable}\nprint('trained')\n")
    tool.chmod(0o755)
    result = run_command(["train-tool"], env={"PATH": str(bin_dir)}, cwd=tmp_path, timeout=10)
    assert result.outcome is RunOutcome.SUCCEEDED, result.error
    assert result.log == "trained\n"
    missing = run_command(["train-tool"], env={}, cwd=tmp_path, timeout=10)
    assert missing.outcome is RunOutcome.NOT_STARTED
    assert "executable not found: train-tool" in missing.error and "PATH" in missing.error


# --- not started -------------------------------------------------------------------------

def test_problems_before_the_start_are_not_started_with_the_fix(tmp_path: Path) -> None:
    not_exec = tmp_path / "train.sh"
    not_exec.write_text("#!/bin/sh\necho hi\n")
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"\x00\x01\x02 not a program")
    garbage.chmod(0o755)
    cases = {
        "executable not found: no-such-trainer-xyz": (["no-such-trainer-xyz"], tmp_path),
        "executable not found: ./missing.py": (["./missing.py"], tmp_path),
        "not executable: ./train.sh": (["./train.sh"], tmp_path),
        "working directory not found": ([sys.executable, "-V"], tmp_path / "nope"),
        "cannot execute ./garbage: exec format error": (["./garbage"], tmp_path),
        "the command is empty": ([], tmp_path),
    }
    for expected, (cmd, cwd) in cases.items():
        result = run_command(cmd, env=ENV, cwd=cwd, timeout=5)
        assert result.outcome is RunOutcome.NOT_STARTED, expected
        assert expected in result.error, (expected, result.error)
        assert result.exit_code is None and result.log == "" and result.peak_rss_mb is None


def test_a_shell_string_and_a_bad_environment_are_refused(tmp_path: Path) -> None:
    shell = run_command("python train.py", env=ENV, cwd=tmp_path, timeout=5)
    assert shell.outcome is RunOutcome.NOT_STARTED and "not a shell string" in shell.error
    bad_env = run_command([sys.executable, "-V"], env={"N": 3}, cwd=tmp_path,  # type: ignore[dict-item]
                          timeout=5)
    assert bad_env.outcome is RunOutcome.NOT_STARTED and "'N'" in bad_env.error


def test_invalid_arguments_raise(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="timeout"):
        run_command([sys.executable, "-V"], env=ENV, cwd=tmp_path, timeout=0)
    with pytest.raises(ValueError, match="grace"):
        run_command([sys.executable, "-V"], env=ENV, cwd=tmp_path, timeout=1, grace=-1)


# --- the log -----------------------------------------------------------------------------

def test_five_megabytes_of_output_keep_head_and_tail_within_the_cap(tmp_path: Path) -> None:
    cmd = script(tmp_path, """
        import sys
        out = sys.stdout
        out.write("FIRST LINE\\n")
        line = "x" * 1023 + "\\n"
        for _ in range(5 * 1024):
            out.write(line)
        out.write("LAST LINE\\n")
    """)
    limit = 64 * 1024
    result = run_command(cmd, env=ENV, cwd=tmp_path, timeout=20, log_limit=limit)
    assert result.outcome is RunOutcome.SUCCEEDED
    total = len("FIRST LINE\n") + 5 * 1024 * 1024 + len("LAST LINE\n")
    assert result.log_bytes == total
    assert result.log.startswith("FIRST LINE\n")
    assert result.log.endswith("LAST LINE\n")
    assert f"\n... {total - limit} bytes cut ...\n" in result.log
    assert len(result.log.encode()) <= limit + 64


def test_one_huge_line_without_newlines_is_capped_too(tmp_path: Path) -> None:
    cmd = script(tmp_path, "import sys; sys.stdout.write('y' * (3 * 2**20) + 'END')")
    result = run_command(cmd, env=ENV, cwd=tmp_path, timeout=20, log_limit=4096)
    assert result.log_bytes == 3 * 2**20 + 3
    assert result.log.endswith("yEND")
    assert len(result.log) <= 4096 + 64


def test_log_buffer_keeps_exactly_the_head_and_the_tail() -> None:
    rng = random.Random(7)
    data = bytes(rng.randrange(256) for _ in range(50_000))
    for limit in (2, 10, 1000, 4096, 60_000):
        buffer = LogBuffer(limit)
        i = 0
        while i < len(data):
            n = rng.choice((1, 7, 100, 3000, 9000))
            buffer.write(data[i:i + n])
            i += n
        value = buffer.getvalue()
        head, tail = limit // 4, limit - limit // 4
        assert buffer.total_bytes == len(data)
        if limit >= len(data):
            assert value == data
        else:
            assert value.startswith(data[:head])
            assert value.endswith(data[-tail:])
            assert f"... {len(data) - limit} bytes cut ...\n".encode() in value


def test_cap_log_of_short_and_long_text() -> None:
    assert cap_log("short\n", 100) == "short\n"
    capped = cap_log("a" * 50 + "b" * 50, 20)
    assert capped == "a" * 5 + "\n... 80 bytes cut ...\n" + "b" * 15
    with pytest.raises(ValueError):
        LogBuffer(1)


# --- peak memory -------------------------------------------------------------------------

ALLOCATE = """
    import time
    block = bytearray(200 * 2**20)
    block[::4096] = b"\\x01" * len(range(0, len(block), 4096))   # touch every page
    time.sleep(0.5)
"""


def test_peak_memory_of_a_job_that_allocates_200_mb(tmp_path: Path) -> None:
    result = run_command(script(tmp_path, ALLOCATE), env=ENV, cwd=tmp_path, timeout=20)
    assert result.outcome is RunOutcome.SUCCEEDED, result.log
    assert result.peak_rss_mb is not None
    assert 150 <= result.peak_rss_mb < 1000


def test_peak_memory_is_the_jobs_even_under_a_large_server(tmp_path: Path) -> None:
    """The kernel's figure for the job starts from the launching process's pages (a vfork
    shares them until exec): under a pytest worker that had reached 1 GB, a 200 MB job
    was reported at 1,062 MB. A figure not above the launcher's own peak is left out."""
    ballast = bytearray(600 * 2**20)
    ballast[::4096] = b"\x01" * len(range(0, len(ballast), 4096))
    result = run_command(script(tmp_path, ALLOCATE), env=ENV, cwd=tmp_path, timeout=20)
    del ballast
    assert result.outcome is RunOutcome.SUCCEEDED, result.log
    assert result.peak_rss_mb is not None and 150 <= result.peak_rss_mb < 500


def test_peak_memory_counts_a_child_the_job_never_waits_for(tmp_path: Path) -> None:
    """Only the /proc sampling of the group can see it: the job's ru_maxrss is its own."""
    (tmp_path / "alloc.py").write_text(textwrap.dedent(ALLOCATE) + "time.sleep(1000)\n")
    cmd = script(tmp_path, f"""
        import subprocess, sys, time
        subprocess.Popen([sys.executable, {str(tmp_path / "alloc.py")!r}])
        time.sleep(1000)
    """)
    result = run_command(cmd, env=ENV, cwd=tmp_path, timeout=2.0, grace=0.5)
    assert result.outcome is RunOutcome.TIMED_OUT
    assert result.peak_rss_mb is not None and result.peak_rss_mb >= 150
