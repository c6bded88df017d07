"""Allow ``python -m wattkeeper``."""

from wattkeeper.cli import main

raise SystemExit(main())
