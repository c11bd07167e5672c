"""Measure what the tasks add to flyctl's own time, and how fast they notice.

Runs against the flyctl test double and a local health server, so it needs
no Fly.io account:

    python -m uv run python scripts/bench.py [--runs 5]

It prints, per measurement, the median over the runs:
- startup: `inv --list` against a bare Python start;
- overhead: a read-only task against the flyctl calls it makes, run alone;
- detection: how long after the evidence appears verify.api and
  verify.worker return;
- memory: the peak resident size of the `inv` process.
Timings are never asserted in tests; this script is where they are read.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from conftest import (  # noqa: E402
    API,
    PROJECT_FILES,
    WORKER,
    FlyDouble,
    HealthServer,
)


def timed(argv: list[str], env: dict, cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(argv, env=env, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - started


def median(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1000:7.0f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="Runs per measurement")
    runs = parser.parse_args().runs

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        project = root / "My Projects" / "OCTO"
        project.mkdir(parents=True)
        for name in PROJECT_FILES:
            (project / name).write_bytes((REPO / name).read_bytes())
        import shutil

        shutil.copytree(REPO / "tasks", project / "tasks")
        fly = FlyDouble(root / "double")
        health = HealthServer()
        threading.Thread(target=health.serve_forever, daemon=True).start()
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("FLY_", "INVOKE_"))
        }
        env.update(
            PATH=str(fly.bin) + os.pathsep + env.get("PATH", ""),
            FLYCTL_DOUBLE_STATE=str(fly.dir),
            NO_COLOR="1",
            INVOKE_OCTO_APPS_API_HEALTH_URL=health.url,
        )
        inv = [sys.executable, "-m", "invoke"]
        flyctl = [str(fly.bin / "flyctl")]

        bare = [
            timed([sys.executable, "-c", "pass"], env, project) for _ in range(runs)
        ]
        listing = [timed([*inv, "--list"], env, project) for _ in range(runs)]
        print(f"startup   python -c pass          {median(bare)}")
        print(f"startup   inv --list              {median(listing)}")

        reads = [
            ["status", "--app", API, "--json"],
            ["status", "--app", WORKER, "--json"],
            ["auth", "whoami", "--json"],
        ]
        task = [timed([*inv, "auth.check"], env, project) for _ in range(runs)]
        direct = [
            sum(timed([*flyctl, *args], env, project) for args in reads)
            for _ in range(runs)
        ]
        print(f"overhead  inv auth.check          {median(task)}")
        print(f"overhead  its 3 flyctl calls      {median(direct)}")

        health.mode, health.good_after = "after", 2.0
        latency = []
        for _ in range(runs):
            health.first_hit = None
            started = time.perf_counter()
            subprocess.run(
                [*inv, "verify.api"], env=env, cwd=project, capture_output=True
            )
            good_at = (health.first_hit or 0) + health.good_after
            latency.append(time.perf_counter() - started - (good_at - health.first_hit))
        print(f"detection verify.api after healthy  {median(latency)} (incl. checks)")

        worker = [timed([*inv, "verify.worker"], env, project) for _ in range(runs)]
        print(f"detection verify.worker (polls 0.3 s) {median(worker)}")

        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        subprocess.run([*inv, "auth.check"], env=env, cwd=project, capture_output=True)
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        print(f"memory    peak RSS of a task      {max(peak, before) / 1024:7.0f} MiB")
        health.shutdown()


if __name__ == "__main__":
    main()
