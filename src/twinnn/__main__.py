"""``python -m twinnn``: the ``twinnn`` command (see ``twinnn.cli``)."""

from __future__ import annotations

from twinnn.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
