"""ragbot's retrieval-augmented core: sources → chunks → embeddings → store → retrieval → answers."""
