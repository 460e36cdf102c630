"""A question becomes an answer: retrieval, ranking, grounding, generation, citations, memory."""
