"""ONNX export of a SAM: the (fused) image encoder, and the prompt encoder + mask decoder.

Encoder graph: ``image`` (``1 x 3 x S x S``, normalized and padded as
``Sam.preprocess`` does) -> ``image_embeddings`` (``1 x 256 x S/16 x S/16``).

Decoder graph (any number of prompts and points): ``image_embeddings``,
``point_coords`` (``B x N x 2``, in the model's ``S x S`` input frame),
``point_labels`` (``B x N``: 1 foreground, 0 background, 2/3 box corners,
-1 padding), ``mask_input`` (``B x 1 x 4h x 4w``), ``has_mask_input`` (``1``)
-> ``low_res_masks`` (``B x 4 x 4h x 4w``: the single-mask output then the three
multimask outputs) and ``iou_predictions`` (``B x 4``). Upscaling to the image
size stays outside the graph, exactly as ``SamPredictor`` does it.

:func:`check_encoder` and :func:`check_decoder` compare an exported file run in
onnxruntime with the PyTorch model.
"""
from __future__ import annotations

import copy
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch
from torch import nn

from ..bench.numeric_agreement import relative_error
from ..models.sam_parts import encoder_input_size
from ..runtime.quiet import quietly
from .decoder_inputs import DECODER_INPUTS, decoder_feeds
from .ort_backend import OrtImageEncoder, OrtPromptDecoder

if TYPE_CHECKING:  # segment_anything ships no types: mypy sees its classes as Any
    from segment_anything.modeling import Sam

__all__ = [
    "ENCODER_INPUTS", "ENCODER_OUTPUTS", "DECODER_OUTPUTS", "PromptDecoder", "fused_encoder", "export_encoder",
    "export_decoder", "check_encoder", "check_decoder",
]

ENCODER_INPUTS = ["image"]
ENCODER_OUTPUTS = ["image_embeddings"]
DECODER_OUTPUTS = ["low_res_masks", "iou_predictions"]


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as err:
        raise ImportError(f"ONNX export needs onnx and onnxscript ({err}); install them with "
                          "`pip install onnx onnxscript onnxruntime` or `pip install -e .[onnx]`") from err


class PromptDecoder(nn.Module):
    """Prompt encoder + mask decoder of a ``Sam`` with trace-friendly prompt embedding.

    Uses ``segment_anything.utils.onnx.SamOnnxModel``'s point and mask
    embedding (labels 2/3 are the box corners) and ``MaskDecoder.predict_masks``.
    """

    def __init__(self, sam: Sam):
        super().__init__()
        from segment_anything.utils.onnx import SamOnnxModel

        self.embedder = SamOnnxModel(sam, return_single_mask=False)
        self.prompt_encoder = sam.prompt_encoder
        self.mask_decoder = sam.mask_decoder

    def forward(self, image_embeddings, point_coords, point_labels, mask_input, has_mask_input):
        sparse = self.embedder._embed_points(point_coords, point_labels)
        dense = self.embedder._embed_masks(mask_input, has_mask_input)
        return self.mask_decoder.predict_masks(image_embeddings, self.prompt_encoder.get_dense_pe(), sparse, dense)


def fused_encoder(sam: Sam) -> nn.Module:
    """A fused float32 CPU copy of ``sam.image_encoder`` (the model itself is left as it is)."""
    from ..models.repvit import reparameterize

    encoder = copy.deepcopy(sam.image_encoder).float().cpu()
    encoder = encoder.to(memory_format=torch.contiguous_format)
    return reparameterize(encoder)


ONNX_FILE_LIMIT = 2**31 - 2**27
"""Weight bytes above which a graph keeps its weights in a side file ``<name>.data``: a protobuf holds at most
2 GB (SAM ViT-H's encoder has 2.5 GB of float32 weights)."""


