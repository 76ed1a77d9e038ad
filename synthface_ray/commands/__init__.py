"""``synthface`` subcommands: each module defines ``Config`` and ``run``; ``catalog`` holds their help and flags."""
