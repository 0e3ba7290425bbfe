"""``python -m controller.cli``: the same as ``labctl``."""

from controller.cli import main

main()
