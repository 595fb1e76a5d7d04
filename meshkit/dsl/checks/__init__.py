"""Whether a Meshfile makes a sound mesh: pure checks, every finding a ``Problem`` at its file and line."""
