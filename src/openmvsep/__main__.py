"""`python -m openmvsep`: the same command as the `openmvsep` script, for when the script is not on PATH."""

from openmvsep.cli import app

app()
