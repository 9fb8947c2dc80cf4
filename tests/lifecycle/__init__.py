"""The process's life: exit, signals, fork, reconfiguration, servers' stops."""
