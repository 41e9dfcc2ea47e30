"""The `imgclf` command line: every operator command, on a deployed stack or on the embedded local one."""
