"""The toy grammar (``data/grammar.json``): a corpus of grammatical sentences and minimal
pairs (grammatical vs ungrammatical) in several item groups, deterministic per seed."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

DATA = resources.files("baton.example") / "data"


@cache
def grammar() -> dict:
    return json.loads((DATA / "grammar.json").read_text())


@dataclass(frozen=True)
class Pair:
    item_group: str
    form: str
    good: str
    bad: str


def _np(rng: random.Random, number: str, adjective: bool = True) -> tuple[str, str]:
    """A noun phrase of ``number`` and the noun's gender (m, f, n)."""
    g = grammar()
    sg, pl, gender = rng.choice(g["nouns"])
    det = rng.choice(g["determiners"][number])
    words = [det]
    if adjective and rng.random() < 0.3:
        words.append(rng.choice(g["adjectives"]))
    words.append(sg if number == "sg" else pl)
    return " ".join(words), gender


def _verb(kind: str, number: str, rng: random.Random) -> str:
    sg, pl = rng.choice(grammar()[kind])
    return sg if number == "sg" else pl


def sentence(rng: random.Random) -> str:
    """One grammatical sentence."""
    g = grammar()
    number = rng.choice(["sg", "pl"])
    subject, gender = _np(rng, number)
    if rng.random() < 0.25:
        subject += f" {rng.choice(g['prepositions'])} {_np(rng, rng.choice(['sg', 'pl']))[0]}"
    roll = rng.random()
    if roll < 0.4:
        rest = _verb("intransitive", number, rng)
        if rng.random() < 0.3:
            rest += " " + rng.choice(g["adverbs"])
    elif roll < 0.8:
        rest = f"{_verb('transitive', number, rng)} {_np(rng, rng.choice(['sg', 'pl']))[0]}"
    else:
        key = "pl" if number == "pl" else gender
        if key == "n":
            key = rng.choice(["m", "f"])  # an animal is he or she
        rest = f"{_verb('transitive', number, rng)} {g['reflexives'][key]}"
    return f"{subject} {rest} ."


def corpus(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [sentence(rng) for _ in range(n)]


def minimal_pairs(per_group: int = 60, seed: int = 1) -> Iterator[Pair]:
    """Pairs in four item groups; ``form`` says which number or gender is tested."""
    g = grammar()
    rng = random.Random(seed)
    other = {"sg": "pl", "pl": "sg"}
    for i in range(per_group):
        number = "sg" if i % 2 == 0 else "pl"
        form = "singular" if number == "sg" else "plural"
        # subject-verb agreement
        subject, _ = _np(rng, number)
        sg, pl = rng.choice(g["intransitive"])
        right, wrong = (sg, pl) if number == "sg" else (pl, sg)
        yield Pair("subject_verb_agreement", form, f"{subject} {right} .", f"{subject} {wrong} .")
        # agreement across a prepositional phrase with an attractor of the other number
        subject, _ = _np(rng, number, adjective=False)
        attractor, _ = _np(rng, other[number], adjective=False)
        prep = rng.choice(g["prepositions"])
        sg, pl = rng.choice(g["intransitive"])
        right, wrong = (sg, pl) if number == "sg" else (pl, sg)
        yield Pair("agreement_across_pp", form, f"{subject} {prep} {attractor} {right} .",
                   f"{subject} {prep} {attractor} {wrong} .")
        # determiner-noun agreement
        noun_sg, noun_pl, _ = rng.choice(g["nouns"])
        noun = noun_sg if number == "sg" else noun_pl
        pairs = {"sg": [("this", "these"), ("that", "those")],
                 "pl": [("these", "this"), ("those", "that")]}
        right_det, wrong_det = rng.choice(pairs[number])
        verb = _verb("intransitive", number, rng)
        yield Pair("determiner_noun_agreement", form, f"{right_det} {noun} {verb} .",
                   f"{wrong_det} {noun} {verb} .")
        # anaphor agreement: gender for singular people, number for plurals
        people = [n for n in g["nouns"] if n[2] in "mf"]
        noun_sg, noun_pl, gender = rng.choice(people)
        det = rng.choice(g["determiners"][number])
        verb = _verb("transitive", number, rng)
        if number == "sg":
            right, wrong = g["reflexives"][gender], g["reflexives"]["f" if gender == "m" else "m"]
            phrase, aform = f"{det} {noun_sg}", "masculine" if gender == "m" else "feminine"
        else:
            right, wrong = g["reflexives"]["pl"], g["reflexives"][rng.choice("mf")]
            phrase, aform = f"{det} {noun_pl}", "plural"
        yield Pair("anaphor_agreement", aform, f"{phrase} {verb} {right} .",
                   f"{phrase} {verb} {wrong} .")


def shipped_corpus() -> list[str]:
    """The corpus file the package ships (``data/corpus.txt``)."""
    return (DATA / "corpus.txt").read_text().splitlines()


def write_corpus(path: Path, n: int = 6000, seed: int = 0) -> None:
    path.write_text("\n".join(corpus(n, seed)) + "\n")


if __name__ == "__main__":
    write_corpus(Path(str(DATA / "corpus.txt")))
