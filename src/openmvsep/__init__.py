"""openmvsep: a self-hosted music source separation service that speaks the MVSep API."""

# The one place the version is written: pyproject.toml reads it (setuptools `attr:`, parsed without importing
# anything) and the API reports it in its OpenAPI document.
__version__ = "0.1.0"
