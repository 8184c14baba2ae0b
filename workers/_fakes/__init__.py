"""Protocol-faithful fake servers (Ollama, OpenAI-compatible) for tests and plugin authors."""
