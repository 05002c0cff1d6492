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
"""
from __future__ import annotations

import copy
import os
from pathlib import Path

import torch
from torch import nn

from ..quiet import quietly

__all__ = [
    "ENCODER_INPUTS", "ENCODER_OUTPUTS", "DECODER_INPUTS", "DECODER_OUTPUTS",
    "PromptDecoder", "fused_encoder", "export_encoder", "export_decoder", "decoder_feeds",
]

ENCODER_INPUTS = ["image"]
ENCODER_OUTPUTS = ["image_embeddings"]
DECODER_INPUTS = ["image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input"]
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

    def __init__(self, sam: nn.Module):
        super().__init__()
        from segment_anything.utils.onnx import SamOnnxModel

        self.embedder = SamOnnxModel(sam, return_single_mask=False)
        self.prompt_encoder = sam.prompt_encoder
        self.mask_decoder = sam.mask_decoder

    def forward(self, image_embeddings, point_coords, point_labels, mask_input, has_mask_input):
        sparse = self.embedder._embed_points(point_coords, point_labels)
        dense = self.embedder._embed_masks(mask_input, has_mask_input)
        return self.mask_decoder.predict_masks(image_embeddings, self.prompt_encoder.get_dense_pe(), sparse, dense)


def decoder_feeds(image_embeddings: torch.Tensor, point_coords: torch.Tensor | None,
                  point_labels: torch.Tensor | None, boxes: torch.Tensor | None,
                  mask_input: torch.Tensor | None, mask_size: tuple[int, int]) -> dict:
    """Predictor-style prompts (input frame, batched as ``SamPredictor.predict_torch``) -> decoder inputs.

    Points come first, then the two box corners; without a box a padding point is
    appended, exactly as ``PromptEncoder`` does.
    """
    batch = next((t.shape[0] for t in (point_coords, boxes, mask_input) if t is not None), 1)
    coords, labels = [], []
    if point_coords is not None:
        coords.append(point_coords.float())
        labels.append(point_labels.float())
    if boxes is not None:
        coords.append(boxes.float().reshape(-1, 2, 2))
        labels.append(torch.tensor([[2.0, 3.0]]).expand(batch, 2))
    else:
        coords.append(torch.zeros(batch, 1, 2))
        labels.append(-torch.ones(batch, 1))
    has_mask = mask_input is not None
    if not has_mask:
        mask_input = torch.zeros(batch, 1, *mask_size)
    return {
        "image_embeddings": image_embeddings.float().contiguous(),
        "point_coords": torch.cat(coords, dim=1).contiguous(),
        "point_labels": torch.cat(labels, dim=1).contiguous(),
        "mask_input": mask_input.float().expand(batch, -1, -1, -1).contiguous(),
        "has_mask_input": torch.tensor([float(has_mask)]),
    }


def fused_encoder(sam: nn.Module) -> nn.Module:
    """A fused float32 CPU copy of ``sam.image_encoder`` (the model itself is left as it is)."""
    from ..models.repvit import reparameterize

    encoder = copy.deepcopy(sam.image_encoder).float().cpu()
    encoder = encoder.to(memory_format=torch.contiguous_format)
    return reparameterize(encoder)


def _export(module: nn.Module, args: tuple, path: str | os.PathLike, input_names, output_names,
            dynamic_shapes, opset: int | None, verbose: bool) -> Path:
    """``torch.onnx.export`` (dynamo) into one self-contained file, written atomically."""
    _require_onnx()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    try:
        with quietly(stdout=not verbose), torch.no_grad():
            torch.onnx.export(module.eval(), args, str(part), input_names=input_names, output_names=output_names,
                              dynamic_shapes=dynamic_shapes, opset_version=opset, dynamo=True, external_data=False,
                              verbose=verbose)
        os.replace(part, path)
    finally:
        part.unlink(missing_ok=True)
    return path


def export_encoder(sam: nn.Module, path: str | os.PathLike, *, fuse: bool = True, opset: int | None = None,
                   verbose: bool = False) -> Path:
    """Export the image encoder (fused by default) to ``path``; returns the path."""
    encoder = fused_encoder(sam) if fuse else copy.deepcopy(sam.image_encoder).float().cpu().eval()
    size = sam.image_encoder.img_size
    example = (torch.randn(1, 3, size, size),)
    return _export(encoder, example, path, ENCODER_INPUTS, ENCODER_OUTPUTS, None, opset, verbose)


def export_decoder(sam: nn.Module, path: str | os.PathLike, *, opset: int | None = None,
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
