"""Synthetic labelled traffic for the learning tests: a topic rule the shipped router does not know.

Requests about specialist topics (tax law, pharmacology, ...) are labelled 1 (the local answer was
not good enough), everyday topics 0, with the same templates and lengths on both sides: only what a
request is about tells them apart, which the embedding and the token weights can learn.
"""

from __future__ import annotations

import random
from typing import Any

HARD = [
    "capital gains tax on inherited shares",
    "indemnification clauses in a supplier contract",
    "drug interactions between warfarin and antibiotics",
    "the statute of limitations for breach of contract",
    "pharmacokinetics of extended-release opioids",
    "transfer pricing rules for subsidiaries",
    "dosage adjustment for renal impairment",
    "liability for defective products under EU law",
    "deferred tax assets on the balance sheet",
    "contraindications of beta blockers in asthma",
]
EASY = [
    "a simple pasta recipe for dinner",
    "packing tips for a weekend trip",
    "how often to water basil",
    "fun games for a birthday party",
    "choosing a name for a new puppy",
    "a relaxing evening routine",
    "what to see in a small seaside town",
    "keeping a kitchen tidy",
    "ideas for a picnic lunch",
    "cleaning white sneakers",
]
TEMPLATES = [
    "Can you explain {t}?",
    "I need a short overview of {t}, please.",
    "Tell me about {t}.",
    "What should I know about {t}? Keep it brief.",
    "Give me three points on {t}.",
    "Write a paragraph about {t} for our customers.",
]


def request(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


def traffic(n: int, seed: int = 0, flip: float = 0.0) -> tuple[list[dict[str, Any]], list[float]]:
    """n requests and their labels (hard topic = 1), a share `flip` of labels inverted."""
    rng = random.Random(seed)
    reqs, labels = [], []
    for _ in range(n):
        hard = rng.random() < 0.5
        topic = rng.choice(HARD if hard else EASY)
        text = rng.choice(TEMPLATES).format(t=topic)
        if rng.random() < 0.5:
            text += f" Our reference is case {rng.randint(100, 999)}."
        reqs.append(request(text))
        y = 1.0 if hard else 0.0
        labels.append(1.0 - y if rng.random() < flip else y)
    return reqs, labels
