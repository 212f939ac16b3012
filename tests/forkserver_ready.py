"""Imported last by the fault tests' forkserver (tests/fault_runner.py), after torch, transformers and TRL.

gc.freeze() moves every object made so far out of the garbage collector's sight, so a forked child's
collections (accelerate calls gc.collect() at the end of every run) no longer walk, and copy, the
whole preloaded heap: the documented use of gc.freeze before fork."""

import gc

gc.freeze()
