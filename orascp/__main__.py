"""Run the command line: ``python -m orascp``."""

from orascp.cli.app import main

if __name__ == "__main__":
    main()
