"""repvit_plugins: RepViT models, RepViT-SAM and grounded segmentation.

Importing this package loads only torch; the OpenMMLab, transformers and
Gradio faces load when their modules are imported.
"""
__version__ = "0.1.0"
