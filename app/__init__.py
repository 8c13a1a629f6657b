"""Entry points: configuration loading, the composition root and the CLI."""
