"""The open run file as the window edits it: one config tree, its reward file text, and what is wrong.

Every form, the reward editor and the Train action read and write this one object. An edit goes
through `set_field`, which validates it with the config's own rules: a good value replaces the
config, a bad one is kept back and reported at its field (`problems()`), so the config is always a
valid tree and the run file on disk is only ever written from it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from grpo_studio.config import (
    ConfigError,
    LoadedRun,
    RunConfig,
    dumps_run,
    get_value,
    load_run,
    local_path_settings,
    save_run,
    set_value,
    with_local_paths,
)
from grpo_studio.gui.reward_source import defined_functions, reward_functions, syntax_problem

# Settings that hold a local path relative to the run file (when they name an existing file or
# folder); Save As rewrites them, and reward models' folders, so they still point at the same place
# from the new folder (with_local_paths).
PATH_FIELDS = tuple(local_path_settings())

STARTER_REWARDS = '''\
"""Reward functions: each scores a batch of completions, one float per completion.

TRL passes the prompts, the completions and every dataset column (e.g. `answer`) as keyword
arguments; name only the ones you use and end with **kwargs.
"""

import re


def correctness_reward(completions, answer, **kwargs):
    """1.0 when the last number in the completion equals the ground truth."""
    scores = []
    for completion, truth in zip(completions, answer):
        numbers = re.findall(r"-?\\d+(?:\\.\\d+)?", completion)
        scores.append(1.0 if numbers and numbers[-1] == str(truth).strip() else 0.0)
    return scores
'''


class RunDocument(QObject):
    changed = Signal(str)  # path of the field that changed; "" = a whole file was (re)loaded
    rewardSourceReplaced = Signal()  # the reward text was replaced from outside the editor
    modifiedChanged = Signal(bool)
    problemsChanged = Signal()
    pathChanged = Signal()

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.config = RunConfig()
        self.path: Path | None = None
        self.reward_source = STARTER_REWARDS
        self.reward_note = ""  # why the reward text is not the reward file's (it could not be read)
        self.field_errors: dict[str, str] = {}
        # Problems found by looking at files, by who found them ("dataset" preview, "check"), then field
        # path: e.g. the dataset has no such column. Edits make them stale; their finder looks again.
        self.found_problems: dict[str, dict[str, str]] = {}
        self._saved_config = dumps_run(self.config)
        self._saved_rewards: str | None = None
        self._modified = False
        self._problems: dict[str, str] = {}
        self._refresh_problems(emit=False)

    # ---- files ------------------------------------------------------------------------
    @property
    def base_dir(self) -> Path | None:
        return self.path.parent if self.path else None

    @property
    def display_name(self) -> str:
        if self.path is None:
            return "Untitled run"
        if self.path.name == "config.toml" and (self.path.parent / "run.db").exists():
            return f"{self.path.parent.name}/config.toml"  # a run folder's frozen settings
        return self.path.name

    def resolve(self, value: str) -> Path:
        p = Path(value).expanduser()
        if p.is_absolute() or self.base_dir is None:
            return p
        return self.base_dir / p

    def reward_path(self) -> Path | None:
        if self.path is None and not Path(self.config.rewards.file).is_absolute():
            return None
        return self.resolve(self.config.rewards.file)

    def loaded_run(self) -> LoadedRun:
        return LoadedRun(self.config, self.path, self.base_dir or Path.cwd())

    def new(self) -> None:
        self._replace(RunConfig(), None, STARTER_REWARDS, saved_rewards=None)
        self.reward_note = ""

    def load(self, path: str | Path) -> None:
        """Open a run file; raises ConfigError (every problem, by field) and leaves this one as it was."""
        run = load_run(path)
        reward_file = run.resolve(run.config.rewards.file)
        text: str | None = None
        try:
            text = reward_file.read_text(encoding="utf-8")
            problem = ""
        except FileNotFoundError:
            problem = f"{reward_file.name} was not found beside {run.path.name}"
        except UnicodeDecodeError:
            problem = f"{reward_file.name} is not UTF-8 text"
        except OSError as exc:
            problem = f"{reward_file.name} cannot be read ({exc.strerror or exc})"
        self._replace(run.config, run.path, text if text is not None else STARTER_REWARDS, saved_rewards=text)
        self.reward_note = (f"{problem}: the Rewards page starts from example functions; Save writes them "
                            f"to {reward_file}") if problem else ""

    def _replace(self, config: RunConfig, path: Path | None, rewards: str, saved_rewards: str | None) -> None:
        self.config = config
        self.path = path
        self.reward_source = rewards
        self.field_errors = {}
        self.found_problems = {}
        self._saved_config = dumps_run(config)
        self._saved_rewards = saved_rewards
        self.pathChanged.emit()
        self.changed.emit("")
        self.rewardSourceReplaced.emit()
        self._after_edit()

    def save_conflicts(self, path: str | Path) -> list[Path]:
        """Files other than the run file that saving to `path` would overwrite with different text."""
        target = self._reward_target(Path(path))
        if target.is_file():
            try:
                if target.read_text(encoding="utf-8") != self.reward_source:
                    return [target]
            except (OSError, UnicodeDecodeError):
                return [target]
        return []

    def _reward_target(self, run_path: Path) -> Path:
        p = Path(self.config.rewards.file).expanduser()
        return p if p.is_absolute() else run_path.parent / p

    def save(self, path: str | Path | None = None) -> None:
        """Write the run file and the reward file beside it (both atomically). Raises OSError."""
        target = Path(path) if path is not None else self.path
        if target is None:
            raise ValueError("no file name yet: use Save As")
        target = target.resolve()
        if self.base_dir is not None and target.parent != self.base_dir.resolve():
            self._rebase_paths(target.parent)
        elif self.base_dir is None:
            self._rebase_paths(target.parent, old_base=Path.cwd())
        save_run(self.config, target)
        reward_file = self._reward_target(target)
        if self.reward_source.strip() or reward_file.exists():
            tmp = reward_file.with_name(reward_file.name + ".tmp")
            tmp.write_text(self.reward_source, encoding="utf-8")
            tmp.replace(reward_file)
            self._saved_rewards = self.reward_source
        path_changed = target != self.path
        self.path = target
        self._saved_config = dumps_run(self.config)
        if path_changed:
            self.pathChanged.emit()
        self._after_edit()

    def _rebase_paths(self, new_base: Path, old_base: Path | None = None) -> None:
        """Keep local paths pointing at the same files when the run file moves to another folder."""
        old_base = old_base or self.base_dir
        assert old_base is not None

        def rebased(value: str) -> str | None:
            if Path(value).expanduser().is_absolute():
                return None
            old = (old_base / value).resolve()
            if not old.exists():
                return None  # a hub id, or a path that is broken anyway
            try:
                new_value = os.path.relpath(old, new_base)
            except ValueError:  # another drive (Windows)
                return str(old)
            return str(old) if new_value.startswith(".." + os.sep + "..") else new_value

        before = self.config
        self.config = with_local_paths(before, rebased)
        for field in (*PATH_FIELDS, "rewards.functions"):
            if get_value(self.config, field) != get_value(before, field):
                self.changed.emit(field)

    # ---- editing ----------------------------------------------------------------------
    def value(self, path: str) -> Any:
        return get_value(self.config, path)

    def set_field(self, path: str, value: Any) -> str | None:
        """Apply one edit. Returns None when taken, else the reason (also shown at the field)."""
        try:
            config = set_value(self.config, path, value)
        except ConfigError as exc:
            mine = [p for p in exc.problems if p.field == path or p.field.startswith(path + ".")
                    or p.field.startswith(path + "[")]
            reason = (mine or exc.problems)[0].message
            if self.field_errors.get(path) != reason:
                self.field_errors[path] = reason
                self._refresh_problems()
            return reason
        had_error = self.field_errors.pop(path, None) is not None
        if config == self.config:
            if had_error:
                self._refresh_problems()
            return None
        self.config = config
        self.changed.emit(path)
        self._after_edit()
        return None

    def set_field_error(self, path: str, reason: str) -> None:
        """The field's widget holds text that is not a value at all (e.g. "1e-" for a float)."""
        if self.field_errors.get(path) != reason:
            self.field_errors[path] = reason
            self._refresh_problems()

    def set_found_problems(self, finder: str, problems: dict[str, str]) -> None:
        if problems != self.found_problems.get(finder, {}):
            self.found_problems[finder] = dict(problems)
            self._refresh_problems()

    def set_reward_source(self, text: str) -> None:
        if text == self.reward_source:
            return
        self.reward_source = text
        self._after_edit()

    def replace_reward_source(self, text: str, saved: bool = False) -> None:
        """New reward text from outside the editor (a file picked in the reward editor)."""
        self.reward_source = text
        if saved:
            self._saved_rewards = text
        self.rewardSourceReplaced.emit()
        self._after_edit()

    def reward_modified(self) -> bool:
        """The reward text differs from its file (or there is no file yet)."""
        return self.reward_source != self._saved_rewards

    def is_modified(self) -> bool:
        return self._modified

    def _after_edit(self) -> None:
        self.found_problems.pop("check", None)  # a check speaks of the settings it saw, not these
        modified = dumps_run(self.config) != self._saved_config or self.reward_source != self._saved_rewards
        if modified != self._modified:
            self._modified = modified
            self.modifiedChanged.emit(modified)
        self._refresh_problems()

    # ---- problems ---------------------------------------------------------------------
    def problems(self) -> dict[str, str]:
        """Everything that blocks Train, by field path (`rewards.file` for the reward file's text)."""
        return dict(self._problems)

    def _refresh_problems(self, emit: bool = True) -> None:
        found = dict(self.field_errors)
        found.update(self._reward_problems())  # more specific than the config's own message
        for problem in self.config.problems():
            found.setdefault(problem.field, problem.message)
        for problems in self.found_problems.values():
            for field, message in problems.items():
                found.setdefault(field, message)
        if found != self._problems:
            self._problems = found
            if emit:
                self.problemsChanged.emit()

    def _reward_problems(self) -> dict[str, str]:
        cfg = self.config.rewards
        uses_file = not cfg.functions or any(not f.model for f in cfg.functions)
        if not uses_file:
            return {}
        file_name = Path(cfg.file).name
        bad = syntax_problem(self.reward_source, file_name)
        if bad is not None:
            return {"rewards.file": f"{file_name} line {bad.line}: {bad.message}"}
        defined = {f.name for f in defined_functions(self.reward_source)}
        out = {}
        for i, fn in enumerate(cfg.functions):
            if not fn.name and not fn.model:
                out[f"rewards.functions[{i}]"] = f"choose a function of {file_name}"
            elif fn.name and fn.name not in defined:
                out[f"rewards.functions[{i}]"] = f"no function {fn.name!r} in {file_name}"
        if not cfg.functions and not reward_functions(self.reward_source):
            out["rewards.functions"] = (f"no reward functions: add one to the list, or end a function's name "
                                        f"in _reward in {file_name}")
        return out
