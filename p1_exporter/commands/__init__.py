"""The command-line interface and one module per subcommand."""
