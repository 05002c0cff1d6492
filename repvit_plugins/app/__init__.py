"""The Gradio demo (imported only by `repvit-plugins demo` / demo/gradio_app.py)."""
from .services import ClickState, DemoError, DemoModels, prepare_image
from .ui import build_app, default_models, launch, weights_status

__all__ = ["ClickState", "DemoError", "DemoModels", "prepare_image", "build_app", "default_models", "launch",
           "weights_status"]
