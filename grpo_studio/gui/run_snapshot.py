"""Train exactly what the window shows, saved or not (pure Python, no Qt).

The worker process needs a run file on disk. Rather than forcing a save (or writing into the
built-in demo's folder), the window writes a snapshot: the current config with local paths made
absolute and the reward editor's text beside it, in a temporary folder. The worker then freezes
that snapshot into the run folder as usual, so the run records what was really trained.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from grpo_studio.config import LoadedRun, RunConfig, save_run, with_local_paths
from grpo_studio.engine.run_home import runs_dir


def output_dir_for(config: RunConfig, run_path: Path | None) -> Path:
    """Where this run file's runs go: the same rule as the command line's (engine/run_home.py)."""
    return runs_dir(run_path, config.run.output_dir)


def write_snapshot(config: RunConfig, run_path: Path | None, reward_source: str,
                   folder: Path | None = None, saved_reward_file: Path | None = None) -> Path:
    """Write the snapshot run file (and its reward file); returns the run file's path.

    `saved_reward_file`: the reward file on disk when the editor's text equals it; the snapshot then
    points at it, so helper modules imported from beside it are found."""
    base = run_path.parent if run_path else Path.cwd()
    run = LoadedRun(config, run_path, base)
    cfg = with_local_paths(config, lambda v: str(run.resolve(v).resolve()) if run.resolve(v).exists() else None)
    folder = Path(folder) if folder else Path(tempfile.mkdtemp(prefix="grpo-studio-train-"))
    folder.mkdir(parents=True, exist_ok=True)
    if saved_reward_file is not None and saved_reward_file.is_file():
        cfg.rewards.file = str(saved_reward_file.resolve())
    else:
        reward_name = Path(cfg.rewards.file).name or "rewards.py"
        (folder / reward_name).write_text(reward_source, encoding="utf-8")
        cfg.rewards.file = reward_name
    cfg.run.output_dir = str(output_dir_for(config, run_path).resolve())
    target = folder / "run.toml"
    save_run(cfg, target)
    return target
