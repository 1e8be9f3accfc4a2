"""bench/cluster.py runs end to end at a tiny size (its own 3-node cluster)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(180)
def test_the_cluster_benchmark_runs_with_a_tiny_n() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "cluster.py")]
        + ["--n", "400", "--processes", "1", "--shards", "1,4"],
        capture_output=True,
        timeout=170,
        check=False,
    )
    out = done.stdout.decode()
    assert done.returncode == 0, out + done.stderr.decode()
    rows = [line.split() for line in out.splitlines()[2:]]
    assert [(r[0], len(r)) for r in rows] == [("1", 5), ("4", 5)]
    assert int(rows[1][1]) >= 2  # four shards land on at least two nodes
