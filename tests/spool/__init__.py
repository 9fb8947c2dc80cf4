"""The spool: files, claims, replay, the handler spooling, the spool commands."""
