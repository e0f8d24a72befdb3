"""``python -m connector.cli``: the ``dt-connector`` command."""

import sys

from connector.cli.main import main

sys.exit(main())
