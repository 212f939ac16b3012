"""The desktop window (PySide6). Thin widgets over the Qt-free engine; `app.run_app` starts it.

Start-up imports nothing heavy: torch, transformers and datasets load in the training worker process,
or on a background thread when a page needs them.
"""
