"""Who makes the host wait for the GPU: each synchronizing CUDA call of a stretch of code, by its caller.

A `.item()`, a `.tolist()`, `torch.unique` or a copy to pageable host memory waits until the GPU has
drained its queue; after it the GPU idles until the host has launched the next kernels. A profile
counts such waits (step_profile's "waits") but not where they come from. PyTorch's sync debug mode
warns at each one; `SyncCallers` records the Python stack of every such warning and groups them by the
innermost frames outside torch, which name the code that asked (TRL's loss, a metric, our packing).

    callers = SyncCallers(); callers.start(); ...; lines = callers.stop()

`grpo-studio bench` uses it when GRPO_STUDIO_PROFILE_SYNCS=1 (with GRPO_STUDIO_PROFILE_STEP).
"""

from __future__ import annotations

import traceback
import warnings
from typing import Any

SYNC_WARNING = "synchronizing CUDA operation"  # in the text of PyTorch's sync-debug warning
# Frames that say nothing about who asked for the wait.
_SKIPPED = ("/torch/", "/warnings.py", "/engine/sync_callers.py")


class SyncCallers:
    def __init__(self, depth: int = 3) -> None:
        self.depth = depth
        self.calls: dict[tuple[str, ...], int] = {}
        self._saved: tuple[Any, Any, Any] | None = None

    def start(self) -> None:
        import torch

        cuda = torch.cuda.is_available()  # without CUDA nothing synchronizes, and the mode can't be set
        self._saved = (warnings.showwarning, list(warnings.filters), torch.cuda.get_sync_debug_mode() if cuda else None)
        warnings.filterwarnings("always", message=f".*{SYNC_WARNING}.*")  # every call, not once a place
        shown = warnings.showwarning

        def showwarning(message: Any, category: Any, filename: str, lineno: int, *args: Any) -> None:
            if SYNC_WARNING in str(message):
                self.record(traceback.extract_stack())
            else:
                shown(message, category, filename, lineno, *args)

        warnings.showwarning = showwarning
        if cuda:
            torch.cuda.set_sync_debug_mode("warn")

    def record(self, stack: list[traceback.FrameSummary]) -> None:
        """One wait, called from `stack` (outermost frame first, as traceback.extract_stack gives it)."""
        frames = [f"{f.filename.rsplit('/site-packages/', 1)[-1]}:{f.lineno} {f.name}" for f in reversed(stack)
                  if not any(part in f.filename for part in _SKIPPED)]
        key = tuple(frames[:self.depth])
        self.calls[key] = self.calls.get(key, 0) + 1

    def stop(self, top: int = 15) -> list[str]:
        """Restores the warning setup and the debug mode; the waits by caller, most frequent first."""
        import torch

        if self._saved is not None:
            showwarning, filters, mode = self._saved
            if mode is not None:
                torch.cuda.set_sync_debug_mode(mode)
            warnings.showwarning = showwarning
            warnings.filters[:] = filters
            self._saved = None
        rows = sorted(self.calls.items(), key=lambda kv: -kv[1])[:top]
        total = sum(self.calls.values())
        return [f"  synchronizing calls: {total}, by caller (innermost frame first):"] + \
            [f"    {count:5d} x  " + "  <-  ".join(key) for key, count in rows]
