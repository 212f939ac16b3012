"""Where run folders go: one rule, the same for the command line and the window.

- A run file of your own keeps its runs beside it: `run.output_dir` (default `runs`), relative to
  the run file, so a project folder holds its run files and their runs together.
- A run file that ships with GRPO Studio (under resources/: the demo, the examples) is not yours to
  fill, and an installed copy may be read-only: its runs go to the user data folder, `DATA/runs`
  (`~/.local/share/grpo-studio/runs` on Linux; `GRPO_STUDIO_DATA_DIR` moves DATA).
- A run file not saved yet (the window's New) has no folder of its own: `DATA/runs` as well.

Every run folder made is also noted in `DATA/runs.txt`, so the window's Runs page lists every run
you started, from the window or the command line, wherever its run file lies.
"""

from __future__ import annotations

import os
from pathlib import Path

MAX_RECORDED = 1000  # lines kept in runs.txt; older runs are still on disk, only no longer listed


def user_data_dir() -> Path:
    override = os.environ.get("GRPO_STUDIO_DATA_DIR")
    if override:
        return Path(override).expanduser()
    import platformdirs

    return platformdirs.user_data_path("grpo-studio", appauthor=False)


def user_runs_dir() -> Path:
    return user_data_dir() / "runs"


def is_builtin(path: str | Path | None) -> bool:
    """The run file ships with the app (under resources/): its folder may be read-only, and is not the user's."""
    if path is None:
        return False
    from grpo_studio.cli import resources_dir

    try:
        Path(path).resolve().relative_to(resources_dir().resolve())
        return True
    except ValueError:
        return False


def runs_dir(run_path: str | Path | None, output_dir: str, base_dir: str | Path | None = None) -> Path:
    """The folder that receives the run folders of the run file at `run_path`. A run file read from
    text (no path) resolves `output_dir` against `base_dir`; with neither (not saved yet), DATA/runs."""
    if is_builtin(run_path):
        return user_runs_dir()
    folder = Path(run_path).parent if run_path is not None else base_dir
    if folder is None:
        return user_runs_dir()
    out = Path(output_dir).expanduser()
    return out if out.is_absolute() else Path(folder) / out


def record_run(folder: str | Path) -> None:
    """Note a new run folder for the Runs page. Best effort: a run never fails for its listing."""
    try:
        index = user_data_dir() / "runs.txt"
        index.parent.mkdir(parents=True, exist_ok=True)
        with index.open("a", encoding="utf-8") as f:  # one short append: safe beside other writers
            f.write(str(Path(folder).resolve()) + "\n")
    except OSError:
        pass


def recorded_runs() -> list[Path]:
    """Run folders noted by record_run that still exist, newest note first, each once."""
    index = user_data_dir() / "runs.txt"
    try:
        lines = index.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    seen: dict[str, None] = {}
    for line in reversed(lines):
        if line.strip():
            seen.setdefault(line.strip(), None)
    paths = [Path(p) for p in seen]
    existing = [p for p in paths if (p / "config.toml").is_file()]
    if len(lines) > MAX_RECORDED or len(existing) < len(paths) // 2:
        _rewrite(index, existing[:MAX_RECORDED])  # forget deleted runs once they are many
    return existing[:MAX_RECORDED]


def _rewrite(index: Path, paths: list[Path]) -> None:
    try:
        tmp = index.with_suffix(".tmp")
        tmp.write_text("".join(f"{p}\n" for p in reversed(paths)), encoding="utf-8")
        tmp.replace(index)
    except OSError:
        pass
