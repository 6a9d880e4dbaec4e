"""`python -m graphdsl`: the same as the `graphdsl` command (also under torchrun)."""

from graphdsl.cli.main import run

run()
