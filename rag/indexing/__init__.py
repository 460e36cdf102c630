"""Documents become an index: chunks, vectors in the store, the BM25 index, the incremental ingest."""
