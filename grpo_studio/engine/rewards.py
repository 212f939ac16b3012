"""Reward functions from the run's Python file, checked and wrapped for TRL.

A reward function has TRL's signature: `f(prompts, completions, **kwargs) -> list[float | None]`,
where kwargs carry the dataset's columns (e.g. `answer`), `completion_ids` and `trainer_state`.
A function may name only the arguments it uses: the wrapper passes just those.

Every call is checked against the contract (a list, one value per completion, each a finite
number or None). A violation is an error naming the function and what it returned, never a
silent 0. Problems in the file are reported as `FILE:LINE: reason`.

By default (`rewards.isolate`) the file is loaded and called in a child process with a time limit
per call (`reward_sandbox`); `isolated=False` runs it here, in the calling process. Both paths use
the same loading, selection and contract code from this module.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import linecache
import math
import sys
import traceback
from dataclasses import dataclass, field
from numbers import Real
from pathlib import Path
from typing import Any, Callable

from grpo_studio.config import LoadedRun

# Keyword arguments that TRL passes besides the dataset's columns.
TRL_ARGUMENTS = {"prompts", "completions", "completion_ids", "trainer_state", "log_extra", "log_metric",
                 "environments"}


class RewardError(Exception):
    """A problem with a reward file or function, located at FILE:LINE when the line is known."""

    def __init__(self, message: str, *, file: str | Path | None = None, line: int | None = None,
                 function: str | None = None, details: str = ""):
        self.file = str(file) if file is not None else None
        self.line = line
        self.function = function
        self.message = message
        self.details = details
        self.hint = ""  # what to do about it, when the caller knows (e.g. where the run's copy of the file is)
        super().__init__(self.location() + message)

    def location(self) -> str:
        if self.file and self.line:
            return f"{self.file}:{self.line}: "
        if self.file:
            return f"{self.file}: "
        return ""


class RewardContractError(RewardError):
    """A reward function returned something other than one finite number (or None) per completion."""


def _user_line(tb: Any, path: Path) -> int | None:
    """The deepest line of the user's file in a traceback."""
    line = None
    for frame in traceback.extract_tb(tb):
        if Path(frame.filename).resolve() == path.resolve():
            line = frame.lineno
    return line


def load_module(path: str | Path, source: str | None = None) -> Any:
    """Execute the reward file as a module; syntax and import errors come back as FILE:LINE.

    `source` is the editor's text when it differs from the file on disk (unsaved edits): it is run
    under the file's name, and tracebacks quote its lines, so line numbers match the editor."""
    path = Path(path)
    if source is None:
        try:
            source = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise RewardError("reward file not found", file=path) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise RewardError(f"cannot read: {exc}", file=path) from None
    else:
        # mtime None: linecache never replaces these lines with the (older) file on disk.
        linecache.cache[str(path)] = (len(source), None, source.splitlines(keepends=True), str(path))
    try:
        code = compile(source, str(path), "exec")
    except SyntaxError as exc:
        raise RewardError(f"syntax error: {exc.msg}", file=path, line=exc.lineno) from None
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]
    name = f"grpo_studio_rewards_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    # Let the file import helpers that sit beside it.
    sys.path.insert(0, str(path.parent.resolve()))
    try:
        exec(code, module.__dict__)
    except Exception as exc:  # noqa: BLE001 - any error in user code is reported, not raised raw
        raise RewardError(
            f"error while loading: {type(exc).__name__}: {exc}",
            file=path,
            line=_user_line(exc.__traceback__, path),
            details=traceback.format_exc(),
        ) from None
    finally:
        try:
            sys.path.remove(str(path.parent.resolve()))
        except ValueError:
            pass
    sys.modules[name] = module  # so pickling (multiprocessing) finds the functions
    return module


def discover(module: Any) -> list[str]:
    """Functions defined in the file whose name ends in `_reward`, in file order."""
    found = []
    for name, obj in vars(module).items():
        if inspect.isfunction(obj) and obj.__module__ == module.__name__ and name.endswith("_reward"):
            found.append((obj.__code__.co_firstlineno, name))
    return [name for _, name in sorted(found)]


