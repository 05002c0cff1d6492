"""Writers for segmentation results: COCO RLE JSON, per-instance PNG masks, YOLO-seg labels, annotated images."""
from ..io.atomic import atomic_write_bytes, atomic_write_text
from .coco import coco_annotations, coco_dataset, mask_to_rle, rle_to_mask
from .png_masks import mask_files, png_bytes, write_png_masks
from .yolo import yolo_seg_lines

__all__ = [
    "atomic_write_bytes",
    "atomic_write_text",
    "coco_annotations",
    "coco_dataset",
    "mask_files",
    "mask_to_rle",
    "png_bytes",
    "rle_to_mask",
    "write_png_masks",
    "yolo_seg_lines",
]
