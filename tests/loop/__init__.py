"""The TDD loop: run, the pytest plugin, the questions the assistant asks."""
