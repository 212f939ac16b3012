"""What differs between runs' frozen run files (and reward files), setting by setting."""

from __future__ import annotations

from grpo_studio.config import load_run
from grpo_studio.engine.run import freeze_run_file
from grpo_studio.engine.run_diff import config_differences, flatten
from grpo_studio.engine.store import RunFolder


def frozen(run_file, folder, overrides):
    folder.mkdir(parents=True)
    freeze_run_file(load_run(run_file, overrides), RunFolder(folder))
    return folder


def test_differences_between_frozen_run_files(run_file, tmp_path):
    a = frozen(run_file, tmp_path / "a", [])
    b = frozen(run_file, tmp_path / "b", ["grpo.learning_rate=5e-4", "lora.r=8", "grpo.beta=0.04"])
    assert config_differences([a, b]) == [("lora.r", ["4", "8"]), ("grpo.learning_rate", ["0.001", "0.0005"]),
                                          ("grpo.beta", ["0", "0.04"])]
    # a setting written out at its default is no difference
    c = frozen(run_file, tmp_path / "c", ["grpo.beta=0.0"])
    assert config_differences([a, c]) == []
    (b / "rewards.py").write_text((b / "rewards.py").read_text() + "\n# tuned\n")
    assert config_differences([a, b, a])[-1] == ("rewards.py", ["15 lines", "2 lines differ", "same as the first"])
    assert flatten({"rewards": {"functions": [{"name": "f", "weight": 1.0}]}}) == {
        "rewards.functions[0].name": "f", "rewards.functions[0].weight": 1.0}
