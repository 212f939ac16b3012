"""Exact answer: 1.0 when the final answer equals the ground truth.

Case and spacing aside. For short factual answers (a name, a word, a label, a number written one
way). The final answer is the text inside <answer>...</answer>, else the text after the last ####,
else the last line.
Use the math-verify template for numbers and formulas that can be written several ways.
"""

import re

_EXACT_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def _exact_text(completion):
    """Completion text: a string, or the content of chat messages."""
    if isinstance(completion, list):
        return "".join(str(m.get("content", "")) for m in completion if isinstance(m, dict))
    return str(completion)


def _exact_final(text):
    tags = _EXACT_TAG.findall(text)
    if tags:
        return tags[-1]
    if "####" in text:
        return text.rsplit("####", 1)[1]
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _exact_normal(text):
    """Casefold, collapse spaces, drop surrounding quotes and a final full stop."""
    text = " ".join(str(text).split()).casefold()
    return text.strip("\"'`").rstrip(".").strip()


def exact_answer_reward(completions, answer, **kwargs):
    """1.0 when the completion's final answer equals `answer`, else 0.0; None for rows without one.

    >>> exact_answer_reward(["<reasoning>capital</reasoning><answer> Paris </answer>", "It is Lyon."],
    ...                     answer=["paris", "Paris"])
    [1.0, 0.0]
    >>> exact_answer_reward(["9 * 2 = 18\\n#### 18", "Answer:\\n18."], answer=["18", None])
    [1.0, None]
    """
    scores = []
    for completion, truth in zip(completions, answer):
        if truth is None or not str(truth).strip():
            scores.append(None)  # no ground truth: skip, rather than punish
            continue
        final = _exact_final(_exact_text(completion))
        scores.append(1.0 if _exact_normal(final) == _exact_normal(truth) else 0.0)
    return scores
