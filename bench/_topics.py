"""A small four-topic text dataset for the export benchmark (no dataset download here).

Sentences are drawn from per-topic phrase lists with a fixed seed, then written as a CSV that
``graft train`` reads. They are templated, so they are easier than real text; what the bench
measures is how much each export loses against the float Keras model on the same sentences.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

TOPICS = {
    "sport": (
        [
            "The striker",
            "Our goalkeeper",
            "The home team",
            "The young sprinter",
            "The captain",
            "The tennis champion",
            "The visiting side",
            "The marathon runner",
            "The coach",
        ],
        [
            "scored twice in",
            "was injured during",
            "celebrated after",
            "trained hard for",
            "lost narrowly in",
            "was praised after",
            "dominated",
            "was sent off in",
        ],
        [
            "the cup final",
            "the derby",
            "the last minute of the match",
            "the league game",
            "the semi-final",
            "the championship race",
            "the penalty shootout",
            "extra time",
        ],
    ),
    "cooking": (
        [
            "Simmer the sauce",
            "Knead the dough",
            "Whisk the eggs",
            "Roast the vegetables",
            "Season the soup",
            "Fry the onions",
            "Bake the bread",
            "Marinate the chicken",
        ],
        [
            "for ten minutes",
            "until golden",
            "with a pinch of salt",
            "in olive oil",
            "over a low heat",
            "with fresh herbs",
            "until it thickens",
            "in a hot oven",
        ],
        [
            "before serving",
            "and stir well",
            "then let it rest",
            "for the dinner party",
            "with garlic and lemon",
            "and taste again",
            "in a cast iron pan",
            "for the family",
        ],
    ),
    "weather": (
        [
            "Heavy rain",
            "A cold front",
            "Strong winds",
            "Thick fog",
            "A heatwave",
            "Thunderstorms",
            "Light snow",
            "Sunny spells",
        ],
        [
            "is expected across",
            "will sweep over",
            "will ease in",
            "is forecast for",
            "brings flooding to",
            "will clear from",
            "returns to",
            "will linger over",
        ],
        [
            "the north tonight",
            "the coast tomorrow",
            "the valleys by noon",
            "the region this week",
            "the mountains overnight",
            "the capital this afternoon",
            "most areas at the weekend",
            "the islands later",
        ],
    ),
    "finance": (
        [
            "Shares in the bank",
            "The central bank",
            "Oil prices",
            "The stock market",
            "Investors",
            "The currency",
            "Bond yields",
            "The retailer's profits",
        ],
        [
            "rose sharply after",
            "fell following",
            "recovered despite",
            "were hit by",
            "surged on",
            "slipped ahead of",
            "held steady after",
            "dropped on",
        ],
        [
            "the interest rate decision",
            "weak quarterly earnings",
            "the inflation figures",
            "the merger announcement",
            "fears of a recession",
            "the budget statement",
            "strong export data",
            "the trade talks",
        ],
    ),
}


# Phrases every topic uses: each part of a sentence is generic with probability GENERIC, so
# some sentences carry little or no topic signal (the float model is not at 100%).
SHARED = (
    ["Everyone", "The group", "Local people", "Officials", "The report", "Many", "It"],
    [
        "was talked about after",
        "changed again during",
        "was mentioned in",
        "came up at",
        "was noticed during",
        "was seen before",
    ],
    [
        "the weekend",
        "the announcement",
        "yesterday's news",
        "the meeting",
        "this week",
        "the evening",
        "the town hall event",
    ],
)
GENERIC = 0.45


def write_topics_csv(path: str | Path, per_topic: int = 100, seed: int = 0) -> Path:
    """Writes ``per_topic`` distinct sentences for each topic to ``path`` (text,label)."""
    rng = random.Random(seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for topic, (subjects, verbs, objects) in TOPICS.items():
        seen: set[str] = set()
        while len(seen) < per_topic:
            parts = [
                rng.choice(shared if rng.random() < GENERIC else own)
                for own, shared in zip((subjects, verbs, objects), SHARED, strict=True)
            ]
            seen.add(" ".join(parts) + ".")
        rows += [(text, topic) for text in sorted(seen)]
    rng.shuffle(rows)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return path
