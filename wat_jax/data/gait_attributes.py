"""DenseGait's 42 appearance attributes: their CSV columns, attribute sets (the
binarised labels of one person) and the sentence that describes a set.

The column names are the release's, in the order of PAPER.md task B; the
loader (`densegait.py`) reads them, and the tasks, search and pictures name
attributes through this module.
"""

import numpy as np

from wat_jax.errors import fail

# The annotations CSV's key columns, before the attribute columns below.
TRACK_COLUMN, FILE_COLUMN = "track_id", "file_name"

# (CSV column, group, readable phrase), in the order of PAPER.md task B. Column names are
# the DenseGait release's, its typo "OtherAttchment" included; the release has both
# "No accessory" and "No carrying", which makes 42.
ATTRIBUTES = (
    ("Female", "gender", "a woman"),
    ("BodyThin", "body shape", "of thin build"),
    ("BodyNormal", "body shape", "of normal build"),
    ("BodyFat", "body shape", "of heavy build"),
    ("Front", "viewpoint", "seen from the front"),
    ("Side", "viewpoint", "seen from the side"),
    ("Back", "viewpoint", "seen from the back"),
    ("AgeChild", "age", "a child"),
    ("AgeYoungAdult", "age", "a young adult"),
    ("AgeMediumAdult", "age", "an adult"),
    ("AgeOldAdult", "age", "a middle-aged person"),
    ("AgeSenior", "age", "an elderly person"),
    ("Backpack", "carrying", "carrying a backpack"),
    ("Bag", "carrying", "carrying a bag"),
    ("HandTrunk", "carrying", "pulling a hand trunk"),
    ("OtherAttchment", "carrying", "carrying some other attachment"),
    ("No accessory", "carrying", "with no accessory"),
    ("No carrying", "carrying", "carrying nothing"),
    ("Sandals", "footwear", "wearing sandals"),
    ("Shoes", "footwear", "wearing shoes"),
    ("LeatherShoes", "footwear", "wearing leather shoes"),
    ("SportShoes", "footwear", "wearing sport shoes"),
    ("Boots", "footwear", "wearing boots"),
    ("Sneaker", "footwear", "wearing sneakers"),
    ("ClothShoes", "footwear", "wearing cloth shoes"),
    ("Calling", "action", "talking on the phone"),
    ("Talking", "action", "talking"),
    ("Gathering", "action", "walking in a group"),
    ("Holding", "action", "holding something"),
    ("Pulling", "action", "pulling something"),
    ("CarryingbyArm", "action", "carrying something over the arm"),
    ("CarryingbyHand", "action", "carrying something in the hand"),
    ("HoldObjectsInFront", "action", "holding objects in front of the body"),
    ("CasualWear", "clothing", "wearing casual clothes"),
    ("Jacket", "clothing", "wearing a jacket"),
    ("FormalWear", "clothing", "wearing formal clothes"),
    ("LongTrousers", "clothing", "wearing long trousers"),
    ("Dress", "clothing", "wearing a dress"),
    ("LongCoat", "clothing", "wearing a long coat"),
    ("Trousers", "clothing", "wearing trousers"),
    ("LongSleeve", "clothing", "wearing long sleeves"),
    ("CarryingOther", "clothing", "carrying something else"),
)
COLUMNS = tuple(a[0] for a in ATTRIBUTES)
_INDEX = {name: i for i, name in enumerate(COLUMNS)}

# How describe_attributes composes a set into one sentence.
_AGE = {
    "AgeChild": ("child", "girl", "boy"),
    "AgeYoungAdult": ("young adult", "young woman", "young man"),
    "AgeMediumAdult": ("adult", "woman", "man"),
    "AgeOldAdult": ("middle-aged person", "middle-aged woman", "middle-aged man"),
    "AgeSenior": ("elderly person", "elderly woman", "elderly man"),
}
_BUILD = {"BodyThin": "thin", "BodyNormal": "normal", "BodyFat": "heavy"}
_CARRIED = {
    "Backpack": "a backpack",
    "Bag": "a bag",
    "OtherAttchment": "some other attachment",
    "CarryingOther": "something else",
}


def attribute_set(labels_row: np.ndarray, threshold: float) -> tuple[int, ...]:
    """Indices of the attributes present: probability above `threshold` (as losses.label_sets)."""
    return tuple(int(i) for i in np.flatnonzero(np.asarray(labels_row) > threshold))


def attribute_set_key(indices) -> str:
    """A stable id for an attribute set: its column names joined by '+', or 'none'."""
    names = [COLUMNS[i] for i in sorted(set(_checked(indices)))]
    return "+".join(names) if names else "none"


def describe_attributes(indices, male_if_not_female: bool = False) -> str:
    """One natural phrase for an attribute set.

    Order: who (age and gender), build, what is carried, what is worn, actions, and the
    viewpoint last, e.g. "a young woman of normal build carrying a backpack, wearing
    sneakers and a jacket, talking on the phone, seen from the side". Several values of
    one group are joined with "or" (age, build, viewpoint) or "and" (the rest).

    Args:
      indices: attribute indices into ATTRIBUTES.
      male_if_not_female: read an absent "Female" as a man (right for a full labels row,
        where Female is binary); otherwise an absent Female says nothing ("a person").

    Returns:
      The phrase, lower-case, without a final period.
    """
    on = {COLUMNS[i] for i in _checked(indices)}
    g = 1 if "Female" in on else (2 if male_if_not_female else 0)
    ages = [a for a in _AGE if a in on]
    if len(ages) == 1:
        who = _AGE[ages[0]][g]
    else:
        noun = ("person", "woman", "man")[g]
        adjectives = [_AGE[a][0].removesuffix(" person") for a in ages]
        who = " or ".join(adjectives) + " " + noun if ages else noun
    first = ("an " if who[0] in "aeiou" else "a ") + who
    builds = [b for n, b in _BUILD.items() if n in on]
    if builds:
        first += f" of {' or '.join(builds)} build"
    carried = [c for n, c in _CARRIED.items() if n in on]
    if "HandTrunk" in on:
        carried.insert(2, "a hand trunk")
    if carried:
        first += " carrying " + _join(carried)
    elif on & {"No accessory", "No carrying"}:
        first += " carrying nothing"
    worn = [
        ATTRIBUTES[_INDEX[n]][2].removeprefix("wearing ")
        for n in COLUMNS
        if n in on
        and ATTRIBUTES[_INDEX[n]][1] in ("footwear", "clothing")
        and n != "CarryingOther"
        and not (n == "Trousers" and "LongTrousers" in on)
    ]
    parts = [first]
    if worn:
        parts.append("wearing " + _join(worn))
    actions = [
        ATTRIBUTES[_INDEX[n]][2]
        for n in COLUMNS
        if n in on and ATTRIBUTES[_INDEX[n]][1] == "action"
    ]
    if actions:
        parts.append(_join(actions))
    views = [v.lower() for v in ("Front", "Side", "Back") if v in on]
    if views:
        parts.append("seen from the " + " or ".join(views))
    return ", ".join(parts)


def _checked(indices) -> list[int]:
    out = [int(i) for i in indices]
    for i in out:
        if not 0 <= i < len(ATTRIBUTES):
            raise fail("attribute index", f"{i} is outside 0..{len(ATTRIBUTES) - 1}")
    return out


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
