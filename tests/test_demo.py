"""``redrelay demo`` end to end: real worker processes, a SIGKILL, and nothing lost."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest


def test_demo_loses_nothing(
    redrelay_url: str, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    command = [sys.executable, "-m", "redrelay", "demo", "--messages", "400"]
    proc = subprocess.Popen(
        [*command, "--url", redrelay_url],
        cwd=tmp_path,
        env=subprocess_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=100)
    except subprocess.TimeoutExpired:
        proc.terminate()  # the demo stops its workers on SIGTERM
        out, err = proc.communicate(timeout=30)
        raise AssertionError(
            f"the demo did not finish in 100 s:\n{out}\n{err}"
        ) from None
    assert proc.returncode == 0, out + err
    assert re.search(r"^\s+produced\s+400\b", out, re.M), out
    assert re.search(r"^\s+lost\s+0\b", out, re.M), out
    assert re.search(r"^\s+dead-lettered\s+4\s+the always-failing jobs", out, re.M), out
    assert re.search(r">> SIGKILL worker \d+: it held \d+ messages in flight", out), out
    assert re.search(r">> the killed worker's lease expired", out), out
    assert re.search(r"processed\s+\d+\s+ready", out), out  # progress, via the channel
    assert "exit status 0, 0" in out, out
    assert "Traceback" not in out + err


def test_demo_stops_its_workers_on_sigterm(
    redrelay_url: str, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "redrelay", "demo", "--url", redrelay_url],
        cwd=tmp_path,
        env=subprocess_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    pids: list[int] = []
    for line in proc.stdout:
        found = re.search(r"started worker processes (\d+), (\d+)", line)
        if found:
            pids = [int(found[1]), int(found[2])]
            break
    assert pids, "the demo did not start its workers"
    proc.terminate()
    proc.communicate(timeout=30)
    assert proc.returncode == 1  # interrupted, like Ctrl-C ("Aborted!")
    for pid in pids:  # stopped and reaped by the demo, not left running
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
