"""``python -m wandata``: the ``wandata`` command."""
from wandata.cli import main

main()
