"""The embedding server's batcher gathers concurrent requests into one forward pass."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from local_backends.embedding_server import Batcher, Encoder, parse_embedding_request


class CountingEncoder(Encoder):
    """The real model, counting how many forward passes it runs."""

    def __init__(self) -> None:
        super().__init__(None, 2)
        self.batches: list[int] = []

    def encode(self, texts: list[str]):
        self.batches.append(len(texts))
        return super().encode(texts)


@pytest.fixture(scope="module")
def encoder() -> CountingEncoder:
    return CountingEncoder()


@pytest.mark.stack
def test_concurrent_requests_share_batches_and_keep_their_own_results(encoder: CountingEncoder) -> None:
    sentences = [f"sentence number {i} about topic {i % 5}" for i in range(24)]

    async def run() -> list[np.ndarray]:
        b = Batcher(encoder, max_batch=64, wait_ms=5)
        b.start()
        out = await asyncio.gather(*(b.submit([s]) for s in sentences))
        await b.stop()
        return [v[0][0] for v in out]

    encoder.batches.clear()
    got = asyncio.run(run())
    assert len(encoder.batches) < len(sentences) / 2, encoder.batches
    expected, _ = encoder.encode(sentences)
    assert np.allclose(np.stack(got), expected, atol=1e-4), "each request gets its own sentence's vector"


def test_max_batch_is_respected(encoder: CountingEncoder) -> None:
    async def run() -> None:
        b = Batcher(encoder, max_batch=4, wait_ms=20)
        b.start()
        await asyncio.gather(*(b.submit(["x y z"]) for _ in range(10)))
        await b.stop()

    encoder.batches.clear()
    asyncio.run(run())
    assert max(encoder.batches) <= 4 and sum(encoder.batches) == 10


@pytest.mark.parametrize(
    ("body", "ok"),
    [
        ({"input": "a"}, True),
        ({"input": ["a", "b"], "encoding_format": "base64"}, True),
        ({"input": []}, False),
        ({"input": [[], []]}, False),
        ({"input": [1, 2]}, True),  # token ids (OpenAI's convention: cl100k_base), as LangChain sends them
        ({"input": [[15339, 1917], [15339]]}, True),
        ({"input": [1, "a"]}, False),
        ({"input": ""}, False),
        ({"input": "a", "encoding_format": "int8"}, False),
        (["a"], False),
    ],
)
def test_request_validation(body, ok: bool) -> None:
    try:
        texts, _ = parse_embedding_request(body)
    except ValueError:
        assert not ok
    else:
        assert ok and all(texts)


def test_token_ids_are_read_back_as_their_text() -> None:
    assert parse_embedding_request({"input": [[15339, 1917]]})[0] == ["hello world"]


def test_a_lone_request_does_not_wait_for_the_batching_window(encoder: CountingEncoder) -> None:
    # A 10 s window would be paid in full by a lone request if the batcher always waited.
    async def run() -> float:
        b = Batcher(encoder, max_batch=64, wait_ms=10_000)
        b.start()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await b.submit(["just one sentence"])
        await b.stop()
        return loop.time() - t0

    assert asyncio.run(run()) < 5.0


def test_one_request_with_many_inputs_is_encoded_max_batch_at_a_time(encoder: CountingEncoder) -> None:
    # One forward pass over a whole request's inputs grew the server by ~4.4 MB per 256-token input (measured:
    # 256 inputs +1.1 GB; OpenAI's 2,048, as LangChain sends 1,000 at a time, ~9 GB): max_batch bounds it.
    texts = [f"sentence number {i} about topic {i % 3}" for i in range(10)]

    async def run() -> np.ndarray:
        b = Batcher(encoder, max_batch=4, wait_ms=0)
        b.start()
        vecs, counts = await b.submit(texts)
        await b.stop()
        assert len(counts) == len(texts)
        return vecs

    encoder.batches.clear()
    got = asyncio.run(run())
    assert encoder.batches == [4, 4, 2]
    expected = np.stack([encoder.encode([t])[0][0] for t in texts])
    assert got.shape == (10, encoder.dim) and np.allclose(got, expected, atol=1e-4)


def test_more_inputs_than_openai_takes_are_refused() -> None:
    assert len(parse_embedding_request({"input": ["a"] * 2048})[0]) == 2048
    with pytest.raises(ValueError, match="2048"):
        parse_embedding_request({"input": ["a"] * 2049})
    with pytest.raises(ValueError, match="2048"):
        parse_embedding_request({"input": [[1, 2]] * 2049})
