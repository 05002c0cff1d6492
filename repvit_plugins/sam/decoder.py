"""SAM's mask decoder, restructured for CPU: same weights, same outputs, less work per prompt.

``segment_anything``'s :class:`MaskDecoder` copies the 64x64 image embedding
once per prompt and projects it again for every prompt. Exact rewrites remove
most of that work; the modules (and so the weights) are still
``segment_anything``'s:

* Without a mask prompt the first two-way block sees the same image tokens for
  every prompt, so its image-side projections are computed once per image
  (:meth:`FastMaskDecoder.prepare`, cached while the image stays set).
* The positional-encoding terms of every image-side projection are computed
  once per image.
* Where the image tokens differ per prompt they are never projected: the query,
  key and value projections move onto the few prompt tokens (``(q Wk) X^T``,
  ``(A X) Wv``, ``X (Wq^T k^T)``), which is cheaper while heads x tokens stays
  below the attention width.
* Image-to-token attention applies the output projection to the few token
  values before mixing them (``A (V W)`` instead of ``(A V) W``), keeps its
  scores token-major so the softmax runs along contiguous memory, and adds the
  residual inside the same GEMM.
* The final token-to-image attention runs only for the tokens read out (the IoU
  token and the masks asked for): each query attends to the image on its own.
* The mask upscaling runs as GEMMs in token layout, one prompt at a time,
  producing only the masks asked for.

Results equal ``MaskDecoder`` to float32 rounding (tested on random weights).
With ``precision='bf16'`` the same computation runs under ``torch.autocast``:
its GEMMs take bfloat16 operands (AMX / AVX512-BF16), for masks that agree
with float32's at mask IoU >= 0.98 on random weights (tested).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn import functional as F

from ..runtime.speed import autocast, autocast_dtype

if TYPE_CHECKING:  # segment_anything ships no types: to mypy its modules are Any (their attributes are dynamic)
    from segment_anything.modeling import Sam
    from segment_anything.modeling.transformer import Attention, TwoWayAttentionBlock

__all__ = ["DecoderContext", "FastMaskDecoder"]


def _split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """``B x L x (h*d)`` -> ``B x h x L x d`` (a view)."""
    b, length, c = x.shape
    return x.view(b, length, num_heads, c // num_heads).transpose(1, 2)


@dataclass
class DecoderContext:
    """Per-image tensors the decoder reuses for every prompt (token layout ``1 x N x C``)."""

    source: torch.Tensor  # the image embedding these were computed from
    image: torch.Tensor  # image tokens, no mask prompt added
    src: torch.Tensor  # image tokens + the no-mask dense embedding
    pe_terms: list[tuple[torch.Tensor, torch.Tensor]]  # per block: (k_t2i, q_i2t) terms from the PE + bias
    final_pe: torch.Tensor  # final token-to-image key term
    first: tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # block 0 (k, v, q) without a mask prompt
    size: tuple[int, int]


class FastMaskDecoder(nn.Module):
    """Drop-in computation of ``sam.mask_decoder`` (+ the prompt encoder's dense part).

    Args:
        sam: a ``segment_anything`` ``Sam`` whose ``mask_decoder`` holds a
            ``TwoWayTransformer`` (SAM, MobileSAM, RepViT-SAM all do).
        precision: ``'fp32'`` (exact), or ``'bf16'`` / ``'fp16'`` to run under ``torch.autocast``
            (outputs are handed back as float32).
    """

    UPSCALE_BLOCK = 4096
    """Image tokens upscaled per step: all of a 64x64 embedding (measured on a 2-core Xeon: fewer, larger calls
    beat cache-sized 512-token blocks by 6 % in float32 and 35 % in bf16)."""

    def __init__(self, sam: Sam, precision: str = "fp32") -> None:
        super().__init__()
        autocast_dtype(precision)  # checks the name
        self.mask_decoder = sam.mask_decoder
        self.prompt_encoder = sam.prompt_encoder
        self.precision = precision

    # -- per image -------------------------------------------------------------------------------
    @torch.no_grad()
    def prepare(self, image_embeddings: torch.Tensor) -> DecoderContext:
        """Everything that depends on the image only (``image_embeddings``: ``1 x C x h x w``)."""
        if image_embeddings.dim() != 4 or image_embeddings.shape[0] != 1:
            raise ValueError(f"expected one image embedding 1xCxHxW, got {tuple(image_embeddings.shape)}")
        transformer = self.mask_decoder.transformer
        h, w = (int(v) for v in self.prompt_encoder.image_embedding_size)  # static (a constant when traced)
        image = image_embeddings.flatten(2).transpose(1, 2).contiguous()
        pe = self.prompt_encoder.get_dense_pe().flatten(2).transpose(1, 2).contiguous()
        src = image + self.prompt_encoder.no_mask_embed.weight.view(1, 1, -1)
        pe_terms = []
        for layer in transformer.layers:
            t2i, i2t = layer.cross_attn_token_to_image, layer.cross_attn_image_to_token
            weight = torch.cat([t2i.k_proj.weight, i2t.q_proj.weight])
            bias = torch.cat([t2i.k_proj.bias, i2t.q_proj.bias])
            k_term, q_term = F.linear(pe, weight, bias).split(t2i.internal_dim, dim=-1)
            pe_terms.append((k_term, q_term))
        final = transformer.final_attn_token_to_image
        final_pe = F.linear(pe, final.k_proj.weight, final.k_proj.bias)
        first = self._image_projections(transformer.layers[0], src, pe_terms[0])
        if self.precision != "fp32":  # cast once per image, not on every call under autocast
            dtype = autocast_dtype(self.precision)
            image, src, final_pe = image.to(dtype), src.to(dtype), final_pe.to(dtype)
            pe_terms = [(k.to(dtype), q.to(dtype)) for k, q in pe_terms]
            first = tuple(t.to(dtype) for t in first)  # type: ignore[assignment]
        return DecoderContext(image_embeddings, image, src, pe_terms, final_pe, first, (h, w))

    @staticmethod
    def _image_projections(layer: TwoWayAttentionBlock, keys: torch.Tensor, pe_term: tuple[torch.Tensor, torch.Tensor]
                           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The three projections of one block that read the image tokens, as one GEMM."""
        t2i, i2t = layer.cross_attn_token_to_image, layer.cross_attn_image_to_token
        weight = torch.cat([t2i.k_proj.weight, t2i.v_proj.weight, i2t.q_proj.weight])
        k, v, q = F.linear(keys, weight).split(t2i.internal_dim, dim=-1)
        return k + pe_term[0], v + t2i.v_proj.bias, q + pe_term[1]

    # -- attention -------------------------------------------------------------------------------
    @staticmethod
    def _token_to_image(attn: Attention, queries: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                        shared: bool) -> torch.Tensor:
        """Tokens (``B x T x C``) attend to image keys/values (``1 x N x c`` if ``shared``, else ``B x N x c``)."""
        b, t, _ = queries.shape
        q = attn.q_proj(queries)
        if shared:  # one image for all prompts: their tokens form one long query list
            q = q.reshape(1, b * t, -1)
        out = F.scaled_dot_product_attention(_split_heads(q, attn.num_heads), _split_heads(k, attn.num_heads),
                                             _split_heads(v, attn.num_heads))
        return attn.out_proj(out.transpose(1, 2).reshape(b, t, -1))

    @staticmethod
    def _token_to_image_absorbed(attn: Attention, queries: torch.Tensor, keys: torch.Tensor, k_term: torch.Tensor,
                                 v_bias: torch.Tensor) -> torch.Tensor:
        """Tokens (``B x T x C``) attend to per-prompt image tokens ``keys`` (``B x N x C``), never projected.

        ``q (X Wk + k_term)^T = (q Wk) X^T + q k_term^T`` and ``A (X Wv + b) = (A X) Wv + b``: with
        ``heads x T`` below the internal width this costs fewer multiply-adds than projecting all ``N`` tokens.
        """
        heads, internal = attn.num_heads, attn.internal_dim
        b, t, _ = queries.shape
        n, channels = keys.shape[1:]
        q = _split_heads(attn.q_proj(queries), heads) * (internal // heads) ** -0.5  # B h T d, scaled
        folded = torch.matmul(q, attn.k_proj.weight.view(heads, -1, channels)).view(b, heads * t, channels)
        scores = torch.bmm(folded, keys.transpose(1, 2)).view(b, heads, t, n)
        pe_scores = torch.bmm(q.transpose(0, 1).reshape(heads, b * t, -1), _split_heads(k_term, heads)[0].mT)
        scores = scores.add_(pe_scores.view(heads, b, t, n).transpose(0, 1)).softmax(-1)
        mixed = torch.bmm(scores.view(b, heads * t, n), keys).view(b, heads, t, channels)
        out = torch.matmul(mixed, attn.v_proj.weight.view(heads, -1, channels).mT) + v_bias.view(heads, 1, -1)
        return attn.out_proj(out.transpose(1, 2).reshape(b, t, internal))

    @staticmethod
    def _image_to_token(attn: Attention, q: torch.Tensor | tuple[torch.Tensor, torch.Tensor], keys: torch.Tensor,
                        values: torch.Tensor, residual: torch.Tensor, in_place: bool = False) -> torch.Tensor:
        """``residual`` + image queries attending to the prompt tokens -> ``B x N x C``.

        ``q`` is either the projected image queries ``1 x N x c`` shared by all prompts, or per-prompt image
        tokens with their query term ``(X: B x N x C, q_term: 1 x N x c)``, whose projection moves onto the
        few tokens (``X (Wq^T k^T) + q_term k^T``). Scores are kept token-major (``B x h x T x N``) so the
        softmax over the few tokens runs along contiguous image positions; the output projection is applied
        to the token values first, and its bias rides on them (each head's weights sum to one).
        """
        heads = attn.num_heads
        b, t, _ = keys.shape
        k = _split_heads(attn.k_proj(keys), heads) * (attn.internal_dim // heads) ** -0.5  # B h T d, scaled
        v = attn.v_proj(values).view(b, t, heads, -1)  # B T h d
        out_w = attn.out_proj.weight.view(attn.out_proj.out_features, heads, -1).permute(1, 2, 0)  # h d C
        vw = (v.transpose(1, 2) @ out_w).add_(attn.out_proj.bias / heads).reshape(b, heads * t, -1)  # B (h T) C
        k_heads = k.transpose(0, 1).reshape(heads, b * t, -1)  # h (B T) d
        if isinstance(q, tuple):
            image, q_term = q
            n, channels = image.shape[1:]
            folded = torch.matmul(k, attn.q_proj.weight.view(heads, -1, channels)).view(b, heads * t, channels)
            scores = torch.bmm(folded, image.transpose(1, 2)).view(b, heads, t, n)
            pe_scores = torch.bmm(k_heads, _split_heads(q_term, heads)[0].mT).view(heads, b, t, n)
            scores = scores.add_(pe_scores.transpose(0, 1))
        else:
            n = q.shape[1]
            scores = torch.bmm(k_heads, _split_heads(q, heads)[0].mT).view(heads, b, t, n).transpose(0, 1)
        probs = scores.softmax(2).reshape(b, heads * t, n)
        if in_place:  # ``residual`` is the prompts' own tensor: add into it, no copy
            return residual.baddbmm_(probs.mT, vw)
        return torch.baddbmm(residual, probs.mT, vw)

    def _block(self, layer: TwoWayAttentionBlock, queries: torch.Tensor, query_pe: torch.Tensor, keys: torch.Tensor,
               context: DecoderContext, index: int, shared: bool) -> tuple[torch.Tensor, torch.Tensor]:
        if layer.skip_first_layer_pe:
            queries = layer.self_attn(q=queries, k=queries, v=queries)
        else:
            q = queries + query_pe
            queries = queries + layer.self_attn(q=q, k=q, v=queries)
        queries = layer.norm1(queries)
        t2i = layer.cross_attn_token_to_image
        k_term, q_term = context.pe_terms[index]
        q_image: torch.Tensor | tuple[torch.Tensor, torch.Tensor]
        if shared:
            k, v, q_image = context.first
            attn = self._token_to_image(t2i, queries + query_pe, k, v, True)
        else:
            attn = self._token_to_image_absorbed(t2i, queries + query_pe, keys, k_term, t2i.v_proj.bias)
            q_image = (keys, q_term)
        queries = layer.norm2(queries + attn)
        queries = layer.norm3(queries + layer.mlp(queries))
        keys = layer.norm4(self._image_to_token(layer.cross_attn_image_to_token, q_image, queries + query_pe,
                                                queries, keys, in_place=not shared))
        return queries, keys

    # -- masks -----------------------------------------------------------------------------------
    def _upscale_masks(self, keys: torch.Tensor, hyper: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """``output_upscaling`` + hypernetwork product in token layout; ``B x M x 4h x 4w``.

        The two stride-2 transposed convolutions act on each image token alone, so they are GEMMs over
        the tokens, in steps of :attr:`UPSCALE_BLOCK` tokens (bounding the activations' memory).
        """
        up = self.mask_decoder.output_upscaling
        conv1, norm, act1, conv2, act2 = up[0], up[1], up[2], up[3], up[4]
        b, m = hyper.shape[:2]
        h, w = size
        c1, c2 = conv1.out_channels, conv2.out_channels
        w1 = conv1.weight.permute(2, 3, 1, 0).reshape(-1, conv1.in_channels)  # (2 2 c1) x C
        w2 = conv2.weight.permute(2, 3, 1, 0).reshape(-1, conv2.in_channels)  # (2 2 c2) x c1
        b1, b2 = conv1.bias.repeat(4), conv2.bias.repeat(4)
        if self.precision != "fp32":  # cast once, not once per block
            w1, w2, b1, b2 = (t.to(autocast_dtype(self.precision)) for t in (w1, w2, b1, b2))
        masks = keys.new_empty(b, h * w * 16, m, dtype=hyper.dtype)  # the GEMMs' dtype (bf16 under autocast)
        step = self.UPSCALE_BLOCK
        for i in range(b):
            for start in range(0, h * w, step):
                x = F.linear(keys[i, start:start + step], w1, b1).view(-1, c1)
                x = act1(F.layer_norm(x, (c1,), norm.weight, norm.bias, norm.eps))
                x = act2(F.linear(x, w2, b2)).view(-1, c2)
                torch.mm(x, hyper[i].t(), out=masks[i, start * 16:(start + step) * 16])
        masks = masks.view(b, h, w, 2, 2, 2, 2, m).permute(0, 7, 1, 3, 5, 2, 4, 6)
        return masks.reshape(b, m, 4 * h, 4 * w)

    @torch.no_grad()
    def forward(self, context: DecoderContext, sparse_embeddings: torch.Tensor,
                dense_embeddings: torch.Tensor | None = None, multimask_output: bool | None = True
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Low-res mask logits ``B x M x 4h x 4w`` and IoU predictions ``B x M``, as ``MaskDecoder``.

        ``dense_embeddings`` is ``None`` when no mask prompt is given (the image-only
        work in ``context`` is then reused), else the prompt encoder's ``B x C x h x w``.
        ``multimask_output=None`` returns all mask tokens (single-mask output first).
        """
        with autocast(sparse_embeddings.device, self.precision):
            masks, iou = self._decode(context, sparse_embeddings, dense_embeddings, multimask_output)
        return masks.float(), iou.float()

    def _decode(self, context: DecoderContext, sparse_embeddings: torch.Tensor, dense_embeddings: torch.Tensor | None,
                multimask_output: bool | None) -> tuple[torch.Tensor, torch.Tensor]:
        decoder = self.mask_decoder
        transformer = decoder.transformer
        b = sparse_embeddings.shape[0]
        tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight])
        tokens = torch.cat([tokens.unsqueeze(0).expand(b, -1, -1), sparse_embeddings], dim=1)
        shared = dense_embeddings is None  # the image tokens are the same for every prompt until block 0 mixes them
        if dense_embeddings is None:
            keys = context.src
        else:
            keys = context.image + dense_embeddings.flatten(2).transpose(1, 2)
        queries = tokens
        for i, layer in enumerate(transformer.layers):
            queries, keys = self._block(layer, queries, tokens, keys, context, i, shared and i == 0)
        wanted = range(0, decoder.num_mask_tokens) if multimask_output is None else \
            range(1, decoder.num_mask_tokens) if multimask_output else range(0, 1)
        # the final attention only for the tokens read out (IoU + wanted masks): each query attends on its own
        index = [0, *(1 + i for i in wanted)]
        final = transformer.final_attn_token_to_image
        queries, tokens = queries[:, index], tokens[:, index]
        attn = self._token_to_image_absorbed(final, queries + tokens, keys, context.final_pe, final.v_proj.bias)
        queries = transformer.norm_final_attn(queries + attn)
        hyper = torch.stack([decoder.output_hypernetworks_mlps[i](queries[:, 1 + j]) for j, i in enumerate(wanted)],
                            dim=1)
        masks = self._upscale_masks(keys, hyper, context.size)
        iou = decoder.iou_prediction_head(queries[:, 0])[:, wanted.start:wanted.stop]
        return masks, iou