@dataclass
class Signature:
    """What a reward function accepts."""

    params: list[str]
    takes_kwargs: bool
    required: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, func: Callable) -> "Signature":
        sig = inspect.signature(func)
        params, required, takes_kwargs = [], [], False
        for p in sig.parameters.values():
            if p.kind is p.VAR_KEYWORD:
                takes_kwargs = True
            elif p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                params.append(p.name)
                if p.default is p.empty:
                    required.append(p.name)
        return cls(params, takes_kwargs, required)

    def select(self, args: dict[str, Any]) -> dict[str, Any]:
        """The arguments this function accepts, out of everything TRL passes."""
        if self.takes_kwargs:
            return dict(args)
        return {k: v for k, v in args.items() if k in self.params}


def check_signature(func: Callable, name: str, path: Path, columns: list[str] | None) -> Signature:
    """A reward function must take `completions`; every other required argument must be available."""
    line = func.__code__.co_firstlineno if hasattr(func, "__code__") else None
    try:
        sig = Signature.of(func)
    except (TypeError, ValueError) as exc:
        raise RewardError(f"{name}: cannot read its signature: {exc}", file=path, line=line) from None
    if inspect.isasyncgenfunction(func) or inspect.isgeneratorfunction(func):
        raise RewardError(f"{name} is a generator: return a list of floats", file=path, line=line)
    if "completions" not in sig.params and not sig.takes_kwargs:
        raise RewardError(f"{name} must take a `completions` argument (TRL passes prompts, completions, "
                          "and the dataset's columns as keyword arguments)", file=path, line=line)
    if columns is not None:
        available = TRL_ARGUMENTS | set(columns)
        for p in sig.required:
            if p not in available:
                raise RewardError(
                    f"{name} needs argument {p!r}, but no dataset column has that name "
                    f"(columns: {', '.join(columns)})", file=path, line=line)
    return sig


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_rewards(name: str, result: Any, n: int) -> list[float | None]:
    """Enforce the contract: a list of n finite numbers or None. Returns plain floats."""
    if hasattr(result, "tolist") and not isinstance(result, (list, tuple)):
        result = result.tolist()  # numpy arrays and tensors
    if not isinstance(result, (list, tuple)):
        raise RewardContractError(
            f"{name} returned {type(result).__name__} {_describe(result)}; expected a list of {n} floats",
            function=name)
    if len(result) != n:
        raise RewardContractError(
            f"{name} returned {len(result)} values for {n} completions; expected one per completion",
            function=name)
    out: list[float | None] = []
    for i, value in enumerate(result):
        if value is None:
            out.append(None)
            continue
        if isinstance(value, bool) or not isinstance(value, Real):
            raise RewardContractError(
                f"{name} returned {_describe(value)} ({type(value).__name__}) for completion {i}; "
                "expected a number or None", function=name)
        value = float(value)
        if not math.isfinite(value):
            raise RewardContractError(f"{name} returned {value} for completion {i}; rewards must be finite "
                                      "(return None to skip a completion)", function=name)
        out.append(value)
    return out


class RewardFunction:
    """A user reward function as TRL calls it: arguments filtered to its signature, result checked."""

    def __init__(self, func: Callable, name: str, signature: Signature, path: Path | None = None):
        self.func = func
        self.__name__ = name  # TRL names metrics after this
        self.signature = signature
        self.path = path
        self.line: int | None = getattr(getattr(func, "__code__", None), "co_firstlineno", None)

    def arguments(self, prompts: list, completions: list, **kwargs: Any) -> dict[str, Any]:
        return self.signature.select({"prompts": prompts, "completions": completions, **kwargs})

    def __call__(self, prompts: list, completions: list, **kwargs: Any) -> list[float | None]:
        return self.call(self.arguments(prompts, completions, **kwargs), len(completions))

    def call(self, args: dict[str, Any], n: int) -> list[float | None]:
        """Call with arguments already selected; check the result for n completions."""
        try:
            result = self.func(**args)
        except Exception as exc:  # noqa: BLE001 - user code; re-raised with its line
            raise self.error(exc) from None
        try:
            return check_rewards(self.__name__, result, n)
        except RewardContractError as exc:
            # Point at the function, so the message reads FILE:LINE like every other reward problem.
            raise RewardContractError(exc.message, file=self.path, line=self.line, function=self.__name__) from None

    def error(self, exc: BaseException) -> RewardError:
        """An exception of the user's code as a RewardError at the deepest line of the reward file."""
        path = self.path or Path(inspect.getsourcefile(self.func) or "?")
        return RewardError(
            f"{self.__name__} raised {type(exc).__name__}: {exc}",
            file=path, line=_user_line(exc.__traceback__, path), function=self.__name__,
            details="".join(traceback.format_exception(exc)),
        )


