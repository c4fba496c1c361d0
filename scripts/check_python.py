"""Stop `make` early, with what to do, when the Python it was given is too old.

    python scripts/check_python.py      (the Makefile runs it before making the venv)

The library and the command line run on Python 3.10 or later, but the development tools
`make setup` installs (the `dev` extra: the httpx2 baseline among them) need 3.11: with
3.10, pip would fail minutes later on "No matching distribution found for httpx2".
Written for any Python 3, so that an old one gets the message, not a syntax error.
"""

import sys

NEEDED = (3, 11)


def problem(version=None):
    """What is wrong with `version` (default: this interpreter's), or None."""
    major, minor = (version or sys.version_info)[:2]
    if (major, minor) >= NEEDED:
        return None
    return ("make: the development tools need Python {}.{} or later; this is {}.{} ({}). "
            "Run make with a newer one, for example: make test PYTHON=python3.11"
            .format(*NEEDED, major, minor, sys.executable))


if __name__ == "__main__":
    sys.exit(problem())
