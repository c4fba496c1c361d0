"""`python -m tiktok_async`: the `tiktok-async` command line."""

import sys

from .cli import main

sys.exit(main())
