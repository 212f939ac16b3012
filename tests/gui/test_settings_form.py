"""Settings forms: generated from the config's metadata, edits reach the run file, bad values are
marked at their field and block training."""

from __future__ import annotations

import tomllib

from PySide6.QtCore import Qt

from grpo_studio.config import all_field_specs


def test_every_setting_but_reward_list_has_a_field_with_its_help_as_tooltip(opened):
    rows = {}
    for card in opened.settings_view.cards.values():
        rows.update(card.rows)
    rows.update(opened.dataset_view.rows)
    rows.update(opened.rewards_view.settings_card.rows)
    for spec in all_field_specs():
        if spec.path in ("rewards.file", "rewards.functions"):
            continue  # the reward editor and its table of functions edit these
        assert spec.path in rows, spec.path
        assert spec.help in rows[spec.path].editor.input_widget().toolTip()


def test_advanced_settings_are_folded(opened):
    card = opened.settings_view.cards["grpo"]
    assert "grpo.beta" in card.rows and not card.rows["grpo.beta"].spec.advanced
    assert card.rows["grpo.loss_type"].spec.advanced
    assert card.advanced is not None and not card.advanced.isExpanded()
    # QCollapsible folds by shrinking its content to no height: nothing of the field shows.
    assert card.rows["grpo.loss_type"].editor.visibleRegion().isEmpty()
    assert not card.rows["grpo.max_steps"].editor.visibleRegion().isEmpty()


def test_editing_a_form_changes_the_run_file(opened, run_file, qtbot):
    view = opened.settings_view
    opened.show_view("settings")
    rank = view.row("lora.r").editor.box
    rank.setValue(12)
    lr = view.row("grpo.learning_rate").editor.line
    lr.selectAll()
    qtbot.keyClicks(lr, "2e-4")
    loss = view.row("grpo.loss_type").editor.combo  # an advanced field, chosen like a user does
    loss.setCurrentIndex(loss.findText("dr_grpo"))
    loss.activated.emit(loss.currentIndex())
    assert opened.isWindowModified() and "[*]" in opened.windowTitle()
    assert opened.doc.config.lora.r == 12 and opened.doc.config.grpo.learning_rate == 2e-4

    opened.actions["save"].trigger()
    saved = tomllib.loads(run_file.read_text())
    assert saved["lora"]["r"] == 12
    assert saved["grpo"]["learning_rate"] == 2e-4
    assert saved["grpo"]["loss_type"] == "dr_grpo"
    assert not opened.isWindowModified()
    assert lr.text() == "2e-4"  # what the user typed stays as typed


def test_invalid_value_blocks_train_with_the_message_at_the_field(opened, qtbot):
    view = opened.settings_view
    row = view.row("grpo.num_generations")
    row.editor.box.setValue(3)  # 8 completions per batch cannot form groups of 3
    assert row.error.isVisible()
    assert row.error.text() == "3 does not divide the generation batch 8 (8 completions x 1 accumulation steps)"
    assert row.editor.input_widget().property("invalid") is True

    opened.actions["train"].trigger()
    assert not opened.controller.is_active()
    assert opened.problems_bar.isVisible()
    assert "grpo.num_generations" in opened.problems_bar.text.text()
    assert opened.current_view() == "settings"
    assert "Cannot train yet: grpo.num_generations" in opened.statusBar().currentMessage()

    row.editor.box.setValue(4)  # fixed: the mark and the bar go away by themselves
    assert not row.error.isVisible() and not opened.problems_bar.isVisible()


def test_text_that_is_no_value_is_reported_and_not_saved(opened, qtbot, run_file):
    lr_row = opened.settings_view.row("grpo.learning_rate")
    lr_row.editor.line.selectAll()
    qtbot.keyClicks(lr_row.editor.line, "fast")
    assert lr_row.error.text() == "not a number"
    lr_row.editor.line.selectAll()
    qtbot.keyClicks(lr_row.editor.line, "-1")
    assert lr_row.error.text() == "must be > 0.0, got -1.0"  # the config's own words, as the CLI says them
    assert opened.doc.config.grpo.learning_rate == 1e-3  # the config keeps its last good value

    name_row = opened.settings_view.row("run.name")
    name_row.editor.line.selectAll()
    qtbot.keyClicks(name_row.editor.line, "my run")
    assert "letters, digits" in name_row.error.text()
    assert set(opened.doc.problems()) == {"grpo.learning_rate", "run.name"}


def test_a_problem_in_an_advanced_field_unfolds_it(opened):
    card = opened.settings_view.cards["grpo"]
    assert not card.advanced.isExpanded()
    opened.doc.set_field("grpo.generation_batch_size", 12)  # not a multiple of the batch of 8
    assert card.advanced.isExpanded()
    assert "not a multiple" in card.rows["grpo.generation_batch_size"].error.text()


def test_focus_field_opens_the_page_and_focuses_the_editor(opened, qtbot):
    opened.activateWindow()
    opened.focus_field("data.prompt_column")
    assert opened.current_view() == "dataset"
    opened.focus_field("grpo.temperature")
    assert opened.current_view() == "settings"
    qtbot.waitUntil(lambda: opened.settings_view.row("grpo.temperature").editor.line.hasFocus()
                    or opened.focusWidget() is opened.settings_view.row("grpo.temperature").editor.line)
    assert opened.settings_view.row("grpo.temperature").label.buddy() is not None


def test_long_values_wrap_instead_of_being_cut(window, qtbot):
    """A hub id or a list of module names longer than its field shows whole, on more lines."""
    from grpo_studio.cli import resources_dir

    assert window.open_path(resources_dir() / "runs" / "gsm8k.toml")
    view = window.settings_view
    for path, lines in (("model.name", 1), ("lora.target_modules", 2)):
        line = view.row(path).editor.line
        view.focus_field(path)
        qtbot.waitUntil(line.isVisible)
        shown = line.document().documentLayout().documentSize().height()  # lines of text, wrapped
        assert shown == lines, (path, line.text())
        assert shown * line.fontMetrics().lineSpacing() <= line.viewport().height()  # none cut off
    assert view.row("lora.target_modules").editor.line.text() == (
        "q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj")
    model = view.row("model.name").editor.line
    model.setText("")
    qtbot.keyClicks(model, "a/b")
    qtbot.keyClick(model, Qt.Key.Key_Return)  # moves on: a value never gets a newline
    assert window.doc.config.model.name == "a/b" and "\n" not in model.text()
