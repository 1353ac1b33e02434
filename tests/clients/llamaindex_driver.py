"""Runs one LlamaIndex call against the proxy and prints the result as JSON (one line).

Run by test_llamaindex.py in LlamaIndex's own virtualenv (`<venv>/llamaindex`, made by
`scripts/install.sh test`): llama-index-llms-openai caps `openai` below 3, which the Agents SDK and
pydantic-ai need, so LlamaIndex cannot share the project's venv. Like a real application, it is
its own process with its own dependencies. Imports nothing from this repository.

    python llamaindex_driver.py BASE_URL KEY MODEL complete|stream_complete|chat|embed
"""

from __future__ import annotations

import json
import sys


def main() -> None:
    base_url, key, model, op = sys.argv[1:5]
    if op == "embed":
        from llama_index.embeddings.openai import OpenAIEmbedding

        emb = OpenAIEmbedding(model_name=model, api_base=base_url + "/v1", api_key=key, max_retries=0, timeout=120)
        vecs = emb.get_text_embedding_batch(["The cat sat on the mat.", "Budgets stop overspending."])
        print(json.dumps({"dims": [len(v) for v in vecs]}))
        return
    from llama_index.llms.openai_like import OpenAILike

    # Defaults otherwise: is_chat_model=False, so complete() calls /v1/completions.
    llm = OpenAILike(model=model, api_base=base_url + "/v1", api_key=key, max_tokens=24, max_retries=0, timeout=120)
    if op == "complete":
        text = llm.complete("The capital of France is").text
    elif op == "stream_complete":
        text = "".join(r.delta or "" for r in llm.stream_complete("The capital of France is"))
    elif op == "chat":
        from llama_index.core.llms import ChatMessage

        text = str(llm.chat([ChatMessage(role="user", content="What is the capital of France?")]).message.content)
    else:
        raise SystemExit(f"unknown op {op}")
    print(json.dumps({"text": text}))


if __name__ == "__main__":
    main()
