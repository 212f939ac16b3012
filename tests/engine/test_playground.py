"""The playground's session: one generate call answers with the base model and the adapter side by
side, exactly as each would alone (greedy), streamed text adds up to the answers, and the run's
reward functions score them, saying so when a typed prompt has no ground truth."""

from __future__ import annotations

import pytest
import tiny

from grpo_studio.engine.evaluate import EvalError, greedy_generations
from grpo_studio.engine.playground import PlaygroundSession


@pytest.fixture(scope="module")
def session(tiny_model, tmp_path_factory):
    """One session for these tests (loading is what takes time); each leaves it as it found it."""
    folder = tmp_path_factory.mktemp("playground")
    run_dir = tiny.make_run_folder(tiny.write_run(folder / "project", tiny_model), folder / "run", checkpoint_step=2)
    s = PlaygroundSession(run_dir, overrides=["rewards.isolate=false"])
    yield s
    s.close()


def alone(session, prompt, max_tokens):
    """Greedy answers of the base model and of the current adapter, each generated on its own."""
    with session.model.disable_adapter():
        (base,) = greedy_generations(session.model, session.tokenizer, [prompt], max_tokens, 1)
    (tuned,) = greedy_generations(session.model, session.tokenizer, [prompt], max_tokens, 1)
    return base.text, tuned.text


def test_side_by_side_equals_each_model_alone_and_streams_the_same_text(session):
    assert list(session.adapters) == ["adapter", "checkpoint-2"] and session.adapter == "adapter"
    index, text, answer = session.rows()[3]
    streamed = ["", ""]

    def on_text(deltas):
        for i, d in enumerate(deltas):
            streamed[i] += d

    shown, answers = session.sample(text, row=index, max_tokens=8, on_text=on_text)
    prompt, columns = session.prompt_and_columns(text, index)
    assert shown == prompt == text and columns["answer"] == answer  # the row's own ground truth
    assert [a.label for a in answers] == ["base", "adapter"]
    assert [a.text for a in answers] == list(alone(session, prompt, 8))
    assert answers[0].text != answers[1].text  # the adapter changes the answer
    assert streamed == [a.text for a in answers]
    for a in answers:
        assert set(a.rewards) == {"correctness_reward", "length_reward"} and not a.reward_errors
        assert a.rewards["length_reward"] == pytest.approx(-len(a.text) / 32)
        assert a.total == pytest.approx(a.rewards["correctness_reward"] + a.rewards["length_reward"])
        assert 1 <= a.tokens <= 8

    session.use_adapter("checkpoint-2")
    _, answers = session.sample(text, row=index, max_tokens=8)
    assert answers[1].label == "checkpoint-2" and answers[1].text == alone(session, prompt, 8)[1]
    session.use_adapter("adapter")
    with pytest.raises(EvalError, match="not an adapter of this run"):
        session.use_adapter("checkpoint-9")


def test_a_typed_prompt_scores_with_a_typed_answer_and_says_when_there_is_none(session):
    _, answers = session.sample("7+5=", max_tokens=4)
    for a in answers:
        assert a.reward_errors["correctness_reward"].startswith("no ground truth: type the answer")
        assert "length_reward" in a.rewards and a.total is None  # a partial score is no total
    _, answers = session.sample("7+5=", answer="12", max_tokens=4)
    assert all(not a.reward_errors and a.total is not None for a in answers)


def test_stop_ends_both_answers_early(session):
    session.stop.set()  # as the reader thread does when the window says Stop mid-generation

    def stop_at_once(deltas):
        session.stop.set()

    _, answers = session.sample("1+1=", max_tokens=8, on_text=stop_at_once)
    assert all(a.tokens <= 2 and not a.truncated for a in answers)
