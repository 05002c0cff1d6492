#!/usr/bin/env python
"""Gradio demo of RepViT-SAM: text prompts (Grounding DINO -> RepViT-SAM), clicks, and everything mode.

Same as `repvit-plugins demo`; run with --help for the flags.
"""
import sys

from repvit_plugins.cli import main

if __name__ == "__main__":
    sys.exit(main(["demo", *sys.argv[1:]]))