@dataclass
class RewardSpec:
    """One configured reward: a wrapped function or a reward model, with its weight."""

    label: str
    weight: float
    function: Any = None  # RewardFunction, or reward_sandbox.IsolatedRewardFunction (same interface)
    model: str | None = None  # hub id or folder of a sequence-classification model


def reward_file(run: LoadedRun) -> Path:
    return run.resolve(run.config.rewards.file)


def select_functions(module: Any, path: Path, names: list[str] | None,
                     columns: list[str] | None) -> list[RewardFunction]:
    """The named functions of a loaded reward file (all `*_reward` ones when `names` is None), wrapped
    and with their signatures checked against the dataset columns."""
    if names is None:
        names = discover(module)
        if not names:
            raise RewardError("no reward functions: name them in rewards.functions, or end their names in "
                              "_reward", file=path)
    out = []
    for name in names:
        func = getattr(module, name, None)
        if func is None:
            defined = discover(module) or [n for n, o in vars(module).items()
                                           if inspect.isfunction(o) and o.__module__ == module.__name__]
            raise RewardError(f"no function {name!r} (rewards.functions); defined: "
                              f"{', '.join(defined) or 'none'}", file=path)
        if not callable(func):
            raise RewardError(f"{name} is a {type(func).__name__}, not a function", file=path)
        sig = check_signature(func, name, path, columns)
        out.append(RewardFunction(func, name, sig, path))
    return out


def load_rewards(run: LoadedRun, columns: list[str] | None = None, *, isolated: bool | None = None,
                 source: str | None = None, notify: Callable[[str], None] | None = None) -> list[RewardSpec]:
    """The run's reward functions, loaded from its file and checked against the dataset columns.

    `isolated` (default: rewards.isolate) loads and calls them in a child process with a time limit;
    `source` is unsaved editor text to use instead of the file; `notify` hears what the reward
    process has to say (e.g. that it was restarted). Call `close_rewards` when done."""
    cfg = run.config.rewards
    isolated = cfg.isolate if isolated is None else isolated
    path = reward_file(run)
    needs_file = not cfg.functions or any(f.name for f in cfg.functions)
    names = [f.name for f in cfg.functions if f.name] or None
    functions: dict[str, Any] = {}
    if needs_file:
        if isolated:
            from grpo_studio.engine.reward_sandbox import RewardProcess

            process = RewardProcess(path, names, columns, timeout_s=cfg.timeout_s,
                                    load_timeout_s=cfg.load_timeout_s, source=source, notify=notify)
            loaded = process.functions()
        else:
            loaded = select_functions(load_module(path, source), path, names, columns)
        functions = {f.__name__: f for f in loaded}
    configured = cfg.functions
    if not configured:
        from grpo_studio.config import RewardFunction as Configured

        configured = [Configured(name=n) for n in functions]
    specs = []
    for entry in configured:
        if entry.model:
            specs.append(RewardSpec(entry.label, entry.weight, model=entry.model))
        else:
            specs.append(RewardSpec(entry.name, entry.weight, function=functions[entry.name]))
    return specs


def close_rewards(specs: list[RewardSpec]) -> None:
    """Stop the reward process behind isolated functions (a no-op for in-process ones)."""
    for spec in specs:
        close = getattr(spec.function, "close", None)
        if close is not None:
            close()
