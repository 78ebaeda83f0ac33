"""``python -m edgequant.cli``."""

from edgequant.cli import main

raise SystemExit(main())
