"""The VRAM estimate on the Settings page: follows the settings, says when it cannot know."""

from __future__ import annotations

from conftest import shot


def settled(qtbot, estimator, edit=None):
    """Apply `edit`, then wait for the estimate of the new settings."""
    with qtbot.waitSignal(estimator.updated, timeout=10_000):
        if edit is not None:
            edit()
    qtbot.waitUntil(lambda: not estimator.is_busy(), timeout=10_000)
    return estimator.view


def test_estimate_follows_the_settings_it_depends_on(opened, qtbot):
    view = opened.settings_view
    estimator = view.vram
    first = estimator.view if estimator.view and not estimator.is_busy() else settled(qtbot, estimator)
    assert first.status == "estimate" and first.total > 0
    assert view.vram_card.headline.text().startswith("Estimated peak GPU memory: ")
    assert {"weights", "gradients", "optimizer state"} <= set(first.parts)
    assert view.vram_card.grid.count() == 3 * len(first.parts)  # name, amount, bar per part
    assert opened.vram_label.text().startswith("Peak GPU memory ≈ ")
    # The card names the generation mode the run would use (no GPU here: the card's memory is unknown).
    assert first.mode == "merged" and "Generation: GRPO Studio's generator, on a 16-bit copy" in \
        view.vram_card.note.text()
    assert "Training: 8 completions x 1 micro-step, gradient checkpointing" in view.vram_card.note.text()

    longer = settled(qtbot, estimator, lambda: opened.doc.set_field("grpo.max_completion_length", 128))
    assert longer.total > first.total
    wider = settled(qtbot, estimator, lambda: opened.doc.set_field("lora.r", 32))
    assert wider.parts["trainable params"] == 8 * first.parts["trainable params"]  # r 4 -> 32
    # Edits in a burst cost one estimate, of the last settings.
    with qtbot.waitSignal(estimator.updated, timeout=10_000):
        for r in (8, 12, 16):
            opened.doc.set_field("lora.r", r)
    qtbot.waitUntil(lambda: not estimator.is_busy(), timeout=10_000)
    assert estimator.view.parts["trainable params"] == 4 * first.parts["trainable params"]

    cpu = settled(qtbot, estimator, lambda: opened.doc.set_field("model.device", "cpu"))
    assert cpu.total == estimator.view.total and "CPU run" in view.vram_card.note.text()
    assert opened.vram_label.text().endswith("(CPU run here)")
    opened.show_view("settings")
    shot(opened, "settings-vram-estimate")


def test_an_uncached_hub_model_is_unknown_until_downloaded(opened, qtbot):
    view = opened.settings_view
    unknown = settled(qtbot, view.vram, lambda: opened.doc.set_field("model.name", "some-org/not-downloaded-7b"))
    assert unknown.status == "unknown"
    assert view.vram_card.headline.text() == "Estimated peak GPU memory: unknown until the model is downloaded"
    assert view.vram_card.grid.count() == 0 and opened.vram_label.text() == ""
    missing = settled(qtbot, view.vram, lambda: opened.doc.set_field("model.name", "./no/such/folder"))
    assert missing.status == "error" and "folder not found" in view.vram_card.note.text()


def test_the_card_says_how_many_layers_the_mixed_mode_merges(opened, qtbot):
    from grpo_studio.gui.vram_card import VramView

    estimator = opened.settings_view.vram
    if estimator.view is None or estimator.is_busy():
        settled(qtbot, estimator)  # this computer's own estimate first: it must not replace the view below
    card = opened.settings_view.vram_card
    gib = 2**30
    card.show_view(VramView(
        "estimate", total=14.2 * gib, parts={"weights": 5.2 * gib, "generation weights (mixed)": 7.1 * gib,
                                             "KV cache (static), sampling": 0.7 * gib,
                                             "prefill activations": 0.8 * gib}, phase="generation",
        gpu=True, device="auto", mode="mixed", merged_layers=16,
        mode_reason="as many merged layers as fit the 16.0 GiB free; not merged: needs ~18.3 GiB, 16.0 GiB free",
        layout="16 completions x 2 micro-steps, gradient checkpointing on"))
    note = card.note.text()
    assert "on a 16-bit copy with LoRA merged in for 16 layers, the others read quantized" in note
    assert "{merged}" not in note
    shot(card, "vram-card-mixed")
