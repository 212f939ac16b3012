"""SyncCallers: the synchronizing calls of a stretch of code, grouped by the code that made them."""

from __future__ import annotations

import warnings

from grpo_studio.engine.sync_callers import SyncCallers


def metric_item():
    # What PyTorch's sync debug mode does at a `.item()` on a CUDA tensor.
    warnings.warn("called a synchronizing CUDA operation", UserWarning)


def loss():
    metric_item()


def test_waits_are_counted_by_their_callers_and_other_warnings_still_show():
    before_show, before_filters = warnings.showwarning, list(warnings.filters)
    shown = []
    warnings.showwarning = lambda message, *rest: shown.append(str(message))
    try:
        callers = SyncCallers(depth=2)
        callers.start()
        for _ in range(3):
            loss()  # every call counts, not only the first at a place
        metric_item()
        warnings.warn("something else", UserWarning)
        lines = callers.stop()
        assert shown == ["something else"]  # passed through to the showwarning in place before
        assert warnings.showwarning is not before_show  # the test's own hook is back
        assert lines[0] == "  synchronizing calls: 4, by caller (innermost frame first):"
        first, second = lines[1], lines[2]
        assert first.startswith("        3 x  ") and "metric_item  <-  " in first and first.endswith(" loss")
        assert second.startswith("        1 x  ") and "test_waits_are_counted_by_their_callers" in second
        warnings.warn("called a synchronizing CUDA operation", UserWarning)  # after stop: not counted
        assert sum(callers.calls.values()) == 4
    finally:
        warnings.showwarning = before_show
        warnings.filters[:] = before_filters
