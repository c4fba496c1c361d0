"""`python -m tiktok_async.cli`: the `tiktok-async` command line."""

import sys

from ._main import main

sys.exit(main())
