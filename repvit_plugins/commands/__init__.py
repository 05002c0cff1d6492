"""Subcommands of ``repvit-plugins``; see :mod:`repvit_plugins.cli`."""
