"""Is a checkpoint or an adapter whole? Cheap checks that catch truncated, emptied and foreign files.

A file cut short by a crash or a full disk is what these checks are for: JSON must parse,
safetensors headers must cover the file (safetensors checks that on open), and PyTorch's `.pt` /
`.bin` / `.pth` files (zip archives) must have their central directory, which sits at the end of
the file. A flipped byte in the middle of a tensor is not caught; nothing short of reading every
byte would.

    adapter_problem(folder)      -> None, or what is wrong ("adapter_model.safetensors is truncated ...")
    checkpoint_problem(folder)   -> the same for a trainer checkpoint (adapter + optimizer + state)
    loadable_checkpoint(folder)  -> the newest checkpoint that passes, and the newer ones that did not
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from grpo_studio.engine.error_text import first_line
from grpo_studio.engine.store import RunFolder

ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


def _json_problem(path: Path, required: str) -> str | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return f"{path.name} is missing"
    except (UnicodeDecodeError, json.JSONDecodeError):
        return f"{path.name} is damaged (not valid JSON)"
    except OSError as exc:
        return f"{path.name} cannot be read ({exc.strerror})"
    if not isinstance(data, dict) or required not in data:
        return f"{path.name} is not what it should be (no {required!r})"
    return None


def _safetensors_problem(path: Path) -> str | None:
    from safetensors import safe_open

    try:
        with safe_open(str(path), "np") as f:
            f.keys()
    except Exception as exc:  # noqa: BLE001 - SafetensorError and OSError both mean "unusable"
        reason = first_line(exc)
        if "incomplete metadata" in reason or "not fully covered" in reason:
            reason = "truncated"
        return f"{path.name} is damaged ({reason})"
    return None


def _zip_problem(path: Path) -> str | None:
    """PyTorch's save format is a zip archive: a truncated file has lost its central directory."""
    try:
        size = path.stat().st_size
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.header_offset + info.compress_size > size:
                    return f"{path.name} is damaged (truncated)"
    except zipfile.BadZipFile:
        return f"{path.name} is damaged (truncated, or not a PyTorch file)"
    except OSError as exc:
        return f"{path.name} cannot be read ({exc.strerror})"
    return None


def adapter_problem(folder: str | Path) -> str | None:
    """What is wrong with a PEFT adapter folder, or None when it looks whole."""
    folder = Path(folder)
    if not folder.is_dir():
        return "the folder is missing"
    problem = _json_problem(folder / "adapter_config.json", "peft_type")
    if problem:
        return problem
    weights = next((folder / n for n in ADAPTER_WEIGHTS if (folder / n).is_file()), None)
    if weights is None:
        return "adapter_model.safetensors is missing"
    return _safetensors_problem(weights) if weights.suffix == ".safetensors" else _zip_problem(weights)


def checkpoint_problem(folder: str | Path) -> str | None:
    """What is wrong with a trainer checkpoint (checkpoint-N), or None when it looks whole."""
    folder = Path(folder)
    problem = _json_problem(folder / "trainer_state.json", "global_step")
    if problem:
        return problem
    if any((folder / n).exists() for n in ADAPTER_WEIGHTS) or (folder / "adapter_config.json").exists():
        problem = adapter_problem(folder)
        if problem:
            return problem
    for path in sorted(folder.iterdir()):
        if path.suffix == ".safetensors" and not path.name.startswith("adapter_model"):
            problem = _safetensors_problem(path)
        elif path.suffix in (".pt", ".pth", ".bin") and path.name != "adapter_model.bin":
            problem = _zip_problem(path)
        else:
            continue
        if problem:
            return problem
    return None


def loadable_checkpoint(folder: RunFolder) -> tuple[tuple[int, Path] | None, list[tuple[Path, str]]]:
    """The newest complete checkpoint whose files are whole, and the newer ones skipped with why."""
    skipped: list[tuple[Path, str]] = []
    for step, path in reversed(folder.complete_checkpoints()):
        problem = checkpoint_problem(path)
        if problem is None:
            return (step, path), skipped
        skipped.append((path, problem))
    return None, skipped
