"""What the benchmark ran on: the machine, the versions of redrelay and of the peers."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any


def machine(args: argparse.Namespace, redis_version: str) -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from importlib.metadata import version

    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(
            os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1
        ),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "redis_server": redis_version,
        "redis_py": version("redis"),
        "hiredis": version("hiredis"),
        "redrelay": version("redrelay"),
    }
    info["peers"] = _peer_versions(args)
    return info


def _peer_versions(args: argparse.Namespace) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json, sys; out = {}\n"
        "for d in sys.argv[1:]:\n"
        "    try: out[d] = m.version(d)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(out))"
    )
    versions: dict[str, str] = {}
    for python, dists in (
        (
            args.peers_python,
            [
                "celery",
                "kombu",
                "rq",
                "dramatiq",
                "huey",
                "faststream",
                "taskiq",
                "taskiq-redis",
                "saq",
                "redis",
            ],
        ),
        (args.arq_python, ["arq", "redis"]),
    ):
        if not Path(python).exists():
            continue
        try:
            text = subprocess.run(
                [python, "-c", code, *dists], capture_output=True, text=True, timeout=60
            ).stdout
            got = json.loads(text or "{}")
        except (subprocess.SubprocessError, ValueError):
            continue
        if "arq" in got:
            got["redis (arq)"] = got.pop("redis", "?")
        versions.update(got)
    return versions
