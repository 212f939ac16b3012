"""Code execution: run the completion's Python against tests, in a limited subprocess.

The completion's last ```python block runs in a fresh `python -I` process, in an empty temporary
folder, without your environment variables, with a wall-clock timeout, and (on Linux and macOS)
limits on CPU time, memory and file size. That stops endless loops, memory bombs and stray files
from reaching the trainer.

It is NOT a security sandbox: the code runs as you, can read your files, use the network and
start processes. Train on code you would be willing to run yourself, or train inside a container
or VM without secrets or network access.
"""

import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

# Limits that keep endless loops, memory bombs and stray files away from training. NOT a
# security sandbox: the code runs as you, can read your files, use the network and start
# processes. Train on code you would run yourself, or inside a container or VM.
CODE_TIMEOUT_S = 5  # wall clock per completion
CODE_MEMORY_MB = 512  # address space of the test process
CODE_WORKERS = min(8, os.cpu_count() or 1)  # completions tested at once

_CODE_BLOCK = re.compile(r"```(?:python|py|python3)?[ \t]*\n(.*?)```", re.DOTALL)

# Runs first in the test process: limits, then the completion's code, then the tests, each test
# counted on its own. The result line carries a random token, so printed text cannot fake it.
_CODE_HARNESS = """
try:
    import resource as _r
    for _k, _v in ((_r.RLIMIT_AS, {memory}), (_r.RLIMIT_CPU, {cpu}), (_r.RLIMIT_FSIZE, 1 << 24),
                   (_r.RLIMIT_CORE, 0)):
        try:
            _r.setrlimit(_k, (_v, _v))
        except (ValueError, OSError):
            pass
except ImportError:
    pass
try:
    exec(compile({code!r}, "solution.py", "exec"), globals())
except BaseException:
    pass
_passed = 0
for _test in {tests!r}:
    try:
        exec(_test, globals())
        _passed += 1
    except BaseException:
        pass
print("\\n{token}", _passed, flush=True)
"""


def _code_text(completion):
    """Completion text: a string, or the content of chat messages."""
    if isinstance(completion, list):
        return "".join(str(m.get("content", "")) for m in completion if isinstance(m, dict))
    return str(completion)


def _code_block(text):
    """The last ```python block of a completion, or None."""
    blocks = _CODE_BLOCK.findall(text)
    return blocks[-1] if blocks else None


def _code_tests(tests):
    """A row's tests: a list of statements, or one string with a statement per line."""
    if tests is None:
        return []
    if isinstance(tests, str):
        return [line for line in tests.splitlines() if line.strip()]
    return [str(t) for t in tests]


def _code_run(script):
    """Run a Python script in a limited subprocess: (exit code or None on timeout, stdout)."""
    with tempfile.TemporaryDirectory(prefix="grpo-code-") as folder:
        path = os.path.join(folder, "main.py")
        with open(path, "w", encoding="utf-8") as f:
            f.write(script)
        proc = subprocess.Popen([sys.executable, "-I", path], cwd=folder, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                env={"PATH": os.defpath, "PYTHONDONTWRITEBYTECODE": "1"},
                                start_new_session=os.name == "posix")
        try:
            out, _ = proc.communicate(timeout=CODE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            if os.name == "posix":
                os.killpg(proc.pid, signal.SIGKILL)  # the whole group: children it started too
            else:
                proc.kill()
            proc.communicate()
            return None, ""
        return proc.returncode, out


def _code_score(code, tests):
    if code is None or not tests:
        return 0.0
    token = secrets.token_hex(8)
    script = _CODE_HARNESS.format(memory=CODE_MEMORY_MB << 20, cpu=CODE_TIMEOUT_S + 1, code=code, tests=tests,
                                  token=token)
    _, out = _code_run(script)
    for line in reversed(out.splitlines()):
        if line.startswith(token):
            return int(line.split()[1]) / len(tests)
    return 0.0  # killed, timed out, or exited before the tests


def code_tests_reward(completions, tests, **kwargs):
    """Fraction of the row's `tests` (statements such as asserts) that pass after the completion's last
    ```python block has run; 0.0 without a code block; None for rows without tests.

    >>> solved = "```python\\ndef solution():\\n    return (16 - 3 - 4) * 2\\n```"
    >>> code_tests_reward([solved, "```python\\nimport sys; sys.exit()\\n```", "no code"],
    ...                   tests=[["assert solution() == 18", "assert isinstance(solution(), int)"]] * 3)
    [1.0, 0.0, 0.0]
    >>> code_tests_reward(["```python\\ndef solution():\\n    return 19\\n```"],
    ...                   tests=["assert solution() == 18\\nassert solution() > 0"])
    [0.5]
    """
    rows = [_code_tests(t) for t in tests]
    jobs = [(_code_block(_code_text(c)), t) for c, t in zip(completions, rows)]
    with ThreadPoolExecutor(CODE_WORKERS) as pool:
        scores = list(pool.map(lambda job: _code_score(*job), jobs))
    return [score if rows[i] else None for i, score in enumerate(scores)]


def _code_number(text):
    text = str(text).split("####")[-1].strip().replace(",", "").lstrip("$")
    try:
        return float(text)
    except ValueError:
        return None


def program_answer_reward(completions, answer, **kwargs):
    """Program of thought: 1.0 when the last line the completion's ```python block prints equals the
    ground truth (as numbers when both are numbers), else 0.0. Suits maths data such as GSM8K.

    >>> program_answer_reward(["```python\\nprint((16 - 3 - 4) * 2)\\n```", "```python\\nprint(19)\\n```"],
    ...                       answer=["18", "#### 18"])
    [1.0, 0.0]
    """
    def score(job):
        code, truth = job
        if code is None or truth is None:
            return 0.0
        token = secrets.token_hex(8)
        script = _CODE_HARNESS.format(memory=CODE_MEMORY_MB << 20, cpu=CODE_TIMEOUT_S + 1, code=code, tests=[],
                                      token=token)
        _, out = _code_run(script)
        lines = [line for line in out.splitlines() if line.strip() and not line.startswith(token)]
        if not lines:
            return 0.0
        got, want = _code_number(lines[-1]), _code_number(truth)
        if got is not None and want is not None:
            return 1.0 if abs(got - want) <= 1e-6 * max(1.0, abs(want)) else 0.0
        return 1.0 if lines[-1].strip() == str(truth).split("####")[-1].strip() else 0.0

    jobs = [(_code_block(_code_text(c)), a) for c, a in zip(completions, answer)]
    with ThreadPoolExecutor(CODE_WORKERS) as pool:
        return list(pool.map(score, jobs))
