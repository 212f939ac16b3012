"""The sample report's per-completion facts: lengths and truncation, read from TRL's output tensors."""

from __future__ import annotations

from collections import deque
from types import SimpleNamespace

import torch

from grpo_studio.engine.trainer import StudioGRPOTrainer


def test_lengths_and_truncation_come_from_each_completions_last_token(monkeypatch):
    import accelerate.utils

    monkeypatch.setattr(accelerate.utils, "gather_object", lambda values: list(values))
    trainer = StudioGRPOTrainer.__new__(StudioGRPOTrainer)  # the report alone, no model
    reported = []
    trainer.on_samples = reported.append
    trainer.eos_token_ids = [2]
    trainer.num_generations = 2
    trainer.samples_per_step = 0
    trainer.accelerator = SimpleNamespace(is_main_process=True)
    trainer.reward_func_names = ["correct"]
    trainer.reward_weights = torch.tensor([1.0])
    trainer.state = SimpleNamespace(global_step=4)
    trainer._logs = {"prompt": deque(["p0", "p0", "p1", "p1"]), "completion": deque(["a", "b", "c", "d"]),
                     "advantages": deque([0.5, -0.5, 0.0, 0.0]),
                     "rewards": {"correct": deque([1.0, 0.0, float("nan"), 1.0])}}
    ids = torch.tensor([[5, 6, 2, 0],  # ended at EOS (2) after 3 tokens
                        [5, 6, 7, 8],  # ran to the limit: truncated
                        [9, 0, 0, 0],  # one token, no EOS: truncated
                        [0, 0, 0, 0]])  # empty
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1], [1, 0, 0, 0], [0, 0, 0, 0]])
    trainer._report_samples([{"answer": a} for a in ("1", "1", None, None)],
                            {"completion_ids": ids, "completion_mask": mask})
    (report,) = reported
    assert report.step == 5
    assert [s.length for s in report.samples] == [3, 4, 1, 0]
    assert [s.truncated for s in report.samples] == [False, True, True, False]
    assert [s.group for s in report.samples] == [0, 0, 1, 1]
    assert report.samples[2].rewards == {"correct": None} and report.samples[2].total is None
    assert report.samples[0].answer == "1" and report.samples[3].answer is None
