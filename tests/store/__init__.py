"""NSDB backend tests (a package, so module names cannot clash with other areas)."""
