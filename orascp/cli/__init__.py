"""Parse the command line and present results; no HTTP is spoken here."""
