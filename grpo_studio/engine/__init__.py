"""The Qt-free engine: model, LoRA, data, rewards, the TRL trainer, the run store.

Nothing here imports Qt. Heavy libraries (torch, transformers, trl) are imported inside the
functions that need them, so importing the engine stays cheap for the CLI and the GUI.
"""
