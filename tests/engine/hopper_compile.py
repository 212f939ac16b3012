"""What a Triton kernel compiled for sm_90 uses, read with Triton's own cuobjdump (no GPU needed)."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from typing import Any


def resource_usage(kernel: Any) -> dict[str, int]:
    """REG, STACK and LOCAL of a `triton.compile`d kernel: registers a thread, and spills (STACK, LOCAL)."""
    import triton

    cuobjdump = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(kernel.asm["cubin"])
        f.flush()
        report = subprocess.run([cuobjdump, "--dump-resource-usage", f.name], capture_output=True, text=True,
                                check=True).stdout
    return {k: int(v) for k, v in re.findall(r"(REG|STACK|LOCAL):(\d+)", report)}
