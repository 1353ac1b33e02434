"""Sentence embeddings for the router and the quality scorer.

- `base`: the Embedder interface, the HTTP client of the local embedding server, full MiniLM in-process;
- `static`: MiniLM distilled to one vector per token, numpy only, about a millisecond (what the proxy runs);
- `encoder`: the sentence-transformers model itself (the embedding server and offline tools load it);
- `names`: embedders by the name a trained artifact records, so train and serve embed alike.
"""
