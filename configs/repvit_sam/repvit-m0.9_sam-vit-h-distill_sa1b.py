# A phone-sized RepViT-SAM: RepViT-M0.9 encoder (ImageNet-pretrained) distilled from SAM ViT-H, same recipe as
# repvit-m2.3_sam-vit-h-distill_sa1b.py (1% of SA-1B, 8 epochs, MSE on the 256x64x64 embeddings). The embedding
# cache of the M2.3 config is reused as it is: the teacher and the images are the same.
_base_ = ['./repvit-m2.3_sam-vit-h-distill_sa1b.py']

model = dict(student=dict(arch='m0_9', pretrained='repvit_m0_9_distill_450e'))
