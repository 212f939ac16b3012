"""Maths answer: checked with math-verify (GSM8K ####, LaTeX \\boxed{}).

Equal values count, however they are written: 18 = 18.0; 1,080 = 1080; 1/2 = \\frac{1}{2} = 0.5. The
completion's final answer is taken after the last ####, else inside <answer>...</answer>, else
math-verify's own search (\\boxed{} first, then "the answer is", then the last expression).
Ground truths may be GSM8K-style solutions ("... #### 18"), bare numbers or LaTeX.
"""

import logging
import threading

from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify


def _math_text(completion):
    """Completion text: a string, or the content of chat messages."""
    if isinstance(completion, list):
        return "".join(str(m.get("content", "")) for m in completion if isinstance(m, dict))
    return str(completion)


def _math_timeouts():
    # math-verify limits its own time with signal.alarm, which only works in the main thread; elsewhere
    # (a GUI worker thread) run without, and rely on rewards.timeout_s.
    if threading.current_thread() is threading.main_thread():
        return 5, 5
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    return None, None


def _math_final(text):
    if "####" in text:
        return text.rsplit("####", 1)[1].strip()
    if "<answer>" in text and "</answer>" in text:
        return text.rsplit("<answer>", 1)[1].split("</answer>", 1)[0].strip()
    return text


def _math_parse(text, timeout):
    configs = [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]
    parsed = parse(text, extraction_config=configs, parsing_timeout=timeout)
    if not parsed and "$" not in text:
        parsed = parse(f"${text}$", extraction_config=configs, parsing_timeout=timeout)  # bare LaTeX: \\frac12
    return parsed


def math_answer_reward(completions, answer, **kwargs):
    """1.0 when the final answer equals `answer` mathematically, else 0.0; None when the ground truth
    cannot be parsed (the row is skipped rather than punished).

    >>> math_answer_reward(["16 - 3 - 4 = 9 eggs; 9 * 2 = 18\\n#### 18", "#### 19", "#### 1,080"],
    ...                    answer=["Janet sells 9 eggs ... #### 18", "18", "1080"])
    [1.0, 0.0, 1.0]
    >>> math_answer_reward([r"So the answer is $\\boxed{\\frac{1}{2}}$", "<answer>0.5</answer>"],
    ...                    answer=["1/2", r"\\frac12"])
    [1.0, 1.0]
    >>> math_answer_reward(["42"], answer=[None])
    [None]
    """
    parse_timeout, verify_timeout = _math_timeouts()
    scores = []
    for completion, truth in zip(completions, answer):
        gold = _math_parse(_math_final(str(truth)), parse_timeout) if truth is not None else []
        if not gold:
            scores.append(None)
            continue
        predicted = _math_parse(_math_final(_math_text(completion)), parse_timeout)
        scores.append(1.0 if predicted and verify(gold, predicted, timeout_seconds=verify_timeout) else 0.0)
    return scores
