"""Format: <reasoning>...</reasoning> then <answer>...</answer>.

Two strengths: `strict_format_reward` wants the two blocks and nothing else around them;
`soft_format_reward` only wants them present and in order. Early in training the soft one gives
a signal sooner; the strict one keeps the output easy to parse. Tell the model the format in the
system prompt (data.system_prompt), e.g. "Reason inside <reasoning></reasoning>, then give the
answer inside <answer></answer>."
"""

import re

# Tell the model the format in data.system_prompt, or it has to find it by chance.
_STRICT_FORMAT = re.compile(r"\s*<reasoning>.+?</reasoning>\s*<answer>.+?</answer>\s*", re.DOTALL)
_SOFT_FORMAT = re.compile(r"<reasoning>.*?</reasoning>.*?<answer>.*?</answer>", re.DOTALL)


def _format_text(completion):
    """Completion text: a string, or the content of chat messages."""
    if isinstance(completion, list):
        return "".join(str(m.get("content", "")) for m in completion if isinstance(m, dict))
    return str(completion)


def strict_format_reward(completions, **kwargs):
    """1.0 when the completion is exactly a <reasoning> block then an <answer> block, else 0.0.

    >>> strict_format_reward(["<reasoning>\\n9 * 2 = 18\\n</reasoning>\\n<answer>\\n18\\n</answer>\\n",
    ...                       "<reasoning>9 * 2</reasoning><answer>18</answer> Hope this helps!"])
    [1.0, 0.0]
    """
    return [1.0 if _STRICT_FORMAT.fullmatch(_format_text(c)) else 0.0 for c in completions]


def soft_format_reward(completions, **kwargs):
    """1.0 when a <reasoning> block is followed, anywhere, by an <answer> block, else 0.0.

    >>> soft_format_reward(["Sure! <reasoning>9 * 2</reasoning> so <answer>18</answer> :)", "18"])
    [1.0, 0.0]
    """
    return [1.0 if _SOFT_FORMAT.search(_format_text(c)) else 0.0 for c in completions]
