"""Push to the hub, against a local stand-in (tests/hub_standin.py), never the network: the export
and its card arrive byte for byte, with the user's stored login; no login, a clear message."""

from __future__ import annotations

import pytest
import tiny
from hub_standin import HubStandIn

from grpo_studio.engine.export import export_adapter
from grpo_studio.engine.hub_push import HubPushError, push_export

TOKEN = "hf_standin_token_for_tests"


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """The stand-in, and huggingface_hub pointed at it as a logged-in user (token file, as `hf auth login` writes)."""
    from huggingface_hub import constants

    (tmp_path / "hf_home").mkdir()
    (tmp_path / "hf_home" / "token").write_text(TOKEN)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "hf_home" / "token"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # the tests' offline switch: this hub is local
    with HubStandIn(tmp_path / "hub", TOKEN) as standin:
        monkeypatch.setattr(constants, "ENDPOINT", standin.url)
        yield standin


@pytest.fixture
def run_dir(run_file, tmp_path):
    return tiny.make_run_folder(run_file, tmp_path / "run")


def test_push_adapter_with_its_card(hub, run_dir, tmp_path, capsys):
    from grpo_studio.cli import main

    assert main(["export", str(run_dir), "--to", str(tmp_path / "exp"), "--push-to-hub", "me/tiny-grpo",
                 "--private"]) == 0
    assert hub.repos == {"me/tiny-grpo": {"private": True}}
    assert hub.commits == [{"repo": "me/tiny-grpo", "summary": "GRPO Studio: adapter export"}]
    assert hub.card_metadata[0]["library_name"] == "peft" and "grpo" in hub.card_metadata[0]["tags"]
    pushed = tmp_path / "hub" / "me" / "tiny-grpo"
    local = tmp_path / "exp"
    assert sorted(p.name for p in pushed.iterdir()) == sorted(p.name for p in local.iterdir())
    for f in local.iterdir():
        assert (pushed / f.name).read_bytes() == f.read_bytes(), f.name
    card = (pushed / "README.md").read_text()
    assert 'AutoPeftModelForCausalLM.from_pretrained("me/tiny-grpo")' in card and "library_name: peft" in card
    assert f"{hub.url}/me/tiny-grpo" in capsys.readouterr().out


def test_no_login_wrong_token_and_bad_repo_id(hub, run_dir, tmp_path, monkeypatch):
    from huggingface_hub import constants

    folder = export_adapter(run_dir, tmp_path / "exp")
    with pytest.raises(HubPushError, match="not a repo id"):
        push_export(folder, "me/has space")
    (tmp_path / "hf_home" / "token").write_text("hf_someone_else")
    with pytest.raises(HubPushError, match=r"refused the stored token \(HTTP 401\): log in again with `hf auth login`"):
        push_export(folder, "me/x")
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "nowhere" / "token"))
    with pytest.raises(HubPushError, match=r"no Hugging Face login: run `hf auth login`"):
        push_export(folder, "me/x")
    assert hub.repos == {} and hub.commits == []
