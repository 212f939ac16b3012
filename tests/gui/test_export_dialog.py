"""The Export dialog's GGUF file and hub push, in a child process with progress and Cancel; what is
missing (the gguf package, a Hugging Face login) is said before anything starts."""

from __future__ import annotations

import pytest
import tiny
from hub_standin import HubStandIn

from conftest import shot

TOKEN = "hf_standin_token_for_tests"


@pytest.fixture
def run_dir(run_file, tmp_path):
    return tiny.make_run_folder(run_file, tmp_path / "run")


@pytest.fixture
def dialog(window, run_dir, qtbot):
    from grpo_studio.gui.export_dialog import ExportDialog

    d = ExportDialog(run_dir, window)
    qtbot.addWidget(d)
    d.show()
    return d


def export(qtbot, dialog, timeout=240000) -> str:
    with qtbot.waitSignal(dialog.finished_export, timeout=timeout) as ended:
        dialog.export_button.click()
    return ended.args[0]


def test_gguf_export_with_cancel_and_its_quantization_type(dialog, run_dir, tmp_path, qtbot):
    assert dialog.gguf.isEnabled() and not dialog.gguf_type.isEnabled()
    dialog.gguf.setChecked(True)
    assert dialog.gguf_type.isEnabled() and dialog.dest.text() == str(run_dir / "export-gguf")
    dialog.gguf_type.setCurrentText("q8_0")

    dialog.export_button.click()  # Cancel: the child ends now, nothing is left behind
    assert dialog.cancel_button.isVisible() and not dialog.close_button.isVisible()
    dialog.reject()  # closing mid-export is refused: Cancel is the way out
    qtbot.waitUntil(lambda: bool(list(run_dir.glob(".export-gguf.partial-*"))), timeout=60000)  # it is writing
    child = dialog.task.state.child
    assert child.running()
    with qtbot.waitSignal(dialog.finished_export, timeout=10000) as ended:
        dialog.cancel_button.click()
    assert ended.args[0] == "cancelled" and dialog.status.text() == "Export cancelled."
    qtbot.waitUntil(lambda: not child.running(), timeout=30000)  # the child is gone, then its staging folder
    qtbot.waitUntil(lambda: not list(run_dir.glob(".export-gguf.partial-*")), timeout=30000)
    assert not (run_dir / "export-gguf").exists()
    assert dialog.export_button.isEnabled() and dialog.close_button.isVisible()

    assert export(qtbot, dialog) == "done"
    written = run_dir / "export-gguf" / "tiny-q8_0.gguf"
    assert dialog.result_path == written and written.is_file()
    assert "tiny-q8_0.gguf" in (run_dir / "export-gguf" / "README.md").read_text()  # its model card
    assert dialog.progress.value() == 100 and dialog.show_button.isVisible()
    import gguf

    reader = gguf.GGUFReader(str(written))
    assert any(t.tensor_type == gguf.GGMLQuantizationType.Q8_0 for t in reader.tensors)


def test_push_to_the_hub_with_the_users_login(dialog, run_dir, tmp_path, qtbot, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # the dialog checks in the window's process,
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # the child in its own
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "nowhere" / "token"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    dialog.push.setChecked(True)  # no login yet: said at once, and nothing starts
    assert "No Hugging Face login on this machine: run `hf auth login`" in dialog.push_note.text()
    dialog.repo.setText("me/tiny-grpo")
    assert export(qtbot, dialog) == "failed" and not dialog.task.is_running()
    assert "not pushed: no Hugging Face login" in dialog.status.text()

    with HubStandIn(tmp_path / "hub", TOKEN) as hub:
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        dialog.push.setChecked(False)
        dialog.push.setChecked(True)
        assert dialog.push_note.text().startswith("Uses your Hugging Face login")
        dialog.private.setChecked(True)
        dialog.dest.setText(str(tmp_path / "exp"))
        assert export(qtbot, dialog) == "done"
    assert hub.repos == {"me/tiny-grpo": {"private": True}}
    assert (tmp_path / "hub" / "me" / "tiny-grpo" / "adapter_config.json").is_file()
    assert f"pushed to <a href='{hub.url}/me/tiny-grpo'>" in dialog.status.text()
    shot(dialog, "export-pushed")


def test_without_the_gguf_package_the_choice_says_how_to_get_it(window, run_dir, qtbot, monkeypatch):
    from grpo_studio.gui import export_dialog

    monkeypatch.setattr(export_dialog, "gguf_installed", lambda: False)
    dialog = export_dialog.ExportDialog(run_dir, window)
    qtbot.addWidget(dialog)
    assert not dialog.gguf.isEnabled()
    assert "GGUF not available: GGUF export needs the gguf package: pip install 'grpo-studio[gguf]'" in \
        dialog.note.text()
