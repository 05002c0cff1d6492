"""The Gradio demo: :mod:`.services` (what it does, Gradio-free) and :mod:`.ui` (the page)."""
from .services import ClickState, DemoError, DemoModels, default_models, prepare_image, weights_status
from .ui import build_app, launch

__all__ = ["ClickState", "DemoError", "DemoModels", "prepare_image", "build_app", "default_models", "launch",
           "weights_status"]
