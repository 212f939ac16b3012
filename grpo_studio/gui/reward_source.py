"""What the window needs to know about a reward file without running it (pure Python, no Qt).

The editor checks syntax as the user types and lists the functions a file defines by parsing it
with `ast`: user code is never executed in the window's process (the training worker loads it).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass


@dataclass(frozen=True)
class SyntaxProblem:
    line: int  # 1-based
    column: int  # 1-based; 0 when unknown
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass(frozen=True)
class DefinedFunction:
    name: str
    line: int
    params: tuple[str, ...]
    takes_kwargs: bool

    @property
    def is_reward(self) -> bool:
        """Picked up automatically when rewards.functions is empty (the engine's rule)."""
        return self.name.endswith("_reward")


def syntax_problem(source: str, filename: str = "rewards.py") -> SyntaxProblem | None:
    """The first syntax error of `source`, or None. Fast enough to run on every pause in typing."""
    try:
        compile(source, filename, "exec", flags=ast.PyCF_ONLY_AST, dont_inherit=True)
    except SyntaxError as exc:
        line = exc.lineno or 1
        return SyntaxProblem(line=line, column=exc.offset or 0, message=exc.msg or "invalid syntax")
    except ValueError as exc:  # e.g. a NUL byte in the text
        return SyntaxProblem(line=1, column=0, message=str(exc))
    return None


def defined_functions(source: str) -> list[DefinedFunction]:
    """Top-level functions of the file, in file order (none when it does not parse)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    out = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            params = tuple(a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs])
            out.append(DefinedFunction(node.name, node.lineno, params, args.kwarg is not None))
    return out


def reward_functions(source: str) -> list[str]:
    """Names the engine would pick up on its own: top-level functions ending in `_reward`."""
    return [f.name for f in defined_functions(source) if f.is_reward]
