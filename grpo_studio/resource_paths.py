"""Where GRPO Studio's own files are: resources/ (the demo, run files, reward templates, icons).

The command line and the window both need these; neither imports the other for them. Pure pathlib:
importing it costs nothing.
"""

from __future__ import annotations

from pathlib import Path


def resources_dir() -> Path:
    """resources/ beside the package in a checkout, or inside it when installed from a wheel."""
    here = Path(__file__).resolve().parent
    packaged = here / "resources"
    return packaged if packaged.is_dir() else here.parent / "resources"


def demo_run_file() -> Path:
    """The built-in demo's run file."""
    return resources_dir() / "demo" / "run.toml"
