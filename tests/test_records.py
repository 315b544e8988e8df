"""Worker tokens: a process is alive while it runs, not once it has exited (even unreaped)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from trainyard.records import process_token, token_alive, worker_token


def test_a_token_is_alive_while_its_process_runs_and_dead_once_it_exited_even_unreaped() -> None:
    assert token_alive(worker_token())
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    token = process_token(child.pid)
    deadline = time.monotonic() + 30
    while os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:  # a zombie now
        assert time.monotonic() < deadline
        time.sleep(0.01)
    try:
        assert not token_alive(token)  # exited: its pid still answers, its state is Z
    finally:
        child.wait()
    assert not token_alive(token)
