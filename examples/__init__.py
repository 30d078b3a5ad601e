"""Example slurpers and job files shipped with slurp."""
