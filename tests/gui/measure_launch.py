"""How long `grpo-studio` takes from launch to the first painted window (not a test: a benchmark).

    python tests/gui/measure_launch.py [-n 7] [RUN.toml] [--platform offscreen|xcb]

Starts the window N times in fresh processes, each with `GRPO_STUDIO_LAUNCH_T0` set to the moment
just before the process is created (so interpreter start-up and every import count) and
`GRPO_STUDIO_REPORT_FIRST_PAINT=1` (the window prints `first paint X.XX s after launch` on stderr
when its first paint event arrives), ends each process once it has painted, and prints every time,
the median and the machine's load average (other processes on a small machine move the figure).
Each launch gets its own empty settings file, so a remembered window state or page cannot change
what is built.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAINTED = re.compile(r"first paint (\d+\.\d+) s after launch")


def launch_once(run: str | None, platform: str, timeout: float = 60) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "GRPO_STUDIO_REPORT_FIRST_PAINT": "1", "QT_QPA_PLATFORM": platform,
               "GRPO_STUDIO_SETTINGS": str(Path(tmp) / "settings.ini"),
               "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        command = [sys.executable, "-m", "grpo_studio.cli", "gui", *([run] if run else [])]
        env["GRPO_STUDIO_LAUNCH_T0"] = repr(time.time())
        proc = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, cwd=tmp)
        try:
            deadline = time.time() + timeout
            assert proc.stderr is not None
            for line in proc.stderr:
                found = PAINTED.search(line)
                if found:
                    return float(found.group(1))
                if time.time() > deadline:
                    break
            raise RuntimeError(f"no first paint reported (exit code {proc.poll()})")
        finally:
            proc.terminate()  # the window has painted: nothing more to measure
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", nargs="?", help="run file to open (default: the built-in demo)")
    parser.add_argument("-n", type=int, default=7, help="launches (default 7); the first also warms the disk cache")
    parser.add_argument("--platform", default="offscreen", help="QT_QPA_PLATFORM (default offscreen)")
    args = parser.parse_args()
    load_before = os.getloadavg()
    launch_once(args.run, args.platform)  # warm-up: files into the page cache, .pyc written
    times = [launch_once(args.run, args.platform) for _ in range(args.n)]
    load_after = os.getloadavg()
    print("first paint (s): " + " ".join(f"{t:.2f}" for t in times))
    print(f"median {statistics.median(times):.2f} s, min {min(times):.2f} s, max {max(times):.2f} s "
          f"over {args.n} launches (after one warm-up), QT_QPA_PLATFORM={args.platform}")
    print(f"load average (1/5/15 min) before {load_before[0]:.2f}/{load_before[1]:.2f}/{load_before[2]:.2f}, "
          f"after {load_after[0]:.2f}/{load_after[1]:.2f}/{load_after[2]:.2f} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
