"""The Rewards page: the reward file in a code editor, and which of its functions count with what weight.

Syntax is checked a moment after each pause in typing (compiling a reward file takes well under a
millisecond, so it runs on the GUI thread); the first error is marked at its line. The code is
never run in the window: the training worker loads it, and the test bench (the "Test bench" tab,
reward_bench_panel.py) runs it in a child process, its exceptions marked here like syntax errors.
"""

from __future__ import annotations

import re
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMenu,
    QMessageBox,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from grpo_studio.gui import dialogs
from grpo_studio.gui.code_editor import CodeEditor
from grpo_studio.gui.document import RunDocument
from grpo_studio.gui.field_editors import guard_wheel
from grpo_studio.gui.reward_bench_panel import RewardBenchPanel
from grpo_studio.gui.reward_source import defined_functions, reward_functions, syntax_problem
from grpo_studio.gui.reward_templates import list_templates, merge_template
from grpo_studio.gui.settings_form import Card, SectionCard, scrolling, setting_path
from grpo_studio.gui.style import ERROR, OK, set_invalid, title_row

SYNTAX_CHECK_DELAY_MS = 250
BENCH_WIDTH = 600  # the test bench's share of the page when first shown


class RewardFunctionsTable(QWidget):
    """rewards.functions as a table: function name (from the file) and weight, one row each."""

    def __init__(self, doc: RunDocument, parent: QWidget | None = None):
        super().__init__(parent)
        self.doc = doc
        self._writing = False
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(6)
        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["Function", "Weight", ""])
        self.table.verticalHeader().hide()
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.table.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Fixed)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Fixed)
        self.table.setColumnWidth(1, 100)
        self.table.setColumnWidth(2, 36)
        self.table.verticalHeader().setDefaultSectionSize(34)
        self.table.setMinimumHeight(34 * 4 + 30)  # room for a few functions before it scrolls
        layout.addWidget(self.table)
        buttons = QHBoxLayout()
        self.add_button = QPushButton("+ Add function")
        self.add_button.clicked.connect(self.add_row)
        buttons.addWidget(self.add_button)
        buttons.addStretch(1)
        layout.addLayout(buttons)
        self.auto_note = QLabel()
        self.auto_note.setWordWrap(True)
        self.auto_note.setObjectName("cardSubtitle")
        layout.addWidget(self.auto_note)
        self.problem = QLabel()
        self.problem.setObjectName("fieldError")
        self.problem.setWordWrap(True)
        layout.addWidget(self.problem)
        doc.changed.connect(self._on_doc_changed)
        doc.problemsChanged.connect(self._show_problems)
        self.reload()

    def _on_doc_changed(self, path: str) -> None:
        if not self._writing and path in ("", "rewards.functions", "rewards.file"):
            self.reload()

    def defined_names(self) -> list[str]:
        return [f.name for f in defined_functions(self.doc.reward_source)]

    def reload(self) -> None:
        """Rebuild the rows from the document."""
        self.table.setRowCount(0)
        for fn in self.doc.config.rewards.functions:
            self._append(fn.name, fn.weight, model=fn.model)
        self.refresh_names()
        self._show_problems()

    def _append(self, name: str, weight: float, model: str = "") -> None:
        row = self.table.rowCount()
        self.table.insertRow(row)
        combo = QComboBox()
        combo.setEditable(True)
        guard_wheel(combo)
        combo.setProperty("model", model)
        if model:
            combo.addItem(f"model: {model}")
            combo.setEnabled(False)
            combo.setToolTip("A reward model (rewards.functions[].model); edit it in the run file.")
        else:
            combo.addItems(self.defined_names())
            combo.setCurrentText(name)
            combo.setToolTip("A function defined in the reward file")
        combo.currentTextChanged.connect(self.write)
        weight_box = QDoubleSpinBox()
        weight_box.setRange(-1000, 1000)
        weight_box.setDecimals(3)
        weight_box.setSingleStep(0.1)
        weight_box.setValue(weight)
        weight_box.setToolTip("Weight of this reward in the total (rewards.functions[].weight)")
        guard_wheel(weight_box)
        weight_box.valueChanged.connect(self.write)
        remove = QToolButton()
        remove.setText("✕")
        remove.setToolTip("Remove this function from the list")
        remove.clicked.connect(lambda: self._remove(combo))
        self.table.setCellWidget(row, 0, combo)
        self.table.setCellWidget(row, 1, weight_box)
        self.table.setCellWidget(row, 2, remove)

    def _remove(self, combo: QComboBox) -> None:
        for row in range(self.table.rowCount()):
            if self.table.cellWidget(row, 0) is combo:
                self.table.removeRow(row)
                break
        self.write()

    def add_row(self) -> None:
        listed = {self.table.cellWidget(r, 0).currentText() for r in range(self.table.rowCount())}
        if self.table.rowCount() == 0:
            # Going from "every *_reward function" to an explicit list: start from what was implied.
            implied = reward_functions(self.doc.reward_source)
            if implied:
                for name in implied:
                    self._append(name, 1.0)
                self.write()
                return
        unlisted = [n for n in self.defined_names() if n not in listed]
        self._append(unlisted[0] if unlisted else "", 1.0)
        self.write()

    def add_functions(self, names: list[str]) -> None:
        """After a template was inserted: list its functions when the list is explicit."""
        if self.table.rowCount() == 0:
            return  # auto mode picks up *_reward functions by itself
        listed = {self.table.cellWidget(r, 0).currentText() for r in range(self.table.rowCount())}
        for name in names:
            if name not in listed:
                self._append(name, 1.0)
        self.write()

    def write(self) -> None:
        entries = []
        for row in range(self.table.rowCount()):
            combo = self.table.cellWidget(row, 0)
            weight = self.table.cellWidget(row, 1).value()
            model = combo.property("model") or ""
            entries.append({"model": model, "weight": weight} if model else
                           {"name": combo.currentText().strip(), "weight": weight})
        self._writing = True
        try:
            self.doc.set_field("rewards.functions", entries)
        finally:
            self._writing = False
        self.refresh_names()
        self._show_problems()

    def refresh_names(self) -> None:
        """Keep each row's list of choices in step with the functions the file defines."""
        names = self.defined_names()
        for row in range(self.table.rowCount()):
            combo = self.table.cellWidget(row, 0)
            if combo.property("model"):
                continue
            current = combo.currentText()
            if [combo.itemText(i) for i in range(combo.count())] != names:
                combo.blockSignals(True)
                combo.clear()
                combo.addItems(names)
                combo.setCurrentText(current)
                combo.blockSignals(False)
        if self.table.rowCount() == 0:
            found = reward_functions(self.doc.reward_source)
            if syntax_problem(self.doc.reward_source) is not None:
                which = " (fix the syntax error to see which)."
            else:
                which = f": {', '.join(found)}." if found else ". The file has none yet."
            self.auto_note.setText(
                "The list is empty, so every function whose name ends in _reward is used with weight 1" + which)
        else:
            self.auto_note.setText("Total reward = Σ weight × reward. Remove every row to use each *_reward "
                                   "function with weight 1.")

    def _show_problems(self) -> None:
        problems = self.doc.problems()
        messages = []
        for row in range(self.table.rowCount()):
            msg = problems.get(f"rewards.functions[{row}]")
            set_invalid(self.table.cellWidget(row, 0), bool(msg))
            if msg:
                messages.append(f"Row {row + 1}: {msg}")
        if "rewards.functions" in problems:
            messages.append(problems["rewards.functions"])
        self.problem.setText("\n".join(messages))
        self.problem.setVisible(bool(messages))


