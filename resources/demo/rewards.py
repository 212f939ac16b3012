"""Reward functions for the demo's addition task.

Both functions use TRL's reward-function signature: they receive the batch's
prompts and completions (plain strings, since the dataset is not conversational)
plus every extra dataset column as a keyword argument, and return one float per
completion.

The expected completion format is::

    <r>7+5=12;4+8+1=13;3+2+1=6</r><a>632</a>

Correctness alone is the goal; the format reward is a small shaping term that
rewards the tidy, parseable shape (and shows a second curve rising in the demo).
"""

import re

# The answer is the first <a>...</a> block; a sloppy completion without the
# closing tag has no parseable answer and earns no correctness reward.
_ANSWER_RE = re.compile(r"<a>\s*(-?\d+)\s*</a>")
_REASONING_RE = re.compile(r"<r>[^<>]*</r>")
_WELL_FORMED_RE = re.compile(r"<r>[^<>]*</r><a>\d+</a>")


def _extract_answer(text):
    """Return the integer inside the first <a>...</a>, or None if there is none."""
    match = _ANSWER_RE.search(text)
    return int(match.group(1)) if match else None


def correctness_reward(prompts, completions, answer, **kwargs) -> list[float]:
    """1.0 when the number inside <a>...</a> equals the ground-truth answer, else 0.0.

    >>> correctness_reward(
    ...     ["347+285="] * 4,
    ...     ["<r>7+5=12;4+8+1=13;3+2+1=6</r><a>632</a>",
    ...      "<r>7+5=12;4+8=12;3+2=5</r><a>522</a>",
    ...      "<r>7+5=12;4+8+1=13;3+2+1=6</r><a>632",
    ...      "632"],
    ...     answer=["632"] * 4)
    [1.0, 0.0, 0.0, 0.0]
    """
    rewards = []
    for completion, truth in zip(completions, answer):
        predicted = _extract_answer(completion)
        rewards.append(1.0 if predicted is not None and predicted == int(str(truth).strip()) else 0.0)
    return rewards


def format_reward(prompts, completions, **kwargs) -> list[float]:
    """1.0 for exactly ``<r>...</r><a>digits</a>`` with nothing around it; partial credit otherwise.

    A reasoning block and an answer block earn 0.25 each when the completion as
    a whole is not well formed (e.g. a missing tag or trailing text).

    >>> format_reward(
    ...     ["1+2="] * 5,
    ...     ["<r>1+2=3</r><a>3</a>",
    ...      "<r>1+2=3</r><a>3</a> done",
    ...      "<r>1+2=3</r><a>3",
    ...      "1+2=3<a>3</a>",
    ...      "3"])
    [1.0, 0.5, 0.25, 0.25, 0.0]
    """
    rewards = []
    for completion in completions:
        text = completion.strip()
        if _WELL_FORMED_RE.fullmatch(text):
            rewards.append(1.0)
            continue
        score = 0.0
        if _REASONING_RE.search(text):
            score += 0.25
        if _ANSWER_RE.search(text):
            score += 0.25
        rewards.append(score)
    return rewards
