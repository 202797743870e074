"""``python -m steprun``: the ``steprun`` command."""

from steprun.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
