"""`python -m tap_bitbucket`: the `tap-bitbucket` command."""

from tap_bitbucket.cli import console

console()
