"""Length shaping: a growing penalty past a token budget (DAPO's soft overlong penalty).

Completions cut at grpo.max_completion_length have no final answer; this teaches the model to
finish in time without rewarding short, lazy answers. Set MAX_TOKENS to grpo.max_completion_length
and BUFFER_TOKENS to how early the penalty starts. Counts tokens, so it reads `completion_ids`.
"""

MAX_TOKENS = 256  # set to grpo.max_completion_length
BUFFER_TOKENS = 64  # the penalty grows over the last this many tokens


def length_reward(completion_ids, **kwargs):
    """0 up to MAX_TOKENS - BUFFER_TOKENS tokens, then linearly down to -1.0 at MAX_TOKENS and beyond.

    >>> length_reward(completion_ids=[[7] * 100, [7] * 224, [7] * 256, [7] * 300])
    [0.0, -0.5, -1.0, -1.0]
    """
    start = MAX_TOKENS - BUFFER_TOKENS
    return [-min(1.0, (len(ids) - start) / BUFFER_TOKENS) if len(ids) > start else 0.0 for ids in completion_ids]
