"""One way to start a child process (issue 12): engine/child_process.py's `ChildProcess`.

Every module of the package (and every reward template a user copies) is read for the ways Python
starts a process: the subprocess, multiprocessing and pty modules, asyncio's subprocesses, os.fork /
system / popen / spawn* / exec* / posix_spawn*, and Qt's QProcess. Only the modules in ALLOWED may
use one, each for the reason given; a second helper creeping back (a Popen in a page, a QProcess, a
thread running subprocess.run) fails here with the file, the line and what to use instead. An entry
that no longer starts anything fails too, so the list stays the list of real exceptions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import grpo_studio

ROOT = Path(grpo_studio.__file__).resolve().parent.parent
SCANNED = [ROOT / "grpo_studio", ROOT / "resources"]

PROCESS_MODULES = {"subprocess", "multiprocessing", "pty", "asyncio.subprocess"}
OS_STARTERS = ("fork", "forkpty", "system", "popen", "spawn", "exec", "posix_spawn")
OTHER_NAMES = {"QProcess", "create_subprocess_exec", "create_subprocess_shell"}

ALLOWED: dict[str, tuple[set[str], str]] = {
    "grpo_studio/engine/child_process.py": (
        {"subprocess"},
        "the helper itself: starts, streams, cancels and kills every child that works for the window "
        "(training, Check, the reward bench, Evaluate, Export, the Playground)"),
    "grpo_studio/engine/reward_sandbox.py": (
        {"multiprocessing"},
        "the reward sandbox: a spawned interpreter that trades Python data with the trainer at every "
        "reward call over a multiprocessing pipe, killed and restarted by the call that timed out or "
        "found it dead; not a task with a request and a result"),
    "resources/reward_templates/code_execution.py": (
        {"subprocess"},
        "a reward template the user copies and edits: it runs model-written code in a throwaway "
        "`python -I` with limits and a timeout, and imports nothing of grpo_studio so the copy stands alone"),
    "grpo_studio/cli.py": (
        {"multiprocessing"},
        "multiprocessing.freeze_support() only: a frozen (installer) build starts the reward sandbox "
        "through this entry point; it starts nothing itself"),
    "grpo_studio/engine/bench.py": (
        {"subprocess"},
        "`grpo-studio bench`, a measurement tool: each arm runs to its end in a fresh interpreter (its "
        "own CUDA context and peak-memory counters), output captured whole; no window, nothing to cancel"),
    "grpo_studio/engine/generation_mode.py": (
        {"subprocess"},
        "asks nvidia-smi for the free GPU memory (the window must not import torch): a system tool's "
        "one-line answer, not work in a child"),
    "grpo_studio/gui/system_libraries.py": (
        {"subprocess"},
        "runs `ldd` on Qt's platform plugin to name a missing system library: a system tool's answer, "
        "not work in a child"),
}


def ways_to_start_processes(path: Path) -> dict[str, list[int]]:
    """{way: [line, ...]} for every way `path` has of starting a process."""
    found: dict[str, list[int]] = {}

    def hit(way: str, node: ast.AST) -> None:
        found.setdefault(way, []).append(node.lineno)

    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in PROCESS_MODULES or alias.name.split(".")[0] in PROCESS_MODULES:
                    hit(alias.name.split(".")[0], node)
        elif isinstance(node, ast.ImportFrom) and node.module:
            top = node.module.split(".")[0]
            if node.module in PROCESS_MODULES or top in PROCESS_MODULES:
                hit(top if top != "asyncio" else node.module, node)
            for alias in node.names:
                if alias.name in OTHER_NAMES or (node.module == "asyncio" and alias.name == "subprocess"):
                    hit(alias.name, node)
                if node.module == "os" and alias.name.startswith(OS_STARTERS):
                    hit(f"os.{alias.name}", node)
        elif isinstance(node, ast.Attribute):
            if node.attr in OTHER_NAMES:
                hit(node.attr, node)
            elif (isinstance(node.value, ast.Name) and node.value.id == "os"
                  and node.attr.startswith(OS_STARTERS)):
                hit(f"os.{node.attr}", node)
        elif isinstance(node, ast.Name) and node.id in OTHER_NAMES:
            hit(node.id, node)
    return found


def scan() -> dict[str, dict[str, list[int]]]:
    out = {}
    for top in SCANNED:
        for path in sorted(top.rglob("*.py")):
            found = ways_to_start_processes(path)
            if found:
                out[path.relative_to(ROOT).as_posix()] = found
    return out


def test_children_are_started_one_way():
    found = scan()
    intruders = []
    for module, ways in sorted(found.items()):
        allowed = ALLOWED.get(module, (set(), ""))[0]
        for way, lines in sorted(ways.items()):
            if way not in allowed:
                intruders.append(f"{module}:{lines[0]}: starts a process with {way}")
    assert not intruders, (
        "a second way of starting child processes:\n  " + "\n  ".join(intruders) + "\n"
        "Use engine/child_process.ChildProcess (a task in engine/child_tasks.py; from the window, "
        "gui/child_runner.run_in_child in a TaskRunner, or ChildRunner for a long-lived child), or add the "
        "module to ALLOWED in this test with the reason it cannot.")
    stale = [f"{module}: {', '.join(sorted(ways - set(found.get(module, {}))))}"
             for module, (ways, _) in ALLOWED.items() if ways - set(found.get(module, {}))]
    assert not stale, "ALLOWED lists exceptions the code no longer has (remove them): " + "; ".join(stale)


def test_the_scan_sees_each_way_of_starting_a_process(tmp_path):
    """The scan itself: each of these lines is one way in, and harmless look-alikes are none."""
    cases = {
        "import subprocess\n": "subprocess",
        "from subprocess import Popen as P\n": "subprocess",
        "import multiprocessing.connection\n": "multiprocessing",
        "from concurrent import futures\nimport pty\n": "pty",
        "import asyncio\nasyncio.create_subprocess_exec('ls')\n": "create_subprocess_exec",
        "from asyncio import subprocess\n": "subprocess",
        "import os\nos.system('ls')\n": "os.system",
        "import os\nos.execvp('ls', ['ls'])\n": "os.execvp",
        "from os import fork\n": "os.fork",
        "from PySide6.QtCore import QProcess\n": "QProcess",
    }
    for i, (source, way) in enumerate(cases.items()):
        path = tmp_path / f"case{i}.py"
        path.write_text(source)
        assert way in ways_to_start_processes(path), source
    harmless = tmp_path / "harmless.py"
    harmless.write_text("import os\nos.kill(1, 0)\nos.killpg(1, 0)\nempty = 'pty'\nos.path.exists('x')\n")
    assert ways_to_start_processes(harmless) == {}
