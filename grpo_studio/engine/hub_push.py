"""Push an export (adapter, merged model or GGUF folder, with its model card) to the Hugging Face Hub.

Off unless asked for. It uses the token of the user's own Hugging Face login, as huggingface_hub
stores it (`hf auth login`, or the HF_TOKEN variable): GRPO Studio never asks for, keeps or
prints a token. The endpoint is huggingface_hub's (HF_ENDPOINT), so a private hub works too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from grpo_studio.engine.error_text import first_line

Progress = Callable[[str, float], None]  # (what is happening, fraction done 0..1)


class HubPushError(Exception):
    pass


def export_kind(folder: Path) -> str:
    """What an export folder holds: 'gguf', 'adapter' or 'merged'."""
    if any(folder.glob("*.gguf")):
        return "gguf"
    return "adapter" if (folder / "adapter_config.json").is_file() else "merged"


def push_problem(repo_id: str) -> str | None:
    """Why a push to REPO_ID cannot start here (a bad repo id, offline mode, no login), or None.
    Checked before an export, so a long export does not end in "but not pushed"."""
    from huggingface_hub import constants, get_token
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        return (f"--push-to-hub {repo_id!r}: not a repo id ({first_line(exc)}); write "
                "user-or-org/name")
    if constants.is_offline_mode():
        return "HF_HUB_OFFLINE is set: unset it to push to the hub"
    if not get_token():
        return ("no Hugging Face login: run `hf auth login` (or set HF_TOKEN to a token with write "
                "access), then push again")
    return None


def push_export(folder: str | Path, repo_id: str, *, run_dir: str | Path | None = None, private: bool = False,
                endpoint: str | None = None, progress: Progress | None = None) -> str:
    """Upload an export folder to the model repo REPO_ID (created if missing) and return its URL.

    With `run_dir`, the folder's model card is written again first, its loading examples now
    pointing at REPO_ID."""
    from huggingface_hub import HfApi, get_token
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    folder = Path(folder)
    say = progress or (lambda what, fraction: None)
    if not folder.is_dir() or not any(folder.iterdir()):
        raise HubPushError(f"{folder}: nothing to push (not an export folder)")
    problem = push_problem(repo_id)
    if problem:
        raise HubPushError(problem)
    token = get_token()
    kind = export_kind(folder)
    if run_dir is not None:
        from grpo_studio.engine.model_card import write_model_card

        gguf = next((p.name for p in sorted(folder.glob("*.gguf"))), None)
        write_model_card(folder, run_dir, kind, gguf_file=gguf, repo_id=repo_id)  # type: ignore[arg-type]
    api = HfApi(endpoint=endpoint, token=token)
    try:
        say(f"creating {repo_id} on {api.endpoint}" + (" (private)" if private else ""), 0.05)
        url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        say(f"uploading {folder.name}", 0.2)
        api.upload_folder(folder_path=str(folder), repo_id=url.repo_id, repo_type="model",
                          commit_message=f"GRPO Studio: {kind} export")
    except OfflineModeIsEnabled:
        raise HubPushError("HF_HUB_OFFLINE is set: unset it to push to the hub") from None
    except HfHubHTTPError as exc:
        raise HubPushError(_explain(exc, repo_id)) from None
    except OSError as exc:  # no connection, DNS, TLS
        raise HubPushError(f"cannot reach {api.endpoint}: {exc}") from None
    say(f"pushed to {url}", 1.0)
    return str(url)


def _explain(exc: Any, repo_id: str) -> str:
    status = getattr(getattr(exc, "response", None), "status_code", None)
    first = first_line(exc)
    if status == 401:
        return "the hub refused the stored token (HTTP 401): log in again with `hf auth login`"
    if status == 403:
        return f"no write access to {repo_id} (HTTP 403): check the namespace, or use a token with write access"
    return f"the hub refused the push of {repo_id}: {first}"
