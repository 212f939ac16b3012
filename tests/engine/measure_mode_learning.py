"""Does each generation mode learn as well as TRL's generate? The built-in demo, on a GPU.

The demo (resources/demo/run.toml: teach a 1M-parameter model to carry, 40 GRPO steps) is trained
with each generation mode and several seeds, each run in its own process (several at a time on one
GPU: the model is tiny), then its adapter is evaluated greedily on the held-out split. A mode passes
when its mean held-out accuracy is within 2 points of TRL's generate on the same base precision:

    merged          vs trl        (16-bit base, the demo as it is)
    merged-4bit     vs trl-4bit   (the same model loaded in 4-bit NF4)
    quantized-4bit  vs trl-4bit
    mixed-4bit      vs trl-4bit   (the demo's 4 layers: as many merged as fit, at most 3)

Run from the repository root (about 1 minute a run on an H200, `--parallel` runs at a time):

    python tests/engine/measure_mode_learning.py                       # all arms, seeds 0 1 2
    python tests/engine/measure_mode_learning.py --arms trl-4bit,quantized-4bit --seeds 0,1,2

Each run's log line "generation: MODE (...)" is checked, so an arm that silently fell back to
another mode is reported as such instead of counted. The table is printed last.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from grpo_studio.engine.generation_mode import MODES

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "resources" / "demo" / "run.toml"
FOUR_BIT = ["quantization.load_in=4bit", "quantization.quant_type=nf4", "quantization.double_quant=true"]
ARMS = {  # arm -> (settings, the generation mode its log must name, the TRL arm it is compared with)
    "trl": (["grpo.fast_generation=off"], "trl", None),
    "merged": (["grpo.fast_generation=merged"], "merged", "trl"),
    "trl-4bit": (["grpo.fast_generation=off", *FOUR_BIT], "trl", None),
    "merged-4bit": (["grpo.fast_generation=merged", *FOUR_BIT], "merged", "trl-4bit"),
    "quantized-4bit": (["grpo.fast_generation=quantized", *FOUR_BIT], "quantized", "trl-4bit"),
    "mixed-4bit": (["grpo.fast_generation=mixed", *FOUR_BIT], "mixed", "trl-4bit"),
}


def child_env() -> dict[str, str]:
    """This checkout first on the path, and whatever else the path had (packages installed to a folder)."""
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": str(ROOT) + (os.pathsep + path if path else "")}


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "grpo_studio.cli", *args]


def start(arm: str, seed: int, folder: Path, extra: list[str]) -> subprocess.Popen:
    settings = [f"grpo.seed={seed}", *ARMS[arm][0], *extra]
    command = cli("train", str(DEMO), "--output", str(folder), *[a for s in settings for a in ("--set", s)])
    log = open(folder.parent / f"{folder.name}.log", "w")
    return subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            env=child_env())


def held_out_accuracy(folder: Path) -> float:
    out = subprocess.run(cli("eval", str(folder), "--json"), cwd=ROOT, capture_output=True, text=True,
                         env=child_env(), check=True).stdout
    return float(json.loads(out.strip().splitlines()[-1])["accuracy"])


def logged_mode(log: Path) -> str:
    # The mode line only: other lines start "generation: " too ("generation: fused decode kernels compiled ...").
    found = re.findall(rf"generation: ({'|'.join(MODES)})\b", log.read_text(errors="replace"))
    return found[-1] if found else "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--parallel", type=int, default=6, help="runs at a time on the GPU")
    parser.add_argument("--work", default=None, help="folder for the runs (default: a temporary one)")
    parser.add_argument("--set", dest="extra", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="a setting for every run (e.g. grpo.max_steps=2 for a smoke test)")
    args = parser.parse_args(argv)
    arms, seeds = args.arms.split(","), [int(s) for s in args.seeds.split(",")]
    work = Path(args.work or tempfile.mkdtemp(prefix="mode-learning-"))
    work.mkdir(parents=True, exist_ok=True)
    queue = [(arm, seed) for seed in seeds for arm in arms]
    running: list[tuple[str, int, Path, subprocess.Popen, float]] = []
    results: dict[tuple[str, int], tuple[float | None, str, float]] = {}
    started = time.perf_counter()
    while queue or running:
        while queue and len(running) < args.parallel:
            arm, seed = queue.pop(0)
            folder = work / f"{arm}-seed{seed}"
            running.append((arm, seed, folder, start(arm, seed, folder, args.extra), time.perf_counter()))
        time.sleep(2)
        for item in list(running):
            arm, seed, folder, proc, t0 = item
            if proc.poll() is None:
                continue
            running.remove(item)
            log = folder.parent / f"{folder.name}.log"
            accuracy = held_out_accuracy(folder) if proc.returncode == 0 else None
            results[(arm, seed)] = (accuracy, logged_mode(log), time.perf_counter() - t0)
            print(f"{arm} seed {seed}: accuracy {accuracy}, generation {results[(arm, seed)][1]}, "
                  f"{results[(arm, seed)][2]:.0f} s (log: {log})", flush=True)

    def mean(arm: str) -> float | None:
        values = [results[(arm, s)][0] for s in seeds if results.get((arm, s), (None,))[0] is not None]
        return statistics.mean(values) if len(values) == len(seeds) else None

    print(f"\nThe demo, held-out greedy accuracy after training, seeds {seeds}, "
          f"settings {args.extra or 'as the demo'} ({time.perf_counter() - started:.0f} s in all; runs in {work})")
    print("| arm | generation logged | accuracy per seed | mean | vs TRL (same base) | within 2 points |")
    print("|---|---|---|---|---|---|")
    for arm in arms:
        per_seed = [results.get((arm, s), (None, "?", 0)) for s in seeds]
        modes = {m for _, m, _ in per_seed}
        wrong_mode = modes != {ARMS[arm][1]}
        m, base = mean(arm), ARMS[arm][2]
        ref = mean(base) if base in arms else None
        delta = "" if m is None or ref is None else f"{100 * (m - ref):+.1f} points"
        verdict = "" if not delta else ("yes" if abs(m - ref) <= 0.02 and not wrong_mode else "NO")
        print(f"| {arm} | {', '.join(sorted(modes))}{' (expected ' + ARMS[arm][1] + ')' if wrong_mode else ''} | "
              + ", ".join("failed" if a is None else f"{100 * a:.1f}" for a, _, _ in per_seed)
              + f" | {'' if m is None else f'{100 * m:.1f}'} | {delta} | {verdict} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
