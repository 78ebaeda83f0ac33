"""``python -m edgequant``."""

from edgequant.cli import main

raise SystemExit(main())
