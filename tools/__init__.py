"""Developer tools: the docs build, constraints renewal, wheels for offline hosts, the accelerator check, mutation testing."""
