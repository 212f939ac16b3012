"""The run file's format version, and the migrations that keep old run files opening.

A run file carries `schema_version` (files written before versions existed are version 1). When a
setting is renamed, moved or changes meaning, RUN_FILE_VERSION goes up by one and a migration is
added that turns a file of the old version into the new one, on the parsed TOML, before it is
validated:

    MIGRATIONS[1] = lambda data: rename_setting(data, "grpo.max_steps", "grpo.total_steps")

Every run folder keeps its run file (config.toml), and resume, eval, export and the Runs page read it
again, so without this the first rename would make every earlier run folder unreadable. A file from
a newer GRPO Studio is refused with a message that says so, not with a list of unknown settings.
"""

from __future__ import annotations

from typing import Any, Callable

from grpo_studio.config.settings import ConfigError, ConfigProblem

RUN_FILE_VERSION = 1
VERSION_KEY = "schema_version"

# MIGRATIONS[n]: a version-n run file (parsed TOML) -> the same run as a version n+1 file.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


def rename_setting(data: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    """Move `section.key` to its new path (sections are created as needed; a missing key is fine).

    >>> rename_setting({"grpo": {"max_steps": 9}}, "grpo.max_steps", "run.total_steps")
    {'grpo': {}, 'run': {'total_steps': 9}}
    """
    *old_sections, old_key = old.split(".")
    node: Any = data
    for part in old_sections:
        node = node.get(part) if isinstance(node, dict) else None
    if not isinstance(node, dict) or old_key not in node:
        return data
    value = node.pop(old_key)
    *new_sections, new_key = new.split(".")
    target = data
    for part in new_sections:
        target = target.setdefault(part, {})
    target[new_key] = value
    return data


def upgrade(data: dict[str, Any], source: str = "run file") -> dict[str, Any]:
    """A parsed run file of any known version as the current version (its version key removed)."""
    version = data.pop(VERSION_KEY, 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ConfigError([ConfigProblem(VERSION_KEY, f"must be a whole number >= 1, got {version!r}")], source)
    if version > RUN_FILE_VERSION:
        raise ConfigError([ConfigProblem(
            VERSION_KEY, f"{source} was written by a newer GRPO Studio (run file version {version}; this version "
                         f"reads up to {RUN_FILE_VERSION}): update GRPO Studio to open it")], source)
    while version < RUN_FILE_VERSION:
        data = MIGRATIONS[version](data)
        version += 1
    return data


def stamp(data: dict[str, Any]) -> dict[str, Any]:
    """The run file's data with the current version first."""
    return {VERSION_KEY: RUN_FILE_VERSION, **data}
