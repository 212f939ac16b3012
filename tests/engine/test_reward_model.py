"""A sequence-classification model as a reward: scored like TRL scores it, in the bench and in training."""

from __future__ import annotations

from pathlib import Path

import pytest

import tiny
from grpo_studio.config import load_run
from grpo_studio.engine.events import Failed, Finished
from grpo_studio.engine.model import ModelError
from grpo_studio.engine.reward_model import RewardModelFunction, load_reward_model, reward_model_texts
from grpo_studio.engine.run import train
from grpo_studio.engine.store import RunFolder, RunStore


@pytest.fixture(scope="module")
def judge(tmp_path_factory) -> Path:
    """A tiny Llama with a one-logit classification head (random weights) and the char tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification

    torch.manual_seed(0)
    tok = tiny.build_tokenizer()
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256, num_labels=1,
                         pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    folder = tmp_path_factory.mktemp("judge") / "judge"
    LlamaForSequenceClassification(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def with_judge(run_file: Path, judge: Path) -> list[str]:
    return [f'rewards.functions=[{{name = "correctness_reward"}}, {{model = "{judge}", weight = 0.5}}]']


def test_scores_match_the_models_first_logit(run_file, judge):
    import torch

    run = load_run(run_file, with_judge(run_file, judge))
    rm = load_reward_model(run, str(judge), "judge")
    fn = RewardModelFunction(rm, batch_size=2)
    prompts, completions = ["1+1=", "2+2=", "3+3="], ["2", "five", "6<eos>"]
    scores = fn(prompts, completions)
    assert fn.__name__ == "judge" and len(scores) == 3
    with torch.inference_mode():  # one at a time, no padding: the same numbers
        for p, c, s in zip(prompts, completions, scores):
            ids = rm.tokenizer(text=p + c, return_tensors="pt", add_special_tokens=False)
            assert rm.model(**ids).logits[0, 0].item() == pytest.approx(s, abs=1e-5)
    chat = reward_model_texts([[{"role": "user", "content": "1+1="}]], [[{"role": "assistant", "content": "2"}]],
                              tiny.build_tokenizer(tiny.CHAT_TEMPLATE))
    assert chat == ["<user>1+1=\n<assistant>2\n"]


def test_a_bad_reward_model_path_names_its_setting(run_file):
    run = load_run(run_file, ['rewards.functions=[{name = "correctness_reward"}, {model = "./no-such-judge"}]'])
    with pytest.raises(ModelError) as info:
        load_reward_model(run, "./no-such-judge", "no-such-judge")
    assert str(info.value).startswith("rewards.functions[1].model: folder not found:")
    result = train(run)
    assert isinstance(result, Failed) and result.input_error
    assert result.reason.startswith("rewards.functions[1].model: folder not found:")


def test_the_bench_and_training_use_the_reward_model(run_file, judge):
    from grpo_studio.engine.reward_bench import TypedCompletion, run_bench

    run = load_run(run_file, with_judge(run_file, judge))
    report = run_bench(run, completions=[TypedCompletion("3", row=0), TypedCompletion("9", row=0)])
    assert [f.name for f in report.functions] == ["correctness_reward", "judge"]
    scores = report.functions[1].scores[0]
    assert len(scores) == 2 and scores[0] != scores[1]
    assert report.functions[1].file is None  # a model has no source line

    result = train(run_file, overrides=with_judge(run_file, judge) + ["grpo.max_steps=2"])
    assert isinstance(result, Finished), result
    with RunStore(RunFolder(Path(result.adapter_dir).parent), readonly=True) as store:
        curve = store.metrics(["rewards/judge/mean"])["rewards/judge/mean"]
        assert curve[0] == [1, 2] and all(v is not None for v in curve[1])
