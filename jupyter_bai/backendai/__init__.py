"""Backend.AI's REST API and the engine list, below both the engine and the client."""
