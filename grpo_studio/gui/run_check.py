"""Check: `grpo-studio validate` on what the window shows, in a separate process, problems mapped
back to their fields.

Validation reads the dataset, loads the reward file and reads the model's config: the same checks
the command line runs, including user code, so it runs in its own process (off the GUI thread,
and never in the window's interpreter; engine/child_tasks.py). Its findings come back as a typed
`CheckReport`, one line each, `section.key: reason` or `FILE:LINE: reason`, and are shown at the
field or the editor line they name.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

from grpo_studio.config import RunConfig
from grpo_studio.engine.child_messages import CheckReport, CheckRequest, TaskFailed
from grpo_studio.gui.run_snapshot import write_snapshot

CHECK_TIMEOUT_S = 300
FIELD_LINE = re.compile(r"^(?P<field>[a-z_]+(?:\.[a-z_]+)+(?:\[\d+\])?(?:\.[a-z_]+)?): (?P<reason>.+)$", re.S)
FILE_LINE = re.compile(r"^(?P<file>.+?):(?P<line>\d+): (?P<reason>.+)$", re.S)


def run_check(config: RunConfig, run_path: Path | None, reward_source: str, state: Any = None) -> CheckReport:
    """Runs on a worker thread: snapshot the settings, validate them in a child process.
    `state` (a TaskState): cancelling it ends the child at once."""
    from grpo_studio.engine.child_tasks import run_task

    snapshot = write_snapshot(config, run_path, reward_source)
    try:
        outcome = run_task(CheckRequest(run_file=str(snapshot)), timeout_s=CHECK_TIMEOUT_S,
                           started=None if state is None else lambda child: state.on_cancel(child.cancel))
    finally:
        shutil.rmtree(snapshot.parent, ignore_errors=True)
    if isinstance(outcome.result, CheckReport):
        return outcome.result
    if isinstance(outcome.result, TaskFailed):
        return CheckReport(problems=[outcome.result.reason])
    if outcome.timed_out:
        return CheckReport(problems=[f"the check took longer than {CHECK_TIMEOUT_S} s and was stopped"])
    lines = [line for line in outcome.log_tail.splitlines() if line.strip()]
    return CheckReport(problems=lines[-10:] or [f"the check ended with exit code {outcome.returncode}"])


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
