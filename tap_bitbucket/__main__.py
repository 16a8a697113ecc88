"""`python -m tap_bitbucket`: the `tap-bitbucket` command."""

import sys

from tap_bitbucket.cli import main

sys.exit(main())
