#!/usr/bin/env python3
"""Writes stories-topics.tsv: short sentences in the style of TinyStories about an animal, a food or a toy.

The label is the topic of the sentence's thing; names, places, verbs and adjectives are drawn from the same lists for
every topic, so the thing (and what the model makes of the sentence) is the only signal. A fixed seed makes the file
reproducible: `python3 make_stories_topics.py > stories-topics.tsv`. Rows are in random order with a Split column
(train 70 %, test 30 %).
"""
import random

SEED = 16
ROWS = 300
TRAIN_FRACTION = 0.7

NAMES = ["Lily", "Tom", "Sue", "Ben", "Mia", "Max", "Anna", "Tim", "Sara", "Jack"]
PLACES = ["park", "garden", "house", "yard", "forest", "kitchen", "room", "school"]
ADJECTIVES = ["big", "little", "red", "happy", "soft", "funny", "old", "new", "shiny", "brown"]
THINGS = {
    "animal": ["dog", "cat", "bird", "fish", "bunny", "frog", "duck", "bear", "lion", "mouse", "cow", "horse"],
    "food": ["cake", "apple", "cookie", "pie", "soup", "bread", "candy", "banana", "carrot", "pizza", "cheese", "milk"],
    "toy": ["ball", "doll", "car", "kite", "teddy", "truck", "robot", "train", "block", "boat", "puzzle", "drum"],
}
TEMPLATES = [
    "{name} saw a {adj} {thing} in the {place}.",
    "{name} found a {adj} {thing} near the {place}.",
    "One day, {name} had a {adj} {thing}.",
    "The {thing} was very {adj}.",
    "{name} liked the {adj} {thing} a lot.",
    "There was a {adj} {thing} in the {place}.",
    "{name} showed Mom the {thing}.",
    "{name} and the {thing} were in the {place}.",
]


def main() -> None:
    rng = random.Random(SEED)
    labels = sorted(THINGS)
    print("Label\tText\tSplit")
    for i in range(ROWS):
        label = labels[i % len(labels)]
        text = rng.choice(TEMPLATES).format(
            name=rng.choice(NAMES), adj=rng.choice(ADJECTIVES), thing=rng.choice(THINGS[label]), place=rng.choice(PLACES))
        split = "train" if rng.random() < TRAIN_FRACTION else "test"
        print(f"{label}\t{text}\t{split}")


if __name__ == "__main__":
    main()
