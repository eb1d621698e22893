"""posetune's test suite (a regular package, so a stray site-packages ``tests`` cannot shadow it)."""
