"""``python -m wandata.cli``: the ``wandata`` command (kept for scripts that used the old module)."""
from wandata.cli import main

main()
