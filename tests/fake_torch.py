"""Package metadata of PyTorch's CUDA build from PyPI (torch + NVIDIA libraries), without the files:
for the notice a CPU-only user gets. Nothing is importable from it; only importlib.metadata sees it."""

from __future__ import annotations

from pathlib import Path

# name -> (version, installed bytes): sizes of the CUDA 12.8 wheels of torch 2.13 on Linux, rounded.
CUDA_BUILD = {
    "torch": ("2.13.0", 1_700_000_000),
    "nvidia-cublas-cu12": ("12.8.4.1", 800_000_000),
    "nvidia-cudnn-cu12": ("9.10.2.21", 1_100_000_000),
    "nvidia-cusparse-cu12": ("12.5.8.93", 400_000_000),
    "nvidia-nccl-cu12": ("2.27.3", 450_000_000),
    "nvidia-cufft-cu12": ("11.3.3.83", 300_000_000),
    "triton": ("3.5.0", 600_000_000),
}


def write_cuda_torch_metadata(site: Path) -> Path:
    """dist-info folders for a CUDA build of torch in `site` (put it first on sys.path / PYTHONPATH)."""
    for name, (version, size) in CUDA_BUILD.items():
        info = site / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir(parents=True, exist_ok=True)
        requires = ""
        if name == "torch":
            requires = "".join(f"Requires-Dist: {other}=={v}; platform_system == \"Linux\"\n"
                               for other, (v, _) in CUDA_BUILD.items() if other != "torch")
            requires += "Requires-Dist: filelock\n"
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n{requires}")
        (info / "RECORD").write_text(f"{name.replace('-', '_')}/lib.so,sha256=x,{size}\n{info.name}/METADATA,,\n")
    return site
