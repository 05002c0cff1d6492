"""RepViT-SAM inference: prompt checks, a caching predictor with a fast mask decoder, ONNX and onnxruntime.

``SamSegmenter`` is the entry point; ``segment_anything`` provides the prompt
encoder, mask decoder, predictor and automatic mask generator underneath.
"""
from .prompts import PromptError
from .segmenter import BACKENDS, SamSegmenter

__all__ = ["BACKENDS", "PromptError", "SamSegmenter"]