class RewardsView(QWidget):
    """Code editor for the reward file + the list of functions and weights."""

    templateInserted = Signal(str)

    def __init__(self, doc: RunDocument, parent: QWidget | None = None):
        super().__init__(parent)
        self.doc = doc
        self._loading = False
        outer = QVBoxLayout(self)
        outer.setContentsMargins(24, 18, 24, 18)
        outer.setSpacing(10)

        self.file_label = QLabel()
        top = title_row("Rewards", self.file_label)
        self.templates_button = QPushButton("Insert template  ▾")
        self.templates_button.setToolTip("Add a ready-made reward function to the file")
        self.templates_menu = QMenu(self.templates_button)
        self.templates_menu.aboutToShow.connect(self._fill_templates)
        self.templates_button.setMenu(self.templates_menu)
        self.templates_button.setStyleSheet("QPushButton::menu-indicator { image: none; width: 0; }")
        top.addWidget(self.templates_button)
        self.open_button = QPushButton("Use another file…")
        self.open_button.setToolTip("Point rewards.file at another Python file")
        self.open_button.clicked.connect(self.choose_file)
        top.addWidget(self.open_button)
        outer.addLayout(top)

        splitter = QSplitter(Qt.Orientation.Horizontal)
        left = QWidget()
        left_box = QVBoxLayout(left)
        left_box.setContentsMargins(0, 0, 0, 0)
        left_box.setSpacing(4)
        self.editor = CodeEditor()
        self.editor.setPlainText(doc.reward_source)
        left_box.addWidget(self.editor, 1)
        self.syntax_label = QLabel()
        self.syntax_label.setTextFormat(Qt.TextFormat.PlainText)
        self.syntax_label.setWordWrap(True)  # a long message wraps; unwrapped, it would widen the editor's column
        self.syntax_label.setCursor(Qt.CursorShape.PointingHandCursor)
        self.syntax_label.mousePressEvent = lambda e: self.editor.error_line and self.editor.go_to_line(
            self.editor.error_line)
        left_box.addWidget(self.syntax_label)
        splitter.addWidget(left)

        right_content = QWidget()
        right_box = QVBoxLayout(right_content)
        right_box.setContentsMargins(12, 0, 4, 0)
        right_box.setSpacing(12)
        functions_card = Card("Reward functions", "Which functions of the file score completions, and their "
                                                  "weights.")
        self.functions = RewardFunctionsTable(doc)
        functions_card.body.addWidget(self.functions)
        right_box.addWidget(functions_card)
        # The rest of the [rewards] section (process isolation, time limits, what a failure does).
        self.settings_card = SectionCard(doc, "rewards", "Running the rewards",
                                         "Limits that keep a hanging or crashing reward from taking the run down.",
                                         skip=("rewards.file",), label_width=0)
        if self.settings_card.rows:
            right_box.addWidget(self.settings_card)
        help_card = Card("How a reward function looks")
        help_text = QLabel(
            "<p>Each function scores a batch: it gets the <code>completions</code> (and <code>prompts</code>) "
            "as lists of strings, every dataset column by name (e.g. <code>answer</code>, the ground truth), and "
            "returns <b>one number per completion</b> (or <code>None</code> to skip one).</p>"
            "<pre>def my_reward(completions, answer, **kw):\n"
            "    return [1.0 if a in c else 0.0\n"
            "            for c, a in zip(completions,\n"
            "                            answer)]</pre>"
            "<p>GRPO compares completions of the same prompt: a reward that tells them apart teaches; one that "
            "gives every completion the same score teaches nothing.</p>")
        help_text.setWordWrap(True)
        help_text.setTextFormat(Qt.TextFormat.RichText)
        help_card.body.addWidget(help_text)
        right_box.addWidget(help_card)
        right_box.addStretch(0)
        functions_page = scrolling(right_content)
        functions_page.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.bench = RewardBenchPanel(doc)
        self.bench.findingActivated.connect(self.show_finding)
        self.bench.finished.connect(self._bench_finished)
        self.side_tabs = QTabWidget()
        self.side_tabs.setObjectName("sideTabs")
        self.side_tabs.setDocumentMode(True)
        self.side_tabs.addTab(functions_page, "Functions")
        self.side_tabs.addTab(self.bench, "Test bench")
        self.side_tabs.setTabToolTip(1, "Run the reward functions on real rows and completions before training")
        self.side_tabs.setMinimumWidth(440)
        self.side_tabs.currentChanged.connect(self._side_tab_changed)
        self._bench_widened = False
        splitter.addWidget(self.side_tabs)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)
        splitter.setSizes([620, 460])
        self.splitter = splitter
        outer.addWidget(splitter, 1)

        self._check_timer = QTimer(self)
        self._check_timer.setSingleShot(True)
        self._check_timer.setInterval(SYNTAX_CHECK_DELAY_MS)
        self._check_timer.timeout.connect(self.check_syntax)
        self.editor.textChanged.connect(self._typed)
        doc.rewardSourceReplaced.connect(self._reload_text)
        doc.changed.connect(lambda path: path in ("", "rewards.file") and self._show_file())
        doc.pathChanged.connect(self._show_file)
        self._show_file()
        self.check_syntax()

    # ---- text ------------------------------------------------------------------------------
    def _typed(self) -> None:
        if self._loading:
            return
        self.doc.set_reward_source(self.editor.toPlainText())
        self._check_timer.start()

    def _reload_text(self) -> None:
        if self.editor.toPlainText() == self.doc.reward_source:
            return
        self._loading = True
        try:
            self.editor.setPlainText(self.doc.reward_source)
        finally:
            self._loading = False
        self.check_syntax()
        self.functions.reload()

    def check_syntax(self) -> None:
        text = self.editor.toPlainText()
        problem = syntax_problem(text, Path(self.doc.config.rewards.file).name)
        if problem is None:
            names = reward_functions(text)
            self.editor.mark_error(0)
            self.syntax_label.setText(
                "✓ No syntax errors" + (f" · reward functions: {', '.join(names)}" if names else ""))
            self.syntax_label.setStyleSheet(f"color: {OK};")
        else:
            self.editor.mark_error(problem.line, problem.message)
            self.syntax_label.setText(f"✗ Line {problem.line}: {problem.message}  (click to go there)")
            self.syntax_label.setStyleSheet(f"color: {ERROR}; font-weight: 600;")
        self.functions.refresh_names()

    def mark_runtime_error(self, reason: str, context: str = "failed in the last run") -> bool:
        """Mark the line of a reward error ("…/rewards.py:12: …") from a run or a check; True if marked."""
        name = re.escape(Path(self.doc.config.rewards.file).name)
        m = re.search(name + r":(\d+):\s*(.*)", reason)
        if not m:
            return False
        self.editor.mark_error(int(m.group(1)), m.group(2))
        self.syntax_label.setText(f"✗ Line {m.group(1)} {context}: {m.group(2)}")
        self.syntax_label.setStyleSheet(f"color: {ERROR}; font-weight: 600;")
        return True

    # ---- the test bench --------------------------------------------------------------------
    def show_bench(self) -> None:
        self.side_tabs.setCurrentWidget(self.bench)

    def _side_tab_changed(self, index: int) -> None:
        """The bench's tables want more width than the function list: give it once, then leave the split
        to the user."""
        if self.side_tabs.widget(index) is self.bench and not self._bench_widened:
            self._bench_widened = True
            total = sum(self.splitter.sizes())
            if total > 0 and self.splitter.sizes()[1] < BENCH_WIDTH:
                self.splitter.setSizes([max(total - BENCH_WIDTH, 360), BENCH_WIDTH])

    def _bench_finished(self, result) -> None:
        """A function that raised is marked at its line, like a syntax error (while the lines still match)."""
        if result.cancelled or result.problem or result.reward_source != self.editor.toPlainText():
            return
        first = next((f for f in result.errors if f.line), None)
        if first is not None and syntax_problem(result.reward_source) is None:
            self._mark_bench_line(first)

    def show_finding(self, finding) -> None:
        """A finding clicked in the bench: go to its line; an error is marked there."""
        self.editor.go_to_line(finding.line)
        if finding.level == "error":
            self._mark_bench_line(finding)
        self.editor.setFocus()

    def _mark_bench_line(self, finding) -> None:
        result = self.bench.result
        stale = result is not None and result.reward_source != self.editor.toPlainText()
        self.editor.mark_error(finding.line, finding.message)
        note = " (the code changed since: run the bench again)" if stale else ""
        self.syntax_label.setText(f"✗ Line {finding.line} in the test bench: {finding.message}{note}")
        self.syntax_label.setStyleSheet(f"color: {ERROR}; font-weight: 600;")

    def _show_file(self) -> None:
        path = self.doc.reward_path()
        if path is None:
            self.file_label.setText(f"{self.doc.config.rewards.file} · written beside the run file when you save")
        elif path.exists():
            self.file_label.setText(str(path))
        else:
            self.file_label.setText(f"{path} · new file, written when you save")

    # ---- templates and files ---------------------------------------------------------------
    def _fill_templates(self) -> None:
        self.templates_menu.clear()
        for template in list_templates():
            action = self.templates_menu.addAction(template.title)
            action.setToolTip(", ".join(template.function_names()))
            action.triggered.connect(lambda checked=False, t=template: self.insert_template(t))

    def insert_template(self, template) -> None:
        existing = {f.name for f in defined_functions(self.editor.toPlainText())}
        clash = [n for n in template.function_names() if n in existing]
        if clash:
            dialogs.inform(self, "Template already in the file", f"The file already defines {', '.join(clash)}.")
            return
        merged = merge_template(self.editor.toPlainText(), template)
        cursor = self.editor.textCursor()
        cursor.beginEditBlock()  # one undo step
        cursor.select(cursor.SelectionType.Document)
        cursor.insertText(merged)
        cursor.endEditBlock()
        names = template.function_names()
        if names:
            line = next((f.line for f in defined_functions(merged) if f.name == names[0]), 0)
            self.editor.go_to_line(line)
        self.check_syntax()
        self.functions.add_functions(names)
        self.templateInserted.emit(template.key)

    def choose_file(self) -> None:
        if self.doc.reward_modified() and self.doc.reward_path() is not None:
            answer = dialogs.ask(
                self, "Switch reward file",
                "The reward code has unsaved changes. Switch to another file anyway? (They stay in the old "
                "file only if you saved them.)")
            if answer != QMessageBox.StandardButton.Yes:
                return
        start = str(self.doc.base_dir or Path.home())
        chosen = dialogs.open_file(self, "Reward file", start, "Python (*.py)")
        if chosen:
            self.use_file(Path(chosen))

    def use_file(self, path: Path) -> None:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            dialogs.warn(self, "Cannot read the file", f"{path}: {exc}")
            return
        self.doc.set_field("rewards.file", setting_path(self.doc, str(path)))
        self.doc.replace_reward_source(text, saved=True)
