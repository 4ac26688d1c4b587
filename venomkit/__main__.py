"""``python -m venomkit`` is the ``venomkit`` command."""

import sys

from venomkit.cli import main

sys.exit(main())
