"""The ganaug package: the `ganaug` command (ganaug.cli) and what users import."""
