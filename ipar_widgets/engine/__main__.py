"""Run an engine: ``python -m ipar_widgets.engine --file=<ipar-engine*.json>``."""

from .app import main

main()
