"""`python -m tiktok_async`: the `tiktok-async` command line."""

import sys

from ._cli import main

sys.exit(main())
