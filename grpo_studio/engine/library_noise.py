"""Quiet the libraries' chatter (deprecation notices, optional-kernel notices, progress bars) so
that what the user sees is our progress and real warnings."""

from __future__ import annotations

import logging
import os
import warnings


def quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    # Renames announced for transformers v6 (gradient_checkpointing -> activation_checkpointing, ...)
    # are TRL's business, not the user's.
    warnings.filterwarnings("ignore", message=r".*is deprecated and will be removed in v6.*")
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\..*")
    # bitsandbytes announces an optional CPU kernel package at import.
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    # "Retrying in 4s [Retry 3/5]" lines: an unreachable hub is found by one short probe instead
    # (engine/hub.py), and a failed download ends with a message that says what to do.
    logging.getLogger("huggingface_hub").setLevel(logging.ERROR)
    try:
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except ImportError:
        pass
