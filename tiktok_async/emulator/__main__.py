"""`python -m tiktok_async.emulator [options]`: the same as `tiktok-async serve`."""

import sys

from ._serve import main

if __name__ == "__main__":
    sys.exit(main())
