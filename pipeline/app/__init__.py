"""The application: the command line, descriptions of plugins and graphs, process settings."""
