"""Run the controller: ``python -m ipar_widgets.controller --profile-dir=...``."""

from .app import main

main()
