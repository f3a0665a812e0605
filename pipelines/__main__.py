"""``python -m pipelines`` runs the ``recon`` command."""

import sys

from pipelines.cli import main

sys.exit(main())
