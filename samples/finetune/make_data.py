#!/usr/bin/env python3
"""Generates the fine-tuning demo data for the stories260K model (deterministic: seeded).

Style task (causal LM): short stories in a style the base model does not produce: the hero is always
a small dragon named Pim, and every story ends with the same refrain
  'And Pim sang: "Tip tap toe, home we go!"'
Classification task: a story is happy (label 1) or sad (label 0).

Writes style-train.jsonl, style-eval.jsonl, mood-train.jsonl, mood-eval.jsonl next to this script.
"""
import json
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))

PLACES = ["the park", "the forest", "the big hill", "the garden", "the river", "the beach", "the farm", "the little town"]
FRIENDS = ["a cat", "a dog", "a bird", "a frog", "a bunny", "a bear", "a duck", "a fox"]
THINGS = ["a red ball", "a shiny stone", "a big box", "a blue hat", "a toy car", "a soft blanket", "a yellow kite", "a small boat"]
FEELINGS = ["happy", "excited", "proud", "glad"]
ACTIONS = ["played", "ran", "jumped", "danced", "laughed", "looked around"]
REFRAIN = 'And Pim sang: "Tip tap toe, home we go!"'


def style_story(rng):
    place, friend, thing = rng.choice(PLACES), rng.choice(FRIENDS), rng.choice(THINGS)
    feeling, action = rng.choice(FEELINGS), rng.choice(ACTIONS)
    return (f"Pim the little dragon went to {place}. There Pim met {friend}. "
            f"They found {thing} and {action} all day. Pim was very {feeling}. {REFRAIN}")


HAPPY = ["was very happy", "smiled a lot", "laughed and played", "had the best day", "felt warm and glad"]
SAD = ["was very sad", "cried a lot", "felt alone", "had a bad day", "was sad and tired"]
NAMES = ["Tom", "Lily", "Sam", "Mia", "Ben", "Sue", "Max", "Anna"]


def mood_story(rng, happy):
    name, place, thing = rng.choice(NAMES), rng.choice(PLACES), rng.choice(THINGS)
    feeling = rng.choice(HAPPY if happy else SAD)
    if happy:
        middle = f"{name} found {thing}."
    else:
        middle = f"{name} lost {thing}."
    return f"{name} went to {place}. {middle} {name} {feeling}."


def write(name, rows):
    with open(os.path.join(HERE, name), "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def main():
    rng = random.Random(15)
    stories = sorted({style_story(rng) for _ in range(400)})
    rng.shuffle(stories)
    write("style-train.jsonl", [{"text": s} for s in stories[:200]])
    write("style-eval.jsonl", [{"text": s} for s in stories[200:240]])

    moods = []
    seen = set()
    while len(moods) < 240:
        happy = rng.random() < 0.5
        s = mood_story(rng, happy)
        if s not in seen:
            seen.add(s)
            moods.append({"text": s, "label": 1 if happy else 0})
    write("mood-train.jsonl", moods[:200])
    write("mood-eval.jsonl", moods[200:])


if __name__ == "__main__":
    main()
