"""Reward editor: syntax errors marked as you type, templates, the list of functions and weights."""

from __future__ import annotations

import ast

from PySide6.QtCore import Qt
from PySide6.QtGui import QTextCursor

from conftest import shot
from grpo_studio.gui.reward_templates import BUILTIN, list_templates, merge_template


def type_text(qtbot, editor, text: str) -> None:
    """Type like a user: QTest cannot click a newline, so Return is pressed between lines."""
    for i, line in enumerate(text.split("\n")):
        if i:
            qtbot.keyClick(editor, Qt.Key.Key_Return)
        if line:
            qtbot.keyClicks(editor, line)


def type_at_end(qtbot, editor, text: str) -> None:
    cursor = editor.textCursor()
    cursor.movePosition(QTextCursor.MoveOperation.End)
    editor.setTextCursor(cursor)
    type_text(qtbot, editor, text)


def test_syntax_error_is_marked_at_its_line_as_you_type(opened, qtbot):
    view = opened.rewards_view
    opened.show_view("rewards")
    editor = view.editor
    lines_before = editor.blockCount()
    assert editor.error_line == 0 and view.syntax_label.text().startswith("✓")
    type_at_end(qtbot, editor, "\ndef broken_reward(completions:\n")
    qtbot.waitUntil(lambda: editor.error_line != 0, timeout=3000)
    assert editor.error_line == lines_before + 1  # the line with the unclosed parenthesis
    assert f"Line {lines_before + 1}: '(' was never closed" in view.syntax_label.text()
    assert opened.doc.problems()["rewards.file"].startswith(f"rewards.py line {lines_before + 1}:")
    shot(opened, "reward-editor-error")

    opened.actions["train"].trigger()  # blocked, and the editor shows where
    assert not opened.controller.is_active()
    assert opened.current_view() == "rewards"
    assert editor.textCursor().blockNumber() + 1 == editor.error_line  # the cursor was taken there

    type_at_end(qtbot, editor, "return [0.0] * len(completions)")  # still broken: the ( is open
    qtbot.wait(400)
    assert editor.error_line == lines_before + 1
    editor.setPlainText(editor.toPlainText().replace("(completions:", "(completions):"))
    qtbot.waitUntil(lambda: editor.error_line == 0, timeout=3000)
    qtbot.waitUntil(lambda: "rewards.file" not in opened.doc.problems(), timeout=3000)


def test_enter_keeps_indentation_and_indents_after_a_colon(opened, qtbot):
    editor = opened.rewards_view.editor
    editor.setPlainText("")
    type_text(qtbot, editor, "def f(x):\nif x:\nreturn x")
    assert editor.toPlainText() == "def f(x):\n    if x:\n        return x"


def test_template_menu_lists_builtins_until_the_folder_has_templates(tmp_path):
    builtins = list_templates(tmp_path / "missing")
    assert [t.key for t in builtins] == list(BUILTIN)
    assert {"correctness_reward", "format_reward", "length_reward", "xml_tags_reward"} == {
        name for t in builtins for name in t.function_names()}
    (tmp_path / "math_answer.py").write_text('"""Math answer: exact match."""\n\ndef math_reward(completions, **kw):\n'
                                            '    return [0.0 for _ in completions]\n')
    (tmp_path / "_helpers.py").write_text("X = 1\n")
    found = list_templates(tmp_path)
    assert [(t.key, t.title) for t in found] == [("math_answer", "Math answer: exact match")]


def test_inserting_a_template_merges_imports_and_lists_its_functions(opened, qtbot):
    view = opened.rewards_view
    view.functions.add_row()  # from "every *_reward function" to an explicit list
    assert [f.name for f in opened.doc.config.rewards.functions] == ["correctness_reward", "length_reward"]
    template = next(t for t in list_templates(opened.doc.base_dir / "nothing-here") if t.key == "xml_tags")
    view.insert_template(template)
    text = view.editor.toPlainText()
    ast.parse(text)
    assert text.count("import re") == 1  # the file already imported re
    assert "def xml_tags_reward" in text
    assert [f.name for f in opened.doc.config.rewards.functions][-1] == "xml_tags_reward"
    assert opened.doc.problems() == {}


def test_merge_template_adds_missing_imports_after_the_existing_ones(tmp_path):
    source = '"""My rewards."""\n\nimport math\n\n\ndef a_reward(completions, **kw):\n    return [math.pi]\n'
    merged = merge_template(source, next(t for t in list_templates(tmp_path) if t.key == "correctness"))
    ast.parse(merged)
    lines = merged.splitlines()
    assert lines.index("import math") < lines.index("import re") < lines.index("def a_reward(completions, **kw):")
    assert merged.rstrip().endswith("return scores")


def test_weights_and_unknown_functions_in_the_list(opened):
    table = opened.rewards_view.functions
    table.add_row()
    table.table.cellWidget(1, 1).setValue(0.25)
    assert [(f.name, f.weight) for f in opened.doc.config.rewards.functions] == [
        ("correctness_reward", 1.0), ("length_reward", 0.25)]
    table.table.cellWidget(0, 0).setCurrentText("nonexistent_reward")
    assert opened.doc.problems() == {"rewards.functions[0]": "no function 'nonexistent_reward' in rewards.py"}
    assert "Row 1: no function 'nonexistent_reward'" in table.problem.text()
    assert table.table.cellWidget(0, 0).property("invalid") is True


def test_saving_writes_the_reward_file_beside_the_run_file(opened, run_file):
    editor = opened.rewards_view.editor
    editor.setPlainText(editor.toPlainText() + "\n\ndef extra_reward(completions, **kw):\n    return [1.0] * len(completions)\n")
    assert opened.isWindowModified()
    opened.actions["save"].trigger()
    assert "def extra_reward" in (run_file.parent / "rewards.py").read_text()
    assert not opened.isWindowModified()


def test_every_shipped_template_inserts_into_a_reward_file_cleanly():
    import tiny
    from grpo_studio.gui.reward_source import defined_functions

    templates = list_templates()  # resources/reward_templates, or the built-in ones
    assert templates
    for template in templates:
        assert template.title and template.function_names(), template.key
        merged = merge_template(tiny.REWARDS, template)
        ast.parse(merged)
        names = [f.name for f in defined_functions(merged)]
        assert names[:2] == ["correctness_reward", "length_reward"], template.key  # the file kept its own
        assert set(template.function_names()) <= set(names), template.key
