"""Install with ``bash tools/setup_env.sh`` (exact pins); ``pip install -e .[all]`` for loose ranges.

A built wheel carries ``configs/`` and the demo photos in ``repvit_plugins/.mim/`` (as OpenMMLab packages carry
theirs), so an installed package generates training configs and serves the demo without the checkout.
"""
import shutil
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
PACKAGED = {"configs": "configs", "demo/images": "demo/images"}
"""Checkout folders copied into ``repvit_plugins/.mim/`` of a built wheel (read by ``runtime/resources.py``)."""


class BuildWithResources(build_py):
    """``build_py`` that also copies :data:`PACKAGED` into the package (not for editable installs, which read the
    checkout)."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        for source, target in PACKAGED.items():
            destination = Path(self.build_lib) / "repvit_plugins" / ".mim" / target
            shutil.rmtree(destination, ignore_errors=True)
            shutil.copytree(HERE / source, destination, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))

EXTRAS = {
    "mm": ["mmengine>=0.10,<0.11", "mmcv>=2.0,<2.2", "mmdet>=3.1,<3.4", "mmsegmentation>=1.1,<1.3", "ftfy"],
    "grounding": ["transformers>=4.40,<5", "supervision>=0.25", "pycocotools>=2.0", "opencv-python-headless>=4.8"],
    "demo": ["gradio>=5,<6.18"],
    "onnx": ["onnx>=1.16", "onnxruntime>=1.18", "onnxscript>=0.2"],
    "dev": ["pytest>=8", "pytest-timeout", "timm>=1.0.9", "playwright>=1.45"],
}
EXTRAS["all"] = sorted({req for reqs in EXTRAS.values() for req in reqs})

setup(
    name="repvit_plugins",
    version="0.1.0",
    description="RepViT backbones, RepViT-SAM and text-prompted grounded segmentation, with OpenMMLab plugins",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["repvit_plugins", "repvit_plugins.*"]),
    package_data={"repvit_plugins": ["py.typed"]},
    cmdclass={"build_py": BuildWithResources},
    install_requires=[
        "torch>=2.1",
        "torchvision>=0.16",
        "numpy>=1.24",
        "pillow>=10",
        "tqdm>=4.60",
        "segment-anything>=1.0",
    ],
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["repvit-plugins=repvit_plugins.cli:main"]},
)