def _export(module: nn.Module, args: tuple, path: str | os.PathLike, input_names, output_names,
            dynamic_shapes, opset: int | None, verbose: bool) -> Path:
    """``torch.onnx.export`` (dynamo) into one self-contained file, or a file + ``<name>.data`` over 2 GB,
    written into a scratch folder beside ``path`` and moved into place when complete."""
    _require_onnx()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    external = sum(t.numel() * t.element_size() for t in module.state_dict().values()) > ONNX_FILE_LIMIT
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.") as tmp:
        part = Path(tmp) / path.name  # the side file's name, recorded in the graph, is already the final one
        with quietly(stdout=not verbose), torch.no_grad():
            torch.onnx.export(module.eval(), args, str(part), input_names=input_names, output_names=output_names,
                              dynamic_shapes=dynamic_shapes, opset_version=opset, dynamo=True,
                              external_data=external, verbose=verbose)
        for side_file in Path(tmp).iterdir():  # the weights first, the graph that names them last
            if side_file != part:
                os.replace(side_file, path.parent / side_file.name)
        os.replace(part, path)
    return path


def export_encoder(sam: Sam, path: str | os.PathLike, *, fuse: bool = True, opset: int | None = None,
                   verbose: bool = False) -> Path:
    """Export the image encoder (fused by default) to ``path``; returns the path."""
    encoder = fused_encoder(sam) if fuse else copy.deepcopy(sam.image_encoder).float().cpu().eval()
    size = encoder_input_size(sam.image_encoder)  # the side it sees
    example = (torch.randn(1, 3, size, size),)
    return _export(encoder, example, path, ENCODER_INPUTS, ENCODER_OUTPUTS, None, opset, verbose)


def export_decoder(sam: Sam, path: str | os.PathLike, *, opset: int | None = None,
                   verbose: bool = False) -> Path:
    """Export prompt encoder + mask decoder with dynamic numbers of prompts and points (see :class:`PromptDecoder`)."""
    from torch.export import Dim

    decoder = PromptDecoder(copy.deepcopy(sam).float().cpu().eval())
    grid = tuple(sam.prompt_encoder.image_embedding_size)
    size = sam.prompt_encoder.input_image_size
    embed = sam.prompt_encoder.embed_dim
    gen = torch.Generator().manual_seed(0)
    prompts, points = 3, 2  # example sizes; both axes are exported as dynamic
    example = (
        torch.randn(1, embed, *grid, generator=gen),
        torch.rand(prompts, points, 2, generator=gen) * size[0],
        torch.tensor([[1.0, 0.0]] * prompts),
        torch.randn(prompts, 1, 4 * grid[0], 4 * grid[1], generator=gen),
        torch.ones(1),
    )
    batch, count = Dim("num_prompts", min=1, max=65536), Dim("num_points", min=1, max=1024)
    dynamic = {"image_embeddings": None, "point_coords": {0: batch, 1: count}, "point_labels": {0: batch, 1: count},
               "mask_input": {0: batch}, "has_mask_input": None}
    return _export(decoder, example, path, DECODER_INPUTS, DECODER_OUTPUTS, dynamic, opset, verbose)


def check_encoder(sam: Sam, path: str | os.PathLike,
                  measure: Callable[[torch.Tensor, torch.Tensor], float] = relative_error,
                  image: torch.Tensor | None = None) -> float:
    """``measure`` between the encoder file in onnxruntime and ``sam``'s encoder on ``image`` (default: random)."""
    size = encoder_input_size(sam.image_encoder)
    if image is None:
        image = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        reference = sam.image_encoder(image)
    return measure(OrtImageEncoder(path, sam.image_encoder.img_size, input_size=size)(image), reference)


def check_decoder(sam: Sam, path: str | os.PathLike) -> float:
    """Largest relative error of the decoder file in onnxruntime vs :class:`PromptDecoder` (5 point + box prompts)."""
    gen = torch.Generator().manual_seed(0)
    grid = sam.prompt_encoder.image_embedding_size
    size = sam.image_encoder.img_size
    embedding = torch.randn(1, sam.prompt_encoder.embed_dim, *grid, generator=gen)
    boxes = torch.sort(torch.rand(5, 2, 2, generator=gen) * size, dim=1).values.reshape(5, 4)
    feeds = decoder_feeds(embedding, torch.rand(5, 2, 2, generator=gen) * size, torch.tensor([[1, 0]] * 5), boxes,
                          None, sam.prompt_encoder.mask_input_size)
    with torch.no_grad():
        reference = PromptDecoder(sam)(**feeds)
    return max(relative_error(o, r) for o, r in zip(OrtPromptDecoder(path)(feeds), reference))
