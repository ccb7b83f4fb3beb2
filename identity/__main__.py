"""`python -m identity ...`: the `identity` command, for when its script is not on PATH."""

from identity.cli import main

main()
