"""Category colours: deterministic, most common first, grey for missing, "other" beyond the palette."""

import numpy as np
import pandas as pd

from core.palette import (
    DEFAULT_TOP, MISSING, MISSING_COLOUR, OTHER_COLOUR, PALETTE, category_colours, category_label, other_name,
)


def test_same_column_same_colours_whatever_the_order():
    values = ["urology"] * 3 + ["cardiology"] * 5 + ["psychiatry"] * 3 + [None, np.nan]
    colours = category_colours(values)
    assert colours == category_colours(list(reversed(values)))
    assert list(colours) == ["cardiology", "psychiatry", "urology", MISSING]  # by count, ties by text
    assert [colours[c] for c in ("cardiology", "psychiatry", "urology")] == list(PALETTE[:3])
    assert colours[MISSING] == MISSING_COLOUR


def test_labels_for_numbers_dates_and_grey_categories():
    assert category_label(3.0) == "3" and category_label(pd.Timestamp("2024-05-01")) == "2024-05-01"
    assert category_label(pd.NA) == MISSING
    colours = category_colours(["noise"] * 9 + ["0: chest pain", "1: knee"], grey=["noise"])
    assert colours["noise"] == MISSING_COLOUR and colours["0: chest pain"] == PALETTE[0]


def test_values_beyond_the_top_share_other_and_the_top_stays_within_the_palette():
    values = [f"v{i:02d}" for i in range(len(PALETTE) + 5) for _ in range(100 - i)]
    for top, distinct in ((DEFAULT_TOP, DEFAULT_TOP), (3, 3), (len(PALETTE), len(PALETTE)), (500, len(PALETTE)),
                          (0, 1)):
        colours = category_colours(values, top=top)
        named = [colours[f"v{i:02d}"] for i in range(distinct)]
        assert named == list(PALETTE[:distinct])  # distinct, most common first
        assert {colours[f"v{i:02d}"] for i in range(distinct, len(PALETTE) + 5)} == {OTHER_COLOUR}
    assert category_colours(values) == category_colours(values, top=10)
    assert other_name(1) == "other (1 value)" and other_name(1234) == "other (1,234 values)"
