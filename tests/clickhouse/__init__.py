"""Against a real ClickHouse (the server the suite starts, or chDB)."""
