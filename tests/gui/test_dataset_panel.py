"""Dataset page: real column names to choose from, and the first rows as the model will see them."""

from __future__ import annotations

import tiny
from conftest import shot


def test_columns_and_preview_with_system_prompt_and_chat_template(window, tmp_path, tiny_chat_model, qtbot):
    run_file = tiny.write_run(tmp_path / "project", tiny_chat_model)
    assert window.open_path(run_file)
    window.doc.set_field("data.system_prompt", "Answer with a number.")
    view = window.dataset_view
    window.show_view("dataset")  # the preview loads only when the page is shown
    qtbot.waitUntil(lambda: bool(view.columns) and not view.is_loading() and "<system>" in view.preview.toPlainText(),
                    timeout=60000)
    combo = view.prompt_column.combo
    assert [combo.itemText(i) for i in range(combo.count())] == ["question", "answer"]
    answer_combo = view.answer_column.combo
    assert [answer_combo.itemText(i) for i in range(answer_combo.count())] == ["(none)", "question", "answer"]
    text = view.preview.toPlainText()
    first = (run_file.parent / "train.jsonl").read_text().splitlines()[0]
    question = first.split('"question": "')[1].split('"')[0]
    # The tiny tokenizer's chat template: <role>content lines, then the generation prompt.
    assert f"<system>Answer with a number.\n<user>{question}\n<assistant>" in text
    assert "64 rows" in view.status.text() and "chat template applied" in view.status.text()
    shot(window, "dataset-preview")


def test_unknown_column_is_marked_at_its_field_with_the_real_columns(opened, qtbot):
    view = opened.dataset_view
    opened.show_view("dataset")
    qtbot.waitUntil(lambda: bool(view.columns) and not view.is_loading(), timeout=60000)
    view.prompt_column.combo.setEditText("questoin")
    row = view.rows["data.prompt_column"]
    qtbot.waitUntil(lambda: row.error.isVisible(), timeout=30000)
    assert row.error.text() == "no column 'questoin' (data.prompt_column); columns are: question, answer"
    opened.actions["train"].trigger()
    assert not opened.controller.is_active()
    view.prompt_column.combo.setCurrentText("question")  # picked from the list: fixed
    qtbot.waitUntil(lambda: not row.error.isVisible() and not view.is_loading(), timeout=30000)
    assert "Row 1" in view.preview.toPlainText()


def test_missing_file_is_reported_at_the_source_field(opened, qtbot):
    view = opened.dataset_view
    opened.show_view("dataset")
    opened.doc.set_field("data.source", "nope.jsonl")
    row = view.rows["data.source"]
    qtbot.waitUntil(lambda: row.error.isVisible(), timeout=30000)
    assert row.error.text().startswith("file not found:") and row.error.text().endswith("nope.jsonl")
