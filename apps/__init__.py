"""Thin command-line entry points: one `v2d` command with subcommands."""
