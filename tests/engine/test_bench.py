"""`grpo-studio bench` on the CPU with the tiny shape: both arms run, the JSON has the fixed keys."""

from __future__ import annotations

import json
import subprocess
import sys


def test_tiny_bench_runs_both_arms(tmp_path):
    out = subprocess.run([sys.executable, "-m", "grpo_studio.cli", "bench", "--arch", "tiny", "--steps", "2",
                          "--json", str(tmp_path / "bench.json"), "--work", str(tmp_path / "work")],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    results = json.loads((tmp_path / "bench.json").read_text())
    assert [r["arm"] for r in results] == ["trl", "studio"]
    for r in results:
        assert r["step_s_median"] > 0 and r["gen_tokens_per_s"] > 0
        assert r["peak_vram_gib"] is None and r["roofline_frac"] is None  # CPU: no VRAM, no roofline
        assert len(r["step_s"]) == 3  # warm-up + 2 measured
    assert "s/step" in out.stdout and "x the seconds per step of plain TRL" in out.stdout


def test_bench_rejects_unknown_arch():
    out = subprocess.run([sys.executable, "-m", "grpo_studio.cli", "bench", "--arch", "gpt5"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "--arch must be one of" in out.stderr
