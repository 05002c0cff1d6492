# Tiny Semantic FPN for CPU tests with a timm backbone: EfficientViT-M0 (timm `efficientvit_m0`, random init)
# through TimmBackbone, on the synthetic shapes of the RepViT-M0.6 tiny config it inherits. Its three levels sit
# at strides 16, 32, 64; neck channels and head strides follow from timm's feature_info.
_base_ = './fpn_repvit-m0.6_tiny-synthetic.py'
import repvit_plugins.mm.timm_config as timm_config  # noqa: E402

model = timm_config.semantic_fpn('efficientvit_m0', out_indices=3, norm_eval=False)
