"""Check: `grpo-studio validate` on what the window shows, in a separate process, problems mapped
back to their fields.

Validation reads the dataset, loads the reward file and reads the model's config: the same checks
the command line runs, including user code, so it runs in its own process (off the GUI thread,
and never in the window's interpreter). Its findings come back one line each, `section.key:
reason` or `FILE:LINE: reason`, and are shown at the field or the editor line they name.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grpo_studio.config import RunConfig
from grpo_studio.gui.run_controller import worker_environment
from grpo_studio.gui.run_snapshot import write_snapshot

CHECK_TIMEOUT_S = 300
FIELD_LINE = re.compile(r"^(?P<field>[a-z_]+(?:\.[a-z_]+)+(?:\[\d+\])?(?:\.[a-z_]+)?): (?P<reason>.+)$", re.S)
FILE_LINE = re.compile(r"^(?P<file>.+?):(?P<line>\d+): (?P<reason>.+)$", re.S)


@dataclass
class CheckResult:
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


def run_check(config: RunConfig, run_path: Path | None, reward_source: str) -> CheckResult:
    """Runs on a worker thread: snapshot the settings, validate them in a child process."""
    snapshot = write_snapshot(config, run_path, reward_source)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "grpo_studio.cli", "validate", str(snapshot), "--json"],
            capture_output=True, text=True, timeout=CHECK_TIMEOUT_S, env=worker_environment(),
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return CheckResult(problems=[f"the check took longer than {CHECK_TIMEOUT_S} s and was stopped"])
    finally:
        shutil.rmtree(snapshot.parent, ignore_errors=True)
    start = proc.stdout.find("{")
    try:
        report = json.loads(proc.stdout[start:]) if start >= 0 else None
    except json.JSONDecodeError:
        report = None
    if report is None:  # the run file itself was refused: the reasons are on stderr
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        return CheckResult(problems=lines[-10:] or [f"the check ended with exit code {proc.returncode}"])
    facts = {k: v for k, v in report.items() if k not in ("ok", "problems", "warnings")}
    return CheckResult(problems=list(report.get("problems", [])), warnings=list(report.get("warnings", [])),
                       facts=facts)


def problems_by_field(lines: list[str], reward_file: str, data_file: str) -> dict[str, str]:
    """Findings keyed by the setting to fix; reward file lines go to `rewards.file` with their line."""
    out: dict[str, str] = {}
    for text in lines:
        m = FIELD_LINE.match(text)
        if m:
            out.setdefault(m.group("field"), m.group("reason"))
            continue
        m = FILE_LINE.match(text)
        head, _, rest = text.partition(": ")
        if m and Path(m.group("file")).name == reward_file:
            out.setdefault("rewards.file", f"{reward_file} line {m.group('line')}: {m.group('reason')}")
        elif Path(head).name == reward_file:
            out.setdefault("rewards.file", f"{reward_file}: {rest}")
        elif (m and Path(m.group("file")).name == data_file) or Path(head).name == data_file:
            out.setdefault("data.source", text)
        else:
            out.setdefault("run", text)  # not about one setting: listed, not marked at a field
    return out
