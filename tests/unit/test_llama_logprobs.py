"""TokenLogprobRecorder: same values as llama-cpp-python's logits_all path, on the real Gemma GGUF."""

from __future__ import annotations

import numpy as np
import pytest

from local_backends.logprobs import TokenLogprobRecorder


def test_recorder_pairs_each_step_with_the_next_token() -> None:
    rec = TokenLogprobRecorder()
    vocab = 5
    steps = [np.log(np.array([0.1, 0.2, 0.3, 0.2, 0.2], np.float32)), np.log(np.full(vocab, 0.2, np.float32))]
    ids = np.array([7, 8])  # prompt
    rec(ids, steps[0])
    ids = np.append(ids, 2)  # token 2 sampled (p = 0.3)
    rec(ids, steps[1])
    ids = np.append(ids, 4)  # token 4 sampled (p = 0.2), fed back before finish
    assert rec.finish(ids) == pytest.approx([np.log(0.3), np.log(0.2)], abs=1e-5)


def test_unfed_last_token_is_dropped() -> None:
    rec = TokenLogprobRecorder()
    rec(np.array([1]), np.zeros(4, np.float32))
    assert rec.finish(np.array([1])) == []


@pytest.mark.stack
def test_matches_logits_all_on_real_model() -> None:
    llama_cpp = pytest.importorskip("llama_cpp")
    from policies.common.model_files import resolve_gguf

    path = str(resolve_gguf(None))
    prompt = "Question: What is the capital of France?\nAnswer:"
    kw = dict(max_tokens=8, temperature=0.0, repeat_penalty=1.0)
    ref_llm = llama_cpp.Llama(model_path=path, n_ctx=128, n_threads=1, logits_all=True, verbose=False)
    ref = ref_llm.create_completion(prompt, logprobs=1, **kw)["choices"][0]
    del ref_llm
    llm = llama_cpp.Llama(model_path=path, n_ctx=128, n_threads=1, logits_all=False, verbose=False)
    rec = TokenLogprobRecorder()
    out = llm.create_completion(prompt, logits_processor=llama_cpp.LogitsProcessorList([rec]), **kw)["choices"][0]
    got = rec.finish(llm.input_ids[: llm.n_tokens])
    assert out["text"] == ref["text"]
    expected = [x for x in ref["logprobs"]["token_logprobs"] if x is not None]
    n = len(got)
    assert n >= len(expected) - 1 and n > 0
    assert np.allclose(got, expected[:n], atol=0.05)
