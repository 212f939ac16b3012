"""Which PyTorch build is installed, and whether this computer can use it, without importing torch.

A bare `pip install` on Linux takes PyTorch from PyPI: the CUDA build, with NVIDIA's libraries as
separate packages (several GB). On a computer without an NVIDIA GPU none of that is used; the CPU
build does the same work from a fraction of the disk. The window tells such a user once, read from
the installed packages' metadata (importing torch would cost the window's start a second or more).
"""

from __future__ import annotations

import importlib.metadata as md
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

CPU_INDEX = "https://download.pytorch.org/whl/cpu"
CPU_BUILD_GB = 0.7  # torch 2.13 +cpu installed (0.2 GB download), measured


@dataclass
class TorchBuild:
    version: str
    cuda: bool  # a CUDA build (version +cuXXX, or NVIDIA library packages beside it)
    size_bytes: int  # torch and the NVIDIA and Triton packages that came with it, as installed
    companions: list[str] = field(default_factory=list)  # those packages' names (for `pip uninstall`)

    @property
    def size_gb(self) -> float:
        return self.size_bytes / 1e9


def _installed_size(dist: md.Distribution) -> int:
    return sum(f.size or 0 for f in (dist.files or []))


def installed_torch(path: list[str] | None = None) -> TorchBuild | None:
    """The installed torch's build and size (None when torch is not installed). `path`: where to look
    (default sys.path, as the import would)."""
    dist = next(iter(md.distributions(name="torch", path=path or sys.path)), None)
    if dist is None:
        return None
    required = set()
    for requirement in dist.requires or []:
        name = requirement.split(";")[0].split("[")[0]
        for sep in "<>=!~ (":
            name = name.split(sep)[0]
        required.add(name.strip().lower().replace("_", "-"))
    companions = []
    size = _installed_size(dist)
    for name in sorted(n for n in required if n.startswith("nvidia-") or n == "triton"):
        other = next(iter(md.distributions(name=name, path=path or sys.path)), None)
        if other is not None:  # required on this platform, and installed
            companions.append(name)
            size += _installed_size(other)
    cuda = "+cu" in dist.version or any(c.startswith("nvidia-") for c in companions)
    return TorchBuild(dist.version, cuda, size, sorted(companions))


def has_nvidia_gpu() -> bool:
    """An NVIDIA driver with a device, as far as can be seen without loading CUDA."""
    if sys.platform.startswith("linux"):
        return Path("/proc/driver/nvidia/version").exists() or any(Path("/dev").glob("nvidia[0-9]*"))
    if sys.platform.startswith("win"):
        return shutil.which("nvidia-smi") is not None
    return False  # macOS: no CUDA


def switch_command(build: TorchBuild) -> str:
    """Replace the CUDA build with the CPU build, removing the NVIDIA packages that came with it."""
    base = build.version.split("+")[0]
    packages = " ".join(["torch", *build.companions])
    return f"pip uninstall -y {packages} && pip install torch=={base} --index-url {CPU_INDEX}"


def cpu_only_notice(build: TorchBuild | None = None, gpu: bool | None = None) -> str | None:
    """What to tell someone who installed the CUDA build on a computer without an NVIDIA GPU, else None."""
    if os.environ.get("GRPO_STUDIO_NO_TORCH_NOTICE"):
        return None
    build = build if build is not None else installed_torch()
    if build is None or not build.cuda or (has_nvidia_gpu() if gpu is None else gpu):
        return None
    return (f"PyTorch's CUDA build is installed ({build.size_gb:.1f} GB with NVIDIA's libraries), but this computer "
            f"has no NVIDIA GPU: training runs on the CPU, which the CPU build ({CPU_BUILD_GB} GB) does just as "
            "well. To switch, run in this environment:")
