"""Rewards for GSM8K: a correct final number, and the <reasoning>/<answer> format.

TRL signature: `f(prompts, completions, **columns) -> list[float]`. Completions of a chat model
arrive as message lists ([{"role": "assistant", "content": ...}]); `answer` is the ground truth
that data.answer_pattern extracted from GSM8K's "#### 72" line.
"""

import logging
import re
import threading

from math_verify import parse, verify

_ANSWER = re.compile(r"<answer>\s*(.*?)\s*</answer>", re.DOTALL)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_STRICT = re.compile(r"^\s*<reasoning>\n.+?\n</reasoning>\n<answer>\n.+?\n</answer>\s*$", re.DOTALL)
_LOOSE = re.compile(r"<reasoning>.+?</reasoning>\s*<answer>.+?</answer>", re.DOTALL)


def _text(completion):
    """The completion's text, for plain and chat (message list) completions alike."""
    if isinstance(completion, list):
        return completion[-1]["content"] if completion else ""
    return completion


def _final_answer(text):
    """What the model answered: the <answer> block, else the last number it wrote."""
    m = _ANSWER.search(text)
    if m:
        return m.group(1)
    numbers = _NUMBER.findall(text)
    return numbers[-1] if numbers else ""


def _timeout():
    # math-verify times itself with signal.alarm, which works only in the main thread; elsewhere (a GUI
    # worker thread) it runs without, and rewards.timeout_s still bounds the whole call.
    if threading.current_thread() is threading.main_thread():
        return 5
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    return None


def _same_number(predicted, truth):
    """math-verify equivalence (70,000 == 70000, 1/2 == 0.5); plain string equality as a fallback."""
    if not predicted:
        return False
    limit = _timeout()
    try:
        return bool(verify(parse(truth, parsing_timeout=limit), parse(predicted, parsing_timeout=limit),
                           timeout_seconds=limit))
    except Exception:  # math-verify raises on inputs it cannot parse: not equal
        return predicted.strip() == truth.strip()


def correctness_reward(completions, answer, **kwargs):
    """1.0 when the final answer equals the ground truth.

    >>> correctness_reward(["<reasoning>\\n9*2\\n</reasoning>\\n<answer>\\n18\\n</answer>", "so 17"], ["18", "18"])
    [1.0, 0.0]
    >>> correctness_reward([[{"role": "assistant", "content": "It costs $70,000."}]], ["70000"])
    [1.0]
    """
    return [1.0 if truth is not None and _same_number(_final_answer(_text(c)), str(truth)) else 0.0
            for c, truth in zip(completions, answer)]


def format_reward(completions, **kwargs):
    """1.0 for exactly <reasoning>...</reasoning><answer>...</answer> on their own lines, 0.5 for the tags
    in order with other spacing, else 0.

    >>> format_reward(["<reasoning>\\nx\\n</reasoning>\\n<answer>\\n3\\n</answer>\\n", "<reasoning>x</reasoning> <answer>3</answer>", "3"])
    [1.0, 0.5, 0.0]
    """
    out = []
    for c in completions:
        text = _text(c)
        out.append(1.0 if _STRICT.match(text) else 0.5 if _LOOSE.search(text) else 0.0)
    return out
