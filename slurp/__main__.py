"""``python -m slurp``: the same as the ``slurp`` console script."""

from slurp.cli import main

main()
