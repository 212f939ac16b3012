"""The layers, enforced: config <- engine <- gui <- cli, and no Qt below the window.

The contracts are import-linter's, in pyproject.toml ([tool.importlinter]); this runs them. A broken
contract prints the offending import chain (module and line) above the failure.
"""

from __future__ import annotations

from pathlib import Path

import grpo_studio

ROOT = Path(grpo_studio.__file__).resolve().parent.parent


def test_the_import_contracts_hold(capsys):
    from importlinter.cli import lint_imports

    code = lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True)
    report = capsys.readouterr().out
    assert code == 0, report
    assert "config <- engine <- gui <- cli KEPT" in report and "No Qt below the window KEPT" in report
