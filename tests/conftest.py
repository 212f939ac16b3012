"""Shared fixtures. Tests never download: models are built here, data lies in tests/data."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Tiny models run fastest on one thread, and two test processes on two cores must not fight.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

TESTS = Path(__file__).parent
sys.path.insert(0, str(TESTS))

import tiny  # noqa: E402

DATA = TESTS / "data"


@pytest.fixture(autouse=True)
def _own_data_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own user data folder (runs of built-in run files, the list of runs made):
    nothing read from or written to the user's."""
    data = tmp_path_factory.mktemp("user-data")
    monkeypatch.setenv("GRPO_STUDIO_DATA_DIR", str(data))
    return data


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny.build_model(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(scope="session")
def tiny_chat_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny.build_model(tmp_path_factory.mktemp("models") / "tiny-chat", chat=True)


@pytest.fixture
def run_file(tmp_path: Path, tiny_model: Path) -> Path:
    """A complete, valid run file for a 3-step CPU run (tests/tiny.py)."""
    return tiny.write_run(tmp_path / "project", tiny_model)


@pytest.fixture
def gsm8k_sample() -> Path:
    return DATA / "gsm8k_test_sample.jsonl"


@pytest.fixture(scope="session")
def fault_project(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Path:
    """The run file of the fault-injection tests (tests/fault_checks.py); never written to by a test."""
    import fault_checks

    return fault_checks.write_fault_project(tmp_path_factory.mktemp("fault") / "project", tiny_model)


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory: pytest.TempPathFactory, fault_project: Path) -> Path:
    """A finished 4-step run of fault_project (checkpoints 2 and 4); tests copy it before damaging it."""
    import fault_checks
    import fault_runner

    folder = tmp_path_factory.mktemp("finished") / "run"
    outcome = fault_runner.cli("train", str(fault_project), "--output", str(folder), *fault_checks.RUN_SETTINGS)
    assert outcome.rc == 0, outcome
    fault_checks.assert_whole_run(folder)
    return folder


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto`: one worker per core this process may use, at most four (each holds torch, TRL and a
    Qt application; more only adds memory), and no pool at all on one core."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    return min(4, cores) if cores > 1 else 0
