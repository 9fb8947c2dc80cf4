"""The other commands: schema, init, doctor; what the command line prints."""
