"""XML tag counting: partial credit per tag, to learn the format step by step.

Each of <reasoning>, </reasoning>, <answer>, </answer> that appears exactly once is worth 0.125
(0.5 for all four); text after </answer> costs 0.001 per character, so the model learns to stop.
Pairs well with the format and answer templates.
"""

_XML_TAGS = ("<reasoning>", "</reasoning>", "<answer>", "</answer>")


def _xml_text(completion):
    """Completion text: a string, or the content of chat messages."""
    if isinstance(completion, list):
        return "".join(str(m.get("content", "")) for m in completion if isinstance(m, dict))
    return str(completion)


def xml_count_reward(completions, **kwargs):
    """0.125 per tag used exactly once, minus 0.001 per character after </answer>.

    >>> xml_count_reward(["<reasoning>9 * 2</reasoning><answer>18</answer>",
    ...                   "<reasoning>9 * 2</reasoning>",
    ...                   "<reasoning>x</reasoning><answer>18</answer>" + "!" * 100,
    ...                   "18"])
    [0.5, 0.25, 0.4, 0.0]
    """
    scores = []
    for completion in completions:
        text = _xml_text(completion)
        score = 0.125 * sum(text.count(tag) == 1 for tag in _XML_TAGS)
        if text.count("</answer>") == 1:
            score -= 0.001 * len(text.split("</answer>", 1)[1].strip())
        scores.append(round(score, 6))
    return scores
