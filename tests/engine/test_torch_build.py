"""Which PyTorch build is installed, read from package metadata without importing torch."""

from __future__ import annotations

from fake_torch import write_cuda_torch_metadata

from grpo_studio.engine import torch_build


def test_the_cuda_build_is_recognised_with_its_size_and_the_packages_that_came_with_it(tmp_path):
    build = torch_build.installed_torch(path=[str(write_cuda_torch_metadata(tmp_path / "site"))])
    assert build is not None and build.cuda and build.version == "2.13.0"
    assert round(build.size_gb, 2) == 5.35
    assert build.companions == ["nvidia-cublas-cu12", "nvidia-cudnn-cu12", "nvidia-cufft-cu12", "nvidia-cusparse-cu12",
                                "nvidia-nccl-cu12", "triton"]  # not filelock: not NVIDIA's
    notice = torch_build.cpu_only_notice(build, gpu=False)
    assert notice.startswith("PyTorch's CUDA build is installed (5.3 GB with NVIDIA's libraries), but this computer "
                             "has no NVIDIA GPU")
    assert torch_build.cpu_only_notice(build, gpu=True) is None  # with a GPU it is the right build
    assert torch_build.switch_command(build) == (
        "pip uninstall -y torch nvidia-cublas-cu12 nvidia-cudnn-cu12 nvidia-cufft-cu12 nvidia-cusparse-cu12 "
        "nvidia-nccl-cu12 triton && pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu")


def test_the_cpu_build_and_no_torch_say_nothing(tmp_path):
    build = torch_build.installed_torch()  # this environment's: the CPU build (tests and CI install it)
    assert build is not None and not build.cuda and build.version.endswith("+cpu")
    assert torch_build.cpu_only_notice(build, gpu=False) is None
    assert torch_build.installed_torch(path=[str(tmp_path)]) is None
