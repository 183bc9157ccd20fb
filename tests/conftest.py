"""Session set-up shared by every test folder."""

from __future__ import annotations

import warnings


def pytest_configure(config):
    """Import arviz once in the controlling process, before pytest-xdist starts its workers.

    On its first import of a day arviz (0.23) writes a stamp file in the user's cache by
    renaming a fixed temporary name; two workers importing it at once on a fresh machine
    race on that rename and one fails collection with FileNotFoundError (seen on a fresh
    checkout with -n 2). Once the stamp exists the workers only read it."""
    if hasattr(config, "workerinput"):  # an xdist worker: the controller did it
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import arviz  # noqa: F401
    except ImportError:  # the optional extra is absent: nothing races
        pass
