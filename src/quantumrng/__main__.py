"""``python -m quantumrng`` runs the ``qrng`` command line."""

from quantumrng.cli import main

main()
