"""The console track: the formatter, context, setup_logging, attach_handler."""
