"""Category colours: deterministic, most common first, grey for missing, "other" beyond the palette."""

import numpy as np
import pandas as pd

from core.palette import MISSING, MISSING_COLOUR, OTHER_COLOUR, PALETTE, category_colours, category_label


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


def test_rare_values_beyond_the_palette_share_other():
    values = [f"v{i:02d}" for i in range(len(PALETTE) + 5) for _ in range(100 - i)]
    colours = category_colours(values)
    assert len(set(colours[f"v{i:02d}"] for i in range(len(PALETTE)))) == len(PALETTE)
    assert {colours[f"v{i:02d}"] for i in range(len(PALETTE), len(PALETTE) + 5)} == {OTHER_COLOUR}
