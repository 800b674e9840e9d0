"""Entry point: `python cli.py COMMAND ...` (same as the installed `featurekit` command)."""
from featurekit.cli import app

if __name__ == "__main__":
    app()
